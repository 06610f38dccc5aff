"""Reads PyTorch and safetensors weight files into numpy, without torch.

`torch.save` writes a pickle whose tensors point at raw storages by a
"persistent id". Unpickling such a file with the standard `pickle` module
would import and call whatever the file names, so the reader below uses an
allow-list `find_class`: only the handful of names a state dict needs resolve
(to numpy-side stand-ins), and any other global — `os.system`,
`builtins.eval`, ... — stops the load before anything is called.

Two container formats are understood:

* the zip archive torch >= 1.6 writes: `<prefix>/data.pkl` plus one
  `<prefix>/data/<key>` entry per storage (and `<prefix>/byteorder`);
* the legacy stream (torch < 1.6, e.g. the EfficientNet-Lite weights): magic
  number, protocol version and sys-info pickles, the main pickle, a pickle of
  storage keys, then each storage as an int64 element count and raw bytes.

`.safetensors` files are read with safetensors' numpy API.
"""
import collections
import dataclasses
import io
import os
import pathlib
import pickle
import struct
import zipfile
from typing import Any, Callable, Mapping

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy for safetensors)
import numpy as np
import safetensors.numpy

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
WRAPPER_KEYS = ("state_dict", "model")

# torch storage class name -> numpy dtype of its elements. bfloat16 is read as
# its raw 16 bits and widened to float32 after the tensor view is built.
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(np.uint16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class CheckpointFormatError(ValueError):
  """The file is not a weights file this reader understands, or is corrupt."""


class UnsafeCheckpointError(CheckpointFormatError):
  """The pickle asks for a global outside the allow-list."""


@dataclasses.dataclass(frozen=True)
class StorageType:
  """Stand-in for `torch.<Name>Storage`: only remembers the element type."""
  name: str

  @property
  def dtype(self) -> np.dtype:
    return STORAGE_DTYPES[self.name]


@dataclasses.dataclass(frozen=True)
class StorageRef:
  """A storage named by a persistent id; `offset`/`size` select a legacy view."""
  storage_type: StorageType
  key: str
  numel: int
  offset: int = 0


@dataclasses.dataclass(frozen=True)
class TensorRef:
  """A tensor waiting for its storage's bytes: a strided view into it."""
  storage: StorageRef
  offset: int
  size: tuple
  stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """Stand-in for torch._utils._rebuild_tensor(_v2); extra args are ignored."""
  if not isinstance(storage, StorageRef):
    raise CheckpointFormatError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
  return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
  """Stand-in for torch._utils._rebuild_parameter(_with_state): the data."""
  return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
ALLOWED_GLOBALS.update({("torch", name): StorageType(name) for name in STORAGE_DTYPES})


class _Unpickler(pickle.Unpickler):
  """Unpickler that resolves only `ALLOWED_GLOBALS` and records storages."""

  def __init__(self, file, source: str, legacy: bool):
    super().__init__(file)
    self._source = source
    self._legacy = legacy

  def find_class(self, module, name):
    try:
      return ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f"refusing to load {self._source}: it asks for {module}.{name}, which a "
          "weights file does not need") from None

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      raise CheckpointFormatError(
          f"{self._source}: unsupported persistent id {str(pid)[:80]!r} (only storages)")
    if self._legacy:
      storage_type, key, _, numel, view = pid[1:6]
    else:
      (storage_type, key, _, numel), view = pid[1:5], None
    if not isinstance(storage_type, StorageType):
      raise CheckpointFormatError(f"{self._source}: storage {key!r} has no storage type")
    if view is None:
      return StorageRef(storage_type, str(key), int(numel))
    view_key, offset, view_size = view
    del view_key  # the view shares the root storage's bytes
    return StorageRef(storage_type, str(key), int(view_size), int(offset))


def _strided_copy(flat: np.ndarray, offset: int, size: tuple, stride: tuple, where: str):
  """Returns a C-contiguous copy of the strided view, checking its bounds."""
  if len(size) != len(stride) or min(size + stride, default=0) < 0:
    raise CheckpointFormatError(f"{where}: bad size {size} / stride {stride}")
  if 0 in size:
    return np.zeros(size, flat.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if offset < 0 or last >= flat.size:
    raise CheckpointFormatError(
        f"{where}: view (offset {offset}, size {size}, stride {stride}) runs past its "
        f"storage of {flat.size} elements")
  if not size:  # as_strided reads shape () as "keep the input's shape"
    return flat[offset:offset + 1].reshape(()).copy()
  view = np.lib.stride_tricks.as_strided(
      flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride], writeable=False)
  return np.array(view)  # always a copy: the storage buffer is freed


def _bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
  return (bits.astype(np.uint32) << 16).view(np.float32)


def _materialise(obj, storage_array: Callable[[StorageRef], np.ndarray], source: str):
  """Replaces every TensorRef in nested dicts/lists/tuples by a numpy array."""
  if isinstance(obj, TensorRef):
    flat = storage_array(obj.storage)
    array = _strided_copy(flat, obj.offset, obj.size, obj.stride, f"{source}: storage {obj.storage.key}")
    if obj.storage.storage_type.name == "BFloat16Storage":
      array = _bf16_bits_to_float32(array)
    return array
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for key, value in obj.items():
      out[key] = _materialise(value, storage_array, source)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(value, storage_array, source) for value in obj)
  return obj


