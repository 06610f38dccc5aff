"""The Flax ViTs against torchvision's VisionTransformer, and position-embedding resampling.

Parity runs on torchvision's class with the ViT-B/16 and ViT-S/16 widths but
two layers and 48 px images (a 3x3 patch grid), random weights (LayerNorm
affine, class token and position embedding included); the full-depth models
are checked by shapes only. ViT-S/16 is torchvision's class with ViT-S
dimensions (torchvision ships no ViT-S).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import traverse_util
from torchvision.models.vision_transformer import VisionTransformer

from ftlab import convert, models, predict
from ftlab.models import vit
from ftlab.pretrained import load, posemb
from ftlab.pretrained.layout import torch_to_flax
from tests.torch_reference import (
    assert_eval_parity, flax_outputs, max_diff, numpy_state, randomise_transformer_)

NUM_CLASSES = 10
SIZE = 48
TOL = 1e-4
pytestmark = pytest.mark.usefixtures("fast_compiles")


def small(name: str, layers: int = 2) -> vit.Variant:
  """The widths of `name` with only `layers` encoder layers."""
  return vit.VARIANTS[name]._replace(layers=layers)


def torch_vit(variant: vit.Variant, image_size: int = SIZE, seed: int = 0) -> torch.nn.Module:
  """torchvision's VisionTransformer with random, O(1)-activation weights, eval mode."""
  torch.manual_seed(seed)
  net = VisionTransformer(image_size, variant.patch, variant.layers, variant.heads, variant.hidden,
                          variant.mlp, num_classes=NUM_CLASSES)
  randomise_transformer_(net, lambda name: "ln" in name,
                         lambda name: "embedding" in name or "token" in name)
  return net.eval()


def flax_vit(variant: vit.Variant, num_classes: int = NUM_CLASSES, dtype=jnp.float32):
  return vit.VisionTransformer(num_classes, variant, dtype=dtype)


def template_for(model, size: int = SIZE):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def torch_outputs(net, x):
  """torchvision's logits and the class token after encoder.ln (the head's input)."""
  seen = {}
  hook = net.heads.register_forward_pre_hook(lambda _, args: seen.update(trunk=args[0]))
  try:
    with torch.no_grad():
      logits = net(torch.from_numpy(x)).numpy()
  finally:
    hook.remove()
  return logits, seen["trunk"].numpy()


@dataclasses.dataclass
class Case:
  net: torch.nn.Module
  model: vit.VisionTransformer
  variables: dict
  x: np.ndarray


@pytest.fixture(scope="module", params=["vit_b_16", "vit_s_16"])
def case(request) -> Case:
  variant = small(request.param)
  net = torch_vit(variant)
  model = flax_vit(variant)
  variables = torch_to_flax(numpy_state(net), template_for(model))
  x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE), dtype=np.float32)
  return Case(net, model, variables, x)


@pytest.mark.slow
def test_eval_and_train_logits_and_trunk_match_torchvision(case):
  ref_logits, ref_trunk = torch_outputs(case.net, case.x)
  outputs = flax_outputs(case.model, case.variables, case.x, dropout_rng=jax.random.key(1))
  assert_eval_parity(outputs, ref_logits, ref_trunk, TOL)
  # torchvision's ViT has dropout 0: train mode computes the same logits.
  with torch.no_grad():
    ref_train = case.net.train()(torch.from_numpy(case.x)).numpy()
  case.net.eval()
  assert max_diff(outputs[3], ref_train) < TOL, max_diff(outputs[3], ref_train)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b_16", "vit_s_16"])
def test_full_model_shapes_match_torchvision_state_dict(name):
  """Every torchvision parameter converts onto the registered model with the template's shape."""
  v = vit.VARIANTS[name]
  with torch.device("meta"):
    net = VisionTransformer(224, v.patch, v.layers, v.heads, v.hidden, v.mlp)
  state = {k: np.broadcast_to(np.float32(0), t.shape) for k, t in net.state_dict().items()}
  template = template_for(models.get_spec(name).build(1000, jnp.float32), 224)
  converted = torch_to_flax(state, template)
  want = {k: t.shape for k, t in traverse_util.flatten_dict(template).items()}
  got = {k: t.shape for k, t in traverse_util.flatten_dict(converted).items()}
  assert got == want
  assert sum(np.prod(s) for s in want.values()) == sum(t.numel() for t in net.parameters())


def test_image_size_the_patch_does_not_divide_is_an_error():
  model = flax_vit(small("vit_s_16", 1))
  with pytest.raises(ValueError) as error:
    template_for(model, 40)
  assert str(error.value).splitlines()[0] == (
      "config.data.image_size=40 is not divisible by the ViT patch size 16")


def test_blocks_are_embedding_layers_then_final_norm():
  spec = models.get_spec("vit_b_16")
  assert len(spec.blocks) == 14 and spec.head == "heads"
  assert spec.blocks[1] == "encoder/layers/encoder_layer_0" and spec.blocks[-1] == "encoder/ln"


