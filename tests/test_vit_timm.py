"""ViT-S/16 in timm's layout (`vit_small_patch16_224`) against timm's VisionTransformer.

Parity runs on timm's `vit_small_patch16_224` with two blocks at 32 px (a 2x2
patch grid, timm's `img_size=32`), random weights (LayerNorm affine, class
token and position embedding included); the full-depth model is checked by
shapes. The registered download is exercised through a `file://` URL serving
a safetensors file, as the hub's is.
"""
import dataclasses
import re

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch

from configs import default
from ftlab import convert, models, predict
from ftlab.models import vit_timm
from ftlab.pretrained import load, posemb, registry
from ftlab.pretrained.layout import torch_to_flax
from ftlab.training import state as state_lib
from ftlab.training import strategy
from tests.torch_reference import (
    assert_eval_parity, flax_outputs, max_diff, numpy_state, randomise_transformer_)

NAME = "vit_small_patch16_224"
NUM_CLASSES = 10
SIZE = 32
TOL = 1e-4
pytestmark = pytest.mark.usefixtures("fast_compiles")


def timm_vit(depth: int = 2, image_size: int = SIZE, num_classes: int = NUM_CLASSES, seed: int = 0,
             name: str = NAME) -> torch.nn.Module:
  """timm's model with random, O(1)-activation weights, eval mode."""
  torch.manual_seed(seed)
  net = timm.create_model(name, pretrained=False, num_classes=num_classes, depth=depth,
                          img_size=image_size)
  randomise_transformer_(net, lambda name: "norm" in name,
                         lambda name: name in ("cls_token", "pos_embed"))
  return net.eval()


def flax_vit(depth: int = 2, num_classes: int = NUM_CLASSES):
  variant = vit_timm.VARIANTS[NAME]._replace(layers=depth)
  return vit_timm.VisionTransformer(num_classes, variant)


def template_for(model, size: int = SIZE):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def timm_outputs(net, x):
  """timm's logits and its pre-logits features (the class token after `norm`)."""
  with torch.no_grad():
    tokens = net.forward_features(torch.from_numpy(x))
    return net.forward_head(tokens).numpy(), net.forward_head(tokens, pre_logits=True).numpy()


def small_spec(depth: int = 1) -> models.ModelSpec:
  """The registered spec with a `depth`-block model and 32-px input."""
  return dataclasses.replace(models.get_spec(NAME), input_size=SIZE,
                             build=lambda n, dtype=jnp.float32, init="native": flax_vit(depth, n))


@pytest.fixture(scope="module")
def pair():
  net, model = timm_vit(), flax_vit()
  return net, model, torch_to_flax(numpy_state(net), template_for(model))