def _storage_reader(raw: Callable[[StorageRef], bytes], byteorder: str, source: str):
  """Returns StorageRef -> flat numpy array, decoding each storage once."""
  cache = {}

  def storage_array(ref: StorageRef) -> np.ndarray:
    if ref.key not in cache:
      dtype = ref.storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
      data = raw(ref)
      if len(data) % dtype.itemsize:
        raise CheckpointFormatError(f"{source}: storage {ref.key} has {len(data)} bytes, "
                                    f"not a multiple of {dtype.itemsize}")
      cache[ref.key] = np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False)
    flat = cache[ref.key]
    if ref.offset + ref.numel > flat.size:
      raise CheckpointFormatError(f"{source}: storage {ref.key} holds {flat.size} elements, "
                                  f"the file says {ref.offset + ref.numel}")
    return flat[ref.offset:ref.offset + ref.numel]

  return storage_array


def _read_zip(path: pathlib.Path):
  """Reads the zip container torch.save writes by default."""
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
      raise CheckpointFormatError(f"{path}: zip archive without a single <prefix>/data.pkl "
                                  "(not a torch.save file)")
    prefix = pkl[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode().strip()
    obj = _Unpickler(io.BytesIO(archive.read(pkl[0])), str(path), legacy=False).load()

    def raw(ref: StorageRef) -> bytes:
      try:
        return archive.read(f"{prefix}data/{ref.key}")
      except KeyError:
        raise CheckpointFormatError(f"{path}: storage {ref.key!r} is missing from the archive") from None

    return _materialise(obj, _storage_reader(raw, byteorder, str(path)), str(path))


def _collect_storages(obj, found: dict):
  """Finds every StorageRef (by key) reachable from TensorRefs in obj."""
  if isinstance(obj, TensorRef):
    found.setdefault(obj.storage.key, obj.storage.storage_type)
  elif isinstance(obj, dict):
    for value in obj.values():
      _collect_storages(value, found)
  elif isinstance(obj, (list, tuple)):
    for value in obj:
      _collect_storages(value, found)
  return found


def _read_legacy(path: pathlib.Path):
  """Reads the pre-1.6 stream: header pickles, main pickle, storage keys, raw storages."""
  source = str(path)
  with open(path, "rb") as f:
    header = [_Unpickler(f, source, legacy=True).load() for _ in range(3)]
    magic, protocol, sys_info = header
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
      raise CheckpointFormatError(f"{path}: not a torch.save file (magic {magic!r}, "
                                  f"protocol {protocol!r})")
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    byteorder = "little" if little else "big"
    obj = _Unpickler(f, source, legacy=True).load()
    keys = _Unpickler(f, source, legacy=True).load()
    types = _collect_storages(obj, {})
    blobs = {}
    for key in keys:
      if key not in types:
        raise CheckpointFormatError(f"{path}: storage {key!r} is listed but never used")
      (numel,) = struct.unpack("<q" if byteorder == "little" else ">q", f.read(8))
      nbytes = numel * types[key].dtype.itemsize
      blobs[key] = f.read(nbytes)
      if len(blobs[key]) != nbytes:
        raise CheckpointFormatError(f"{path}: truncated storage {key!r}")

  def raw(ref: StorageRef) -> bytes:
    if ref.key not in blobs:
      raise CheckpointFormatError(f"{path}: storage {ref.key!r} has no data")
    return blobs[ref.key]

  return _materialise(obj, _storage_reader(raw, byteorder, source), source)


def _unwrap(obj: Any, path) -> Mapping[str, np.ndarray]:
  """Returns the state dict, looking inside {'state_dict': ...} / {'model': ...}."""
  if isinstance(obj, dict):
    for key in WRAPPER_KEYS:
      if isinstance(obj.get(key), dict):
        return _unwrap(obj[key], path)
  if not isinstance(obj, dict):
    raise CheckpointFormatError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  for key, value in obj.items():
    if not isinstance(key, str) or not isinstance(value, np.ndarray):
      raise CheckpointFormatError(
          f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; not a state dict "
          f"(wrappers under {WRAPPER_KEYS} are looked into)")
  return obj


def _read_safetensors(path: pathlib.Path) -> dict:
  tensors = safetensors.numpy.load_file(str(path))
  return {k: v.astype(np.float32) if v.dtype == ml_dtypes.bfloat16 else v
          for k, v in tensors.items()}


def load_state_dict(path) -> "collections.OrderedDict[str, np.ndarray]":
  """Reads a weights file into an ordered {torch name: numpy array} dict.

  Args:
    path: a `.pth`/`.pt`/`.bin` file written by `torch.save` (zip or legacy
      format; a dict wrapping the state dict under 'state_dict' or 'model' is
      unwrapped) or a `.safetensors` file.

  Returns:
    The state dict, keys in file order. Arrays keep their dtype except
    bfloat16, which becomes float32 (exactly).

  Raises:
    UnsafeCheckpointError: the pickle names a global outside the allow-list.
    CheckpointFormatError: anything else that is not a readable state dict.
  """
  path = pathlib.Path(os.fspath(path))
  if not path.is_file():
    raise FileNotFoundError(f"weights file {path} does not exist")
  if path.suffix == ".safetensors":
    return collections.OrderedDict(_read_safetensors(path))
  try:
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile) as e:
    raise CheckpointFormatError(f"{path}: not a readable torch.save file ({e})") from None
  return collections.OrderedDict(_unwrap(obj, path))