# ------------------------------------------------------- position embeddings


def test_resample_to_the_same_grid_is_the_identity():
  pe = np.random.default_rng(0).standard_normal((1, 1 + 14 * 14, 8)).astype(np.float32)
  assert posemb.resample(pe, pe.shape[1]) is pe


@pytest.mark.parametrize("old,new", [(2, 4), (14, 24), (7, 5)])
def test_resample_matches_torch_bicubic_and_keeps_the_class_token(old, new):
  pe = np.random.default_rng(1).standard_normal((1, 1 + old * old, 16)).astype(np.float32)
  got = posemb.resample(pe, 1 + new * new)
  grid = torch.from_numpy(pe[0, 1:].reshape(1, old, old, 16)).permute(0, 3, 1, 2)
  want = F.interpolate(grid.double(), size=(new, new), mode="bicubic", align_corners=False)
  want = want.permute(0, 2, 3, 1).reshape(1, new * new, 16).numpy()
  assert got.shape == (1, 1 + new * new, 16) and got.dtype == np.float32
  np.testing.assert_array_equal(got[:, 0], pe[:, 0])
  assert max_diff(got[:, 1:], want) < 1e-6, max_diff(got[:, 1:], want)  # observed 0


@pytest.mark.slow
def test_checkpoint_from_another_resolution_is_resampled_at_load(tmp_path):
  variant = small("vit_b_16")
  net = torch_vit(variant, image_size=32)  # a 2x2 grid, loaded at 64 px: 4x4
  torch.save(net.state_dict(), tmp_path / "vit32.pth")
  model = flax_vit(variant)
  template = load.template_variables(model, 64)
  variables, report = load.load_pretrained(template, tmp_path / "vit32.pth",
                                           models.get_spec("vit_b_16"), strict=True)
  name = "params/encoder/pos_embedding"
  assert report.resized == [name] and name in report.loaded and not report.reinitialized
  assert report.shapes[name] == ((1, 5, 768), (1, 17, 768))
  assert "resized (position embedding resampled bicubically)" in report.summary()
  pe = net.encoder.pos_embedding.detach().numpy()
  np.testing.assert_array_equal(variables["params"]["encoder"]["pos_embedding"],
                                posemb.resample(pe, 17))
  x = np.random.default_rng(0).standard_normal((2, 64, 64, 3), dtype=np.float32)
  logits = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, NUM_CLASSES) and np.isfinite(np.asarray(logits)).all()


# ------------------------------------------------------- convert and predict


@pytest.mark.slow
def test_convert_and_predict_a_small_vit(tmp_path, monkeypatch):
  variant = small("vit_s_16", 1)
  spec = dataclasses.replace(models.get_spec("vit_s_16"), input_size=32,
                             build=lambda n, dtype=jnp.float32, init="native": flax_vit(
                                 variant, n, dtype))
  monkeypatch.setitem(models.MODELS, "vit_test", spec)
  net = torch_vit(variant, image_size=32)
  torch.save(net.state_dict(), tmp_path / "vit.pth")
  report = convert.convert_file("vit_test", tmp_path / "vit.pth", tmp_path / "out",
                                num_classes=NUM_CLASSES)
  assert len(report.loaded) == report.total
  predictor = predict.from_pretrained(str(tmp_path / "out"))
  x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
  ref, _ = torch_outputs(net, x)
  probs = predictor.probabilities(x.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(ref), -1).numpy(), atol=1e-5)


# ------------------------------------------------------- bad input


def test_config_image_size_the_patch_does_not_divide_fails_at_setup():
  from configs import default  # pylint: disable=import-outside-toplevel
  from ftlab.training import state as state_lib  # pylint: disable=import-outside-toplevel
  config = default.get_config()
  config.model.name, config.data.image_size = "vit_s_16", 100
  with pytest.raises(ValueError) as error:
    state_lib.build_setup(config, 10, 10, 0, 5)
  assert str(error.value).splitlines()[0] == (
      "config.data.image_size=100 is not divisible by the ViT patch size 16")


@pytest.mark.slow
def test_a_checkpoint_of_another_vit_variant_names_the_first_mismatch(tmp_path):
  net = torch_vit(small("vit_s_16", 1))  # width 384, loaded into a ViT-B (width 768)
  torch.save(net.state_dict(), tmp_path / "vit_s.pth")
  template = load.template_variables(flax_vit(small("vit_b_16", 1)), SIZE)
  with pytest.raises(load.ShapeMismatchError) as error:
    load.load_pretrained(template, tmp_path / "vit_s.pth", models.get_spec("vit_b_16"))
  message = str(error.value)
  assert "\n" not in message and message.startswith(str(tmp_path / "vit_s.pth"))
  assert message.endswith("params/class_token has shape (1, 1, 384) in the checkpoint but "
                          "(1, 1, 768) in the model, and it is not part of the head")
