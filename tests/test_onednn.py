"""ftlab's oneDNN convolutions (`ftlab.ops`, `ftlab.models.conv`) against XLA's.

Every test here needs the library, which `ftlab.ops.build` compiles on first
use (CI builds it from scratch); they skip, saying why, only where it cannot
be built (no oneDNN wheel or no C++ compiler).
"""
import logging
import os
import re
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest
import torch
import torchvision

from ftlab import models
from ftlab.models import conv as conv_lib
from ftlab.ops import build
from ftlab.ops import conv as ops
from ftlab.pretrained.layout import torch_to_flax
from ftlab.training import run as run_lib
from ftlab.training import steps
from tests.helpers import tiny_config
from tests.torch_reference import randomise_

REL_TOL = 1e-4
AVAILABLE, WHY = ops.availability()
needs_library = pytest.mark.skipif(not AVAILABLE, reason=f"oneDNN library not buildable: {WHY}")
pytestmark = needs_library
WEIGHT_GRAD = ops.TARGETS["backward_weights"][0]

# (batch, height, width, in, out, kernel, stride, padding, dilation)
GRID = [
    (2, 9, 9, 5, 7, 1, 1, "VALID", 1),
    (2, 10, 10, 8, 16, 1, 2, "SAME", 1),
    (2, 12, 12, 8, 16, 3, 1, "SAME", 1),
    (3, 11, 13, 6, 4, 3, 2, "SAME", 1),
    (1, 15, 15, 3, 8, 7, 2, ((3, 3), (3, 3)), 1),
    (2, 17, 14, 4, 6, 7, 1, "VALID", 1),
    (2, 13, 13, 4, 8, 3, 2, "VALID", 1),
    (2, 12, 11, 4, 4, 3, 1, ((0, 2), (1, 0)), 1),
    (2, 14, 14, 4, 4, 3, 1, "SAME", 2),
    (1, 16, 16, 3, 5, 3, 2, ((2, 1), (2, 2)), 3),
    (32, 5, 5, 8, 8, 3, 1, "SAME", 1),
    (32, 7, 7, 16, 8, 1, 2, "VALID", 1),
]


def case_id(case) -> str:
  n, h, w, cin, cout, k, s, pad, d = case
  return f"n{n}_{h}x{w}x{cin}-{cout}_k{k}s{s}d{d}_" + re.sub(r"\W+", "", str(pad))


def geometry_of(case, x_shape) -> ops.Geometry:
  _, _, _, _, _, k, s, pad, d = case
  pads = conv_lib.explicit_padding(pad, x_shape[1:3], (k, k), (s, s), (d, d))
  return ops.Geometry((s, s), pads, (d, d))


def xla_conv(x, w, geometry: ops.Geometry):
  return lax.conv_general_dilated(x, w, geometry.strides, geometry.padding,
                                  rhs_dilation=geometry.dilation,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=lax.Precision.HIGHEST)


def assert_close(got, want, what: str) -> None:
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  scale = float(np.abs(want).max())
  assert scale > 0, what
  err = float(np.abs(got - want).max())
  assert err <= REL_TOL * scale, f"{what}: max error {err:.3g} > {REL_TOL} * {scale:.3g}"


def hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).compile().as_text()