@pytest.mark.slow
def test_eval_and_train_logits_and_trunk_match_timm(pair):
  net, model, variables = pair
  x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE), dtype=np.float32)
  ref_logits, ref_trunk = timm_outputs(net, x)
  outputs = flax_outputs(model, variables, x, dropout_rng=jax.random.key(1))
  assert_eval_parity(outputs, ref_logits, ref_trunk, TOL)
  assert outputs[1].shape == (2, 384)
  with torch.no_grad():  # timm's rates are 0 for this model: train mode is eval mode
    ref_train = net.train()(torch.from_numpy(x)).numpy()
  net.eval()
  assert max_diff(outputs[3], ref_train) < TOL


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_returns_float32_logits(pair):
  net, model, variables = pair
  model = model.clone(dtype=jnp.bfloat16)
  x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE), dtype=np.float32)
  ref, _ = timm_outputs(net, x)
  logits, trunk = jax.jit(lambda v, x: (model.apply(v, x), model.apply(v, x, part="trunk")))(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  assert trunk.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
  assert 0 < max_diff(logits, ref) < 0.05 * np.abs(ref).max(), max_diff(logits, ref)


@pytest.mark.slow
def test_parameter_paths_are_timms(pair):
  net, _, variables = pair
  paths = {"/".join(k) for k in traverse_util.flatten_dict(variables["params"])}
  assert {"patch_embed/proj/kernel", "cls_token", "pos_embed", "blocks/1/attn/qkv/kernel",
          "blocks/1/attn/proj/bias", "blocks/0/mlp/fc2/kernel", "norm/scale",
          "head/kernel"} <= paths
  assert len(paths) == len(net.state_dict())
  assert variables["params"]["pos_embed"].shape == (1, 1 + 2 * 2, 384)  # the class token's row


@pytest.mark.slow
def test_full_model_shapes_match_timm_state_dict():
  """Every timm parameter converts onto the registered model with the template's shape."""
  net = timm.create_model(NAME, pretrained=False)
  state = {k: np.broadcast_to(np.float32(0), t.shape) for k, t in net.state_dict().items()}
  template = template_for(models.get_spec(NAME).build(1000, jnp.float32), 224)
  want = {k: t.shape for k, t in traverse_util.flatten_dict(template).items()}
  got = {k: t.shape for k, t in traverse_util.flatten_dict(torch_to_flax(state, template)).items()}
  assert got == want
  assert sum(np.prod(s) for s in want.values()) == sum(t.numel() for t in net.parameters())


def test_blocks_run_shallow_to_deep_in_timm_order():
  spec = models.get_spec(NAME)
  assert spec.head == "head" and len(spec.blocks) == 14
  assert spec.blocks[1] == "blocks/0" and spec.blocks[-1] == "norm"
  paths = [k.rsplit(".", 1)[0].replace(".", "/") if "." in k else k
           for k, _ in timm.create_model(NAME, pretrained=False).named_parameters()]
  firsts = [min(i for i, p in enumerate(paths)
                if any(re.fullmatch(b, "/".join(p.split("/")[:j]))
                       for j in range(1, p.count("/") + 2)))
            for b in spec.blocks]
  assert firsts == sorted(firsts) and firsts[0] == 0


def test_preprocessing_is_timms_config():
  cfg = timm.create_model(NAME, pretrained=False).pretrained_cfg
  spec = models.get_spec(NAME)
  assert (spec.mean, spec.std, spec.input_size) == (cfg["mean"], cfg["std"], cfg["input_size"][1])


@pytest.mark.slow
def test_init_is_timms():
  variables = jax.jit(flax_vit(1).init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  params = state_lib.flatten(variables["params"])
  for name in ("blocks/0/attn/qkv/kernel", "blocks/0/mlp/fc1/kernel", "head/kernel", "pos_embed"):
    value = np.asarray(params[name])
    assert abs(value.std() - 0.02) < 0.002, name
  for name in ("blocks/0/attn/qkv/bias", "blocks/0/mlp/fc2/bias", "head/bias"):
    assert not np.any(params[name]), name
  assert 0 < np.abs(params["cls_token"]).max() < 1e-5
  bound = 1 / np.sqrt(3 * 16 * 16)  # PyTorch's Conv2d default, U(+-1/sqrt(fan_in))
  kernel = np.asarray(params["patch_embed/proj/kernel"])
  assert np.abs(kernel).max() <= bound and kernel.std() > 0.5 * bound
  np.testing.assert_array_equal(params["norm/scale"], 1.0)


def test_lora_default_targets_are_attention_and_mlp_kernels():
  config = default.get_config()
  config.model.name, config.data.image_size = NAME, SIZE
  config.strategy.name, config.strategy.lora_rank = "lora", 4
  setup = state_lib.build_setup(config, 5, 10, 0, 5)
  expected = {f"blocks/{i}/{leaf}/kernel" for i in range(12)
              for leaf in ("attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2")}
  assert set(setup.lora.targets) == expected
  assert setup.lora.shapes["blocks/0/attn/qkv/kernel/lora_a"] == (384, 4)
  assert setup.lora.shapes["blocks/0/attn/qkv/kernel/lora_b"] == (4, 1152)


@pytest.mark.slow
def test_freeze_shallow_and_layer_decay_cut_on_timms_blocks():
  spec = models.get_spec(NAME)
  shapes = state_lib.param_shapes(spec.build(10, jnp.float32), SIZE)
  cfg = default.get_config().strategy
  cfg.name, cfg.freeze_blocks = "freeze_shallow", 2  # the patch embedding, then blocks/0
  plan = strategy.build_plan(spec, cfg, shapes)
  frozen = {p for p in shapes if not plan.trainable(p)}
  assert frozen == {p for p in shapes if re.match(r"(patch_embed|blocks/0)/|cls_token$|pos_embed$",
                                                  p)}
  cfg.name, cfg.layer_decay = "layer_decay", 0.5
  plan = strategy.build_plan(spec, cfg, shapes)

  def mult(path):
    return plan.group_of(path).action.lr_mult

  assert mult("head/kernel") == 1.0 and mult("norm/scale") == 0.5
  assert mult("blocks/11/mlp/fc1/kernel") == 0.25 and mult("blocks/1/attn/qkv/bias") == 0.5 ** 12
  assert mult("cls_token") == mult("pos_embed") == mult("patch_embed/proj/kernel") == 0.5 ** 14


# ------------------------------------------------------- loading


@pytest.mark.slow
def test_a_224_checkpoint_loads_at_another_size(tmp_path):
  net = timm_vit(depth=1, image_size=224)
  torch.save(net.state_dict(), tmp_path / "vit224.pth")
  model = flax_vit(1)
  template = load.template_variables(model, 64)
  variables, report = load.load_pretrained(template, tmp_path / "vit224.pth", small_spec(),
                                           strict=True)
  assert report.resized == ["params/pos_embed"] and not report.reinitialized
  assert report.shapes["params/pos_embed"] == ((1, 197, 384), (1, 17, 384))
  np.testing.assert_array_equal(variables["params"]["pos_embed"],
                                posemb.resample(net.pos_embed.detach().numpy(), 17))
  x = np.random.default_rng(0).standard_normal((2, 64, 64, 3), dtype=np.float32)
  logits = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, NUM_CLASSES) and np.isfinite(np.asarray(logits)).all()


@pytest.mark.slow
def test_a_checkpoint_of_another_variant_names_the_first_mismatch(tmp_path):
  other = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # width 192, 3 heads
  torch.save(other.state_dict(), tmp_path / "tiny.pth")
  template = load.template_variables(models.get_spec(NAME).build(1000, jnp.float32), SIZE)
  with pytest.raises(load.ShapeMismatchError) as error:
    load.load_pretrained(template, tmp_path / "tiny.pth", models.get_spec(NAME))
  message = str(error.value)
  assert "\n" not in message and message.startswith(str(tmp_path / "tiny.pth"))
  assert message.endswith("params/blocks/0/attn/proj/bias has shape (192,) in the checkpoint "
                          "but (384,) in the model, and it is not part of the head")


@pytest.mark.slow
def test_convert_and_predict(tmp_path, monkeypatch):
  monkeypatch.setitem(models.MODELS, "vit_timm_test", small_spec())
  net = timm_vit(depth=1)
  torch.save(net.state_dict(), tmp_path / "vit.pth")
  report = convert.convert_file("vit_timm_test", tmp_path / "vit.pth", tmp_path / "out",
                                num_classes=NUM_CLASSES)
  assert len(report.loaded) == report.total
  predictor = predict.from_pretrained(str(tmp_path / "out"))
  x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE), dtype=np.float32)
  ref, _ = timm_outputs(net, x)
  probs = predictor.probabilities(x.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(ref), -1).numpy(), atol=1e-5)


