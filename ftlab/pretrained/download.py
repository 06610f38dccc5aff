"""Downloads a file once, verifies its sha256 and optionally unpacks it.

Generic on purpose: pretrained weights and dataset archives both come through
`download(url, dest_dir, sha256=None, extract=False)`. The file is streamed to
a hidden temporary file in `dest_dir`, hashed on the way, and renamed into
place only once the hash matches, so an interrupted or corrupt download never
looks finished. Archives (tar, tar.gz/bz2/xz, zip) are checked member by member
before anything is written: absolute paths, `..` components, links and device
files are refused.
"""
import hashlib
import os
import pathlib
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile

CHUNK = 1 << 20
MIN_PREFIX = 8


class DownloadError(RuntimeError):
  """The download failed or its content does not match the expected hash."""


class UnsafeArchiveError(ValueError):
  """An archive member would land outside the destination or is not a plain file."""


def _digests(expected: dict) -> dict:
  """Fresh hashlib objects: sha256 always, plus any other algorithm expected."""
  return {name: hashlib.new(name) for name in {"sha256", *expected}}


def file_digests(path, algorithms=("sha256",), chunk: int = CHUNK) -> dict:
  """{algorithm: hex digest} of a file, read in chunks."""
  digests = _digests(dict.fromkeys(algorithms))
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      for digest in digests.values():
        digest.update(block)
  return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_of(path) -> str:
  """Hex sha256 of a file."""
  return file_digests(path)["sha256"]


def _expected(sha256, md5) -> dict:
  """{algorithm: lower-case hex} to verify; sha256 may be a >= 8 digit prefix."""
  expected = {}
  for name, value, lengths in (("sha256", sha256, range(MIN_PREFIX, 65)), ("md5", md5, (32,))):
    if value is None:
      continue
    value = value.lower()
    if len(value) not in lengths or any(c not in "0123456789abcdef" for c in value):
      raise ValueError(f"{name}={value!r} is not a hex digest"
                       + (f" (or a prefix of at least {MIN_PREFIX} hex digits)" if name == "sha256" else ""))
    expected[name] = value
  return expected


def _mismatch(got: dict, expected: dict):
  """The first (algorithm, expected, got) that does not match, or None."""
  for name, want in expected.items():
    if not got[name].startswith(want):
      return name, want, got[name]
  return None


def _filename(url: str) -> str:
  name = pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name
  if not name:
    raise ValueError(f"cannot derive a file name from URL {url!r}")
  return urllib.parse.unquote(name)


class _Progress:
  """Prints 'name: 12.0/45.3 MiB (26%)' to stderr at most twice a second."""

  def __init__(self, name: str, total, stream=sys.stderr):
    self.name, self.total, self.stream = name, total, stream
    self.done, self.last = 0, 0.0

  def update(self, n: int, final: bool = False):
    self.done += n
    now = time.monotonic()
    if not final and now - self.last < 0.5:
      return
    self.last = now
    text = f"{self.name}: {self.done / 2**20:.1f}"
    if self.total:
      text += f"/{self.total / 2**20:.1f} MiB ({100 * self.done // self.total}%)"
    else:
      text += " MiB"
    self.stream.write("\r" + text + ("\n" if final else ""))
    self.stream.flush()


def _fetch(url: str, dest: pathlib.Path, expected: dict, progress: bool) -> dict:
  """Streams url into a temp file beside dest, verifies, renames; returns the digests."""
  fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
  digests = _digests(expected)
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
      total = int(response.headers.get("Content-Length") or 0) or None
      meter = _Progress(dest.name, total) if progress else None
      for block in iter(lambda: response.read(CHUNK), b""):
        out.write(block)
        for digest in digests.values():
          digest.update(block)
        if meter:
          meter.update(len(block))
      if meter:
        meter.update(0, final=True)
    got = {name: digest.hexdigest() for name, digest in digests.items()}
    bad = _mismatch(got, expected)
    if bad:
      raise DownloadError(f"{bad[0]} mismatch for {url}: expected {bad[1]}, got {bad[2]}; "
                          "the download was deleted")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is shared
    os.replace(tmp, dest)
    return got
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):
      raise DownloadError(f"downloading {url} failed: {e}") from e
    raise


def _safe_target(root: pathlib.Path, name: str, archive) -> pathlib.Path:
  """Where `name` extracts to; refuses absolute paths and escapes from root."""
  parts = pathlib.PurePosixPath(name.replace("\\", "/")).parts
  if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
    raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {root}")
  return root.joinpath(*parts)


def _check_tar(tar: tarfile.TarFile, root: pathlib.Path, archive) -> None:
  for member in tar.getmembers():
    _safe_target(root, member.name, archive)
    if not (member.isfile() or member.isdir()):
      raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a link or device, "
                               "not a plain file or directory")


def _extract(archive: pathlib.Path, root: pathlib.Path) -> None:
  """Extracts a tar or zip archive into root after checking every member."""
  if tarfile.is_tarfile(archive):
    with tarfile.open(archive) as tar:
      _check_tar(tar, root, archive)
      tar.extractall(root, filter="data")
  elif zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as zf:
      for name in zf.namelist():
        _safe_target(root, name, archive)
      zf.extractall(root)
  else:
    raise ValueError(f"{archive} is neither a tar nor a zip archive; cannot extract it")


def download(url: str, dest_dir, sha256=None, extract: bool = False, *,
             md5=None, filename=None, progress: bool = True) -> pathlib.Path:
  """Downloads `url` into `dest_dir` unless a verified copy is already there.

  Args:
    url: any URL urllib opens (https://, http://, file://).
    dest_dir: directory to hold the file (created if needed).
    sha256: expected hex sha256, or a prefix of it of at least 8 digits (as
      torchvision file names carry); None skips verification.
    extract: unpack the tar/zip archive into `dest_dir` (once; a marker file
      `.<name>.extracted` records it) and return `dest_dir`.
    md5: expected hex md5, for sources that publish only that (checked
      in addition to `sha256` when both are given).
    filename: name to save under; defaults to the URL's last path component.
    progress: print progress to stderr.

  Returns:
    The downloaded file's path, or `dest_dir` when `extract` is set.

  Raises:
    DownloadError: the transfer failed or the hash does not match (the partial
      or wrong file is deleted).
    UnsafeArchiveError: an archive member would escape `dest_dir`.
  """
  expected = _expected(sha256, md5)
  root = pathlib.Path(dest_dir)
  root.mkdir(parents=True, exist_ok=True)
  dest = root / (filename or _filename(url))
  got = file_digests(dest, {"sha256", *expected}) if dest.is_file() else None
  if got is None or _mismatch(got, expected):
    got = _fetch(url, dest, expected, progress)
  if not extract:
    return dest
  marker = root / f".{dest.name}.extracted"
  if not marker.is_file() or marker.read_text().strip() != got["sha256"]:
    _extract(dest, root)
    marker.write_text(got["sha256"] + "\n")
  return root
