"""The PyTorch originals the benchmarks time, and the weights both frameworks share.

`torch_model` builds a model's PyTorch original (random init, seed 0) with a
`benchlib.NUM_CLASSES` head; `save_state_dict` writes its state dict as an
.npz that `load_torch_weights` converts (`ftlab.pretrained.layout`) into an
ftlab state, so both sides train the same architecture from the same weights
(a converted tree that does not fit the ftlab model is an error).
Used by `bench_step.py` and `bench_gpu.py`.
"""
import benchlib


TORCHVISION_MODELS = ("resnet18", "resnet50", "convnext_tiny")  # torchvision.models.<name>
LITE_TORCH_NAMES = {"efficientnet_lite0": "efficientnet-lite0"}  # efficientnet_lite_pytorch's


def torch_model(model: str, image_size: int):
  """The PyTorch original of `model` with a NUM_CLASSES head (random init, seed 0)."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  if model in TORCHVISION_MODELS:
    import torchvision  # pylint: disable=import-outside-toplevel
    return getattr(torchvision.models, model)(weights=None, num_classes=benchlib.NUM_CLASSES)
  if model == "vit_s_16":  # torchvision's class with ViT-S/16 widths, its grid for image_size
    from torchvision.models.vision_transformer import \
      VisionTransformer  # pylint: disable=import-outside-toplevel
    from ftlab.models.vit import VARIANTS  # pylint: disable=import-outside-toplevel
    v = VARIANTS[model]
    return VisionTransformer(image_size, v.patch, v.layers, v.heads, v.hidden, v.mlp,
                             num_classes=benchlib.NUM_CLASSES)
  if model in LITE_TORCH_NAMES:
    from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=import-outside-toplevel
    # Built for `image_size`: its static same-padding is sized from it (224 otherwise).
    return EfficientNet.from_name(LITE_TORCH_NAMES[model], num_classes=benchlib.NUM_CLASSES,
                                  image_size=image_size)
  raise ValueError(f"no PyTorch original for {model!r}")


def weights_key(model: str, image_size: int) -> str:
  return f"{model}_{image_size}"  # a ViT's position embedding follows the image size


def save_state_dict(net, path: str) -> str:
  """`net`'s state dict as numpy arrays in the .npz at `path` (returned)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  np.savez(path, **{k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})
  return path


def load_into_torch(net, path: str) -> None:
  """Loads the .npz state dict at `path` into `net`."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  with np.load(path) as npz:
    net.load_state_dict({k: torch.from_numpy(npz[k]) for k in npz.files})


def load_torch_weights(setup, state, path: str):
  """`state` with every parameter and BN statistic from the torch state dict at `path`.

  LoRA adapters (not in the torch state dict) keep their fresh init.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from ftlab.pretrained import layout  # pylint: disable=import-outside-toplevel
  from ftlab.training import lora  # pylint: disable=import-outside-toplevel
  from ftlab.training import state as state_lib  # pylint: disable=import-outside-toplevel
  with np.load(path) as npz:
    state_dict = {k: npz[k] for k in npz.files}
  converted = layout.torch_to_flax(state_dict, state_lib.variables_of(state))
  params = state_lib.flatten(converted["params"])
  everything = {**state.trainable, **state.frozen}
  adapters = {k: v for k, v in everything.items() if lora.is_adapter(k)}
  expected = {k: v for k, v in everything.items() if k not in adapters}
  if set(params) != set(expected) or any(params[k].shape != expected[k].shape for k in params):
    raise ValueError(f"converted weights do not fit the ftlab model ({path})")
  params = {**jax.tree.map(jax.numpy.asarray, params), **adapters}
  state = state.replace(trainable=params, frozen={},
                        batch_stats=jax.tree.map(jax.numpy.asarray,
                                                 converted.get("batch_stats", {})))
  return state_lib.regroup(state, setup.phases[0])