def run_fast(fn, *args):
  """Compiles `fn` without XLA's backend (LLVM) optimisations (each runs once) and runs it."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})(*args)


@pytest.fixture(autouse=True)
def restore_selection():
  before = conv_lib._selected["impl"]  # pylint: disable=protected-access
  yield
  conv_lib.select(before)


@pytest.mark.slow
@pytest.mark.parametrize("case", GRID, ids=case_id)
def test_values_and_gradients_match_xla(case):
  n, h, w, cin, cout, k, *_ = case
  x = jax.random.normal(jax.random.key(0), (n, h, w, cin))
  kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
  geometry = geometry_of(case, x.shape)
  probe = jax.random.normal(jax.random.key(2), jax.eval_shape(
      lambda a, b: xla_conv(a, b, geometry), x, kernel).shape)

  def outputs(conv):
    def fn(a, b):
      y, vjp = jax.vjp(lambda u, v: conv(u, v, geometry), a, b)
      return (y, *vjp(probe))
    return fn

  want = run_fast(outputs(xla_conv), x, kernel)
  got = run_fast(outputs(ops.conv2d), x, kernel)
  for what, g, w in zip(("output", "input gradient", "kernel gradient"), got, want):
    assert_close(g, w, what)


@pytest.mark.slow
@pytest.mark.parametrize("padding", ["SAME", "VALID", 1, ((0, 1), (2, 0))])
def test_conv_module_equals_flax_conv_on_both_implementations(padding):
  x = jax.random.normal(jax.random.key(0), (2, 11, 10, 3))
  theirs = nn.Conv(6, (3, 3), (2, 2), padding=padding)
  variables = theirs.init(jax.random.key(1), x)
  ours = conv_lib.Conv(6, (3, 3), (2, 2), padding=padding)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == \
      jax.tree.map(jnp.shape, variables)
  for impl in ("xla", "onednn"):
    conv_lib.select(impl)
    text = hlo(ours.apply, variables, x)
    assert (ops.TARGETS["forward"][0] in text) == (impl == "onednn"), impl
    assert_close(ours.apply(variables, x), theirs.apply(variables, x), f"{impl} {padding}")


def test_frozen_kernel_costs_no_weight_gradient_call():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
  geometry = ops.Geometry((1, 1), ((1, 1), (1, 1)))
  loss = lambda a, b: jnp.sum(ops.conv2d(jnp.tanh(a), b, geometry) ** 2)  # pylint: disable=unnecessary-lambda-assignment
  assert hlo(jax.grad(loss, 0), x, w).count(WEIGHT_GRAD) == 0
  assert hlo(jax.grad(loss, (0, 1)), x, w).count(WEIGHT_GRAD) == 1


def _weight_gradient_calls(image_folder, tmp_path, strategy: str) -> int:
  config = tiny_config(image_folder, **{"strategy.name": strategy, "strategy.freeze_blocks": 2,
                                        "model.conv_impl": "onednn"})
  run = run_lib.prepare(config, str(tmp_path / strategy), for_training=False)
  state = run.template(0)
  batch = run.devices.shard_batch(next(run.loaders["train"].epoch(0)))
  text = jax.jit(steps.make_train_step(run.setup)).lower(state, batch, jax.random.key(0)) \
      .compile().as_text()
  assert "convolution(" not in text  # every conv of tiny_cnn went through oneDNN
  return len(re.findall(f'custom_call_target="{WEIGHT_GRAD}"', text))


@pytest.mark.slow
def test_train_step_computes_weight_gradients_of_trainable_convs_only(image_folder, tmp_path):
  counts = {s: _weight_gradient_calls(image_folder, tmp_path, s)
            for s in ("freeze_shallow", "full_ft")}
  convs = 3  # tiny_cnn: conv1, layer1/conv, layer2/conv; freeze_blocks=2 freezes conv1 and layer1
  assert counts == {"freeze_shallow": convs - 2, "full_ft": convs}, counts


def test_unsupported_convolution_falls_back_to_xla_once_per_shape(caplog):
  conv_lib.select("onednn")
  conv_lib._log_fallback.cache_clear()  # pylint: disable=protected-access
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
  with caplog.at_level(logging.INFO):
    for _ in range(2):
      text = hlo(lambda a, b: conv_lib.conv2d(a, b, (1, 1), ((-1, 1), (1, 1))), x, w)
  assert ops.TARGETS["forward"][0] not in text and "convolution(" in text
  lines = [r.getMessage() for r in caplog.records if "runs on XLA" in r.getMessage()]
  assert len(lines) == 1 and "negative padding" in lines[0], lines


@pytest.mark.slow
def test_bfloat16_convolutions_fall_back_to_xla_with_one_line_per_dtype(caplog):
  conv_lib.select("onednn")
  conv_lib._log_dtype_fallback.cache_clear()  # pylint: disable=protected-access
  with caplog.at_level(logging.INFO):
    for shape in ((2, 8, 8, 4), (2, 6, 6, 4), (1, 5, 5, 4)):
      x = jax.random.normal(jax.random.key(0), shape, jnp.bfloat16)
      w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4), jnp.bfloat16)
      text = hlo(lambda a, b: conv_lib.conv2d(a, b, (1, 1), "SAME"), x, w)
      assert ops.TARGETS["forward"][0] not in text and "convolution(" in text
  lines = [r.getMessage() for r in caplog.records if "run on XLA" in r.getMessage()]
  assert len(lines) == 1 and "bfloat16" in lines[0], lines


@needs_library
def test_torchvision_resnet18_logits_with_onednn():
  conv_lib.select("onednn")
  torch.manual_seed(0)
  net = torchvision.models.resnet18(weights=None, num_classes=10)
  randomise_(net)
  net.eval()
  model = models.MODELS["resnet18"].build(10, jnp.float32)
  x = np.random.default_rng(0).standard_normal((2, 3, 64, 57), dtype=np.float32)
  template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 57, 3)))
  variables = torch_to_flax({k: v.detach().numpy() for k, v in net.state_dict().items()},
                            template)
  xh = jnp.asarray(x.transpose(0, 2, 3, 1))
  text = hlo(model.apply, variables, xh)
  assert text.count(ops.TARGETS["forward"][0]) >= 20 and "convolution(" not in text
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  got = np.asarray(jax.jit(model.apply)(variables, xh))
  assert float(np.abs(got - want).max()) < 1e-4, float(np.abs(got - want).max())


def test_onednn_requested_but_unavailable_is_a_one_line_error(monkeypatch):
  monkeypatch.setattr(ops, "availability", lambda: (False, "no oneDNN under /nowhere; pip ..."))
  with pytest.raises(ValueError, match=r"conv_impl='onednn'.*unavailable: no oneDNN") as err:
    conv_lib.select("onednn")
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="config.model.conv_impl='cudnn'"):
    conv_lib.select("cudnn")


def test_auto_resolves_per_backend_and_falls_back_without_the_library(monkeypatch):
  resolve = conv_lib._resolve  # pylint: disable=protected-access
  resolve.cache_clear()
  try:
    assert conv_lib.AUTO_CPU == "onednn"
    assert resolve("auto", "cpu") == "onednn"
    assert resolve("auto", "gpu") == "xla"
    monkeypatch.setattr(conv_lib, "AUTO_CPU", "xla")
    resolve.cache_clear()
    assert resolve("auto", "cpu") == "xla"
    monkeypatch.setattr(conv_lib, "AUTO_CPU", "onednn")
    monkeypatch.setattr(ops, "availability", lambda: (False, "no compiler"))
    resolve.cache_clear()
    assert resolve("auto", "cpu") == "xla"
  finally:
    resolve.cache_clear()


def test_missing_onednn_says_what_to_install(monkeypatch, tmp_path):
  monkeypatch.setattr(build, "_prefixes", lambda: [tmp_path])
  with pytest.raises(build.BuildError, match="pip install -r requirements.txt"):
    build.build()


@pytest.mark.slow
def test_build_is_cached_by_source_and_reused(tmp_path, monkeypatch):
  monkeypatch.setenv("FTLAB_CACHE_DIR", str(tmp_path))
  first = build.build()
  assert first.is_file() and str(first).startswith(str(tmp_path))
  stamp = first.stat().st_mtime_ns
  assert build.build() == first and first.stat().st_mtime_ns == stamp


MULTI_DEVICE = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from ftlab.ops import conv
    geometry = conv.Geometry((2, 2), ((1, 1), (1, 1)))
    x = jax.random.normal(jax.random.key(0), (16, 9, 9, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
    loss = lambda a, b: jnp.sum(jnp.sin(conv.conv2d(a, b, geometry)))
    step = jax.jit(jax.value_and_grad(loss, (0, 1)))
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ws = jax.device_put(w, NamedSharding(mesh, P()))
    text = step.lower(xs, ws).compile().as_text()
    one = step(x, w)
    many = step(xs, ws)
    err = max(float(jnp.abs(a - b).max() / jnp.abs(b).max())
              for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one)))
    print("DEVICES", len(jax.devices()), "ERR", err, "LOCAL", "f32[2,9,9,4]" in text,
          "GATHER", "all-gather" in text)
""")


@pytest.mark.slow
def test_eight_devices_each_convolve_their_batch_shard():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
  proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE], capture_output=True, text=True,
                        env=env, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  fields = proc.stdout.split()
  values = dict(zip(fields[::2], fields[1::2]))
  assert values["DEVICES"] == "8"
  assert float(values["ERR"]) < REL_TOL
  assert values["LOCAL"] == "True" and values["GATHER"] == "False", proc.stdout