# ------------------------------------------------------- registry


def test_registered_weights_are_timms_default_on_the_hub():
  cfg = timm.create_model(NAME, pretrained=False).pretrained_cfg
  assert cfg["tag"] == "augreg_in21k_ft_in1k"
  entry = registry.WEIGHTS[NAME]
  assert entry.url == f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors"
  assert entry.filename == "vit_small_patch16_224.augreg_in21k_ft_in1k.safetensors"


@pytest.mark.slow
def test_registered_name_downloads_a_safetensors_file_and_predicts(tmp_path, monkeypatch, caplog):
  from safetensors.torch import save_file  # pylint: disable=import-outside-toplevel
  net = timm_vit(depth=1, num_classes=1000)
  served = tmp_path / "server" / "model.safetensors"
  served.parent.mkdir()
  save_file({k: v.contiguous() for k, v in net.state_dict().items()}, served)
  filename = registry.WEIGHTS[NAME].filename
  monkeypatch.setitem(registry.WEIGHTS, NAME, registry.Remote(served.as_uri(), None, filename))
  monkeypatch.setitem(models.MODELS, NAME, small_spec())
  monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
  predictor = predict.from_pretrained(NAME)
  assert (tmp_path / "cache" / filename).is_file()
  assert f"weights '{NAME}' ({served.as_uri()}) have no registered sha256" in caplog.text
  x = np.random.default_rng(3).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
  ref, _ = timm_outputs(net, x)
  probs = predictor.probabilities(x.transpose(0, 2, 3, 1))
  assert max_diff(probs, torch.softmax(torch.from_numpy(ref), -1).numpy()) < 1e-5


def test_an_unreachable_hub_file_says_where_to_put_it(tmp_path, monkeypatch):
  filename = registry.WEIGHTS[NAME].filename
  missing = (tmp_path / "nowhere" / "model.safetensors").as_uri()
  monkeypatch.setitem(registry.WEIGHTS, NAME, registry.Remote(missing, None, filename))
  monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
  with pytest.raises(registry.WeightsNotFoundError) as error:
    registry.resolve(NAME, progress=False)
  assert f"copy it to {tmp_path / 'cache' / filename}, or set" in str(error.value)
