"""The Flax ResNet, MobileNet and DenseNet ports against torchvision.

Every torchvision original is built with random weights (BatchNorm affine
parameters and running statistics included, so inference-mode BN is really
exercised), converted with the generic `torch_to_flax`, and compared on small
random inputs: logits, the pooled trunk features, the head alone, and one
train-mode step (batch statistics and the running-stat update).
"""
import copy
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from flax import traverse_util

from ftlab import models
from ftlab.models import mobilenet
from ftlab.pretrained.layout import torch_to_flax
from tests.torch_reference import (NUM_CLASSES, assert_eval_parity, flax_outputs, max_diff, nhwc,
                                   numpy_state, randomise_, run_jitted, template_for, torch_forward)

# Input (H, W) per architecture: small for speed; odd and non-square sizes
# exercise PyTorch's padding and pooling arithmetic, even ones tell symmetric
# padding apart from 'SAME'.
SIZES = {
    "resnet18": (64, 57),
    "resnet34": (48, 48),
    "resnet50": (64, 64),
    "mobilenet_v2": (64, 49),
    "mobilenet_v3_small": (64, 64),
    "mobilenet_v3_large": (64, 57),
    "densenet121": (64, 57),
}
EVAL_TOL = 1e-4


def torch_net(name: str) -> torch.nn.Module:
  torch.manual_seed(0)
  net = getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES)
  randomise_(net)
  return net.eval()


def covers(spec: models.ModelSpec, params) -> list:
  """Problems with `spec.blocks` + `spec.head` as a partition of `params`.

  Every parameter must have exactly one rule fully matching some '/'-joined
  prefix of its module path or its whole path, and every rule must own some
  parameter.

  Returns:
    Human-readable problems; empty when the rules partition the parameters.
  """
  rules = spec.blocks + (spec.head,)
  owned = {rule: 0 for rule in rules}
  problems = []
  for path in traverse_util.flatten_dict(params):
    prefixes = ["/".join(path[:i]) for i in range(1, len(path) + 1)]
    owners = [r for r in rules if any(re.fullmatch(r, p) for p in prefixes)]
    if len(owners) != 1:
      problems.append(f"{'/'.join(path)} is matched by {owners}")
    for r in owners:
      owned[r] += 1
  problems += [f"rule {r!r} matches no parameter" for r, n in owned.items() if n == 0]
  return problems


def registered_params(name: str):
  spec = models.MODELS[name]
  model = spec.build(NUM_CLASSES, jnp.float32)
  size = (spec.input_size, spec.input_size)
  return spec, template_for(model, size)["params"]


# ------------------------------------------------------------ block structure


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_blocks_and_head_partition_the_parameters(name):
  spec, params = registered_params(name)
  assert covers(spec, params) == []


def test_covers_reports_gaps_overlaps_and_dead_rules():
  spec, params = registered_params("resnet18")
  gap = dataclasses.replace(spec, blocks=spec.blocks[:-1])
  assert any(p.startswith("layer4/") for p in covers(gap, params))
  overlap = dataclasses.replace(spec, blocks=spec.blocks + ("layer4/0",))
  assert any("layer4/0/conv1/kernel is matched by" in p for p in covers(overlap, params))
  dead = dataclasses.replace(spec, blocks=spec.blocks + ("layer5",))
  assert covers(dead, params) == ["rule 'layer5' matches no parameter"]


def test_mobilenet_v3_small_first_seven_blocks_are_features_0_to_6():
  """freeze_shallow(7) must mean the MindCV guide's features.0..features.6."""
  spec, params = registered_params("mobilenet_v3_small")
  assert len(spec.blocks) == 13
  first7 = {p[:2] for p in traverse_util.flatten_dict(params)
            if any(re.fullmatch(b, "/".join(p[:2])) for b in spec.blocks[:7])}
  assert first7 == {("features", str(i)) for i in range(7)}


def test_blocks_run_shallow_to_deep_in_torchvision_order():
  """Each block's first parameter comes later in torchvision's registration order."""
  for name in SIZES:
    spec = models.MODELS[name]
    net = getattr(torchvision.models, name)(weights=None)
    paths = [k.rsplit(".", 1)[0].replace(".", "/") for k, _ in net.named_parameters()]
    firsts = []
    for block in spec.blocks:
      hits = [i for i, p in enumerate(paths)
              if any(re.fullmatch(block, "/".join(p.split("/")[:j]))
                     for j in range(1, p.count("/") + 2))]
      firsts.append(min(hits))
    assert firsts == sorted(firsts) and firsts[0] == 0, (name, firsts)


# ------------------------------------------------------- parity per architecture


@dataclasses.dataclass
class Case:
  name: str
  net: torch.nn.Module
  model: object
  template: dict
  variables: dict
  x: np.ndarray


@pytest.fixture(scope="module", params=sorted(SIZES))
def case(request) -> Case:
  name = request.param
  net = torch_net(name)
  model = models.MODELS[name].build(NUM_CLASSES, jnp.float32)
  template = template_for(model, SIZES[name])
  variables = torch_to_flax(numpy_state(net), template)
  x = np.random.default_rng(0).standard_normal((2, 3, *SIZES[name]), dtype=np.float32)
  return Case(name, net, model, template, variables, x)


@pytest.fixture(scope="module")
def eval_outputs(case):
  """torchvision (logits, trunk) and Flax (all, trunk, head(trunk)) in eval mode."""
  ref = torch_forward(case.net, case.x, models.MODELS[case.name].head)
  return ref, flax_outputs(case.model, case.variables, case.x)


@pytest.mark.slow
def test_conversion_fills_every_variable_with_the_template_shape(case):
  want = {k: v.shape for k, v in traverse_util.flatten_dict(case.template).items()}
  got = {k: v.shape for k, v in traverse_util.flatten_dict(case.variables).items()}
  assert sorted(got) == sorted(want)
  assert got == want


@pytest.mark.slow
def test_eval_logits_trunk_and_head_match_torchvision(case, eval_outputs):
  (ref_logits, ref_trunk), outputs = eval_outputs
  assert outputs[1].ndim == 2
  assert_eval_parity(outputs, ref_logits, ref_trunk, EVAL_TOL)


@pytest.mark.slow
def test_head_dropout_rates_match_torchvision(case):
  rates = [m.p for m in case.net.modules() if isinstance(m, torch.nn.Dropout)]
  assert rates == ([case.model.dropout] if hasattr(case.model, "dropout") else [])


@pytest.mark.slow
def test_train_mode_batchnorm_matches_torchvision(case):
  """One training-mode forward: batch-stat normalisation and running-stat updates."""
  net = copy.deepcopy(case.net).train()
  for m in net.modules():
    if isinstance(m, torch.nn.Dropout):
      m.p = 0.0
  ref = net(torch.from_numpy(case.x)).detach().numpy()
  ref_stats = torch_to_flax(numpy_state(net), case.template)["batch_stats"]
  model = case.model.clone(dropout=0.0) if hasattr(case.model, "dropout") else case.model
  logits, updated = run_jitted(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
      case.variables, nhwc(case.x))
  assert max_diff(logits, ref) < 2e-4, max_diff(logits, ref)
  old = traverse_util.flatten_dict(case.variables["batch_stats"])
  new = traverse_util.flatten_dict(updated["batch_stats"])
  want = traverse_util.flatten_dict(ref_stats)
  assert new.keys() == want.keys() == old.keys()
  for k in want:  # compare the updates, so BN's small momentum cannot hide errors
    delta, ref_delta = np.asarray(new[k]) - old[k], want[k] - old[k]
    assert np.abs(ref_delta).max() > 0, k
    assert max_diff(delta, ref_delta) < 1e-3 * np.abs(ref_delta).max() + 1e-6, (
        k, max_diff(delta, ref_delta))


# ------------------------------------------------------------------ the rest


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_returns_float32_logits():
  name, hw = "resnet18", SIZES["resnet18"]
  net = torch_net(name)
  model = models.MODELS[name].build(NUM_CLASSES, jnp.bfloat16)
  variables = torch_to_flax(numpy_state(net), template_for(model, hw))
  x = np.random.default_rng(0).standard_normal((2, 3, *hw), dtype=np.float32)
  ref, _ = torch_forward(net, x, "fc")
  logits, trunk = run_jitted(
      lambda v, x: (model.apply(v, x), model.apply(v, x, part="trunk")), variables, nhwc(x))
  assert trunk.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
  assert 0 < max_diff(logits, ref) < 0.05 * np.abs(ref).max(), max_diff(logits, ref)


def test_legacy_densenet_checkpoint_keys_convert_like_current_ones():
  net = torchvision.models.densenet121(weights=None)
  state = numpy_state(net)
  legacy = {re.sub(r"(denselayer\d+\.(norm|conv))([12])\.", r"\1.\3.", k): v
            for k, v in state.items()}
  assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
  template = template_for(models.MODELS["densenet121"].build(1000, jnp.float32), (64, 64))
  want = traverse_util.flatten_dict(torch_to_flax(state, template))
  got = traverse_util.flatten_dict(torch_to_flax(legacy, template))
  assert got.keys() == want.keys()
  assert all(np.array_equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "densenet121"])
def test_unknown_part_is_rejected(name):
  model = models.MODELS[name].build(NUM_CLASSES, jnp.float32)
  with pytest.raises(ValueError, match="part"):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                      part="pooled"))


def test_mobilenet_v3_squeeze_channels_are_divisible_by_8():
  _, params = registered_params("mobilenet_v3_large")
  squeeze = params["features"]["4"]["block"]["2"]["fc1"]["kernel"].shape
  assert squeeze == (1, 1, 72, 24)  # 72 // 4 = 18 -> 24
  assert mobilenet.make_divisible(18) == 24 and mobilenet.make_divisible(240 // 4) == 64
