"""The shifted multiply-add depthwise conv equals XLA's grouped convolution."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.models import conv as conv_lib
from ftlab.models import depthwise
from ftlab.models.depthwise import DepthwiseConv, depthwise_conv, resolve_padding


def grouped_conv(x, kernel, stride, padding):
  pads = resolve_padding(padding, x.shape[1], x.shape[2], kernel.shape[0], stride)
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=x.shape[-1], precision=jax.lax.Precision.HIGHEST)


def inputs(n, h, w, c, k, seed=0):
  kx, kw = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(kx, (n, h, w, c), jnp.float32)
  kernel = jax.random.normal(kw, (k, k, 1, c), jnp.float32)
  return x, kernel


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def value_and_grads(conv, x, kernel, stride, padding):
  """Output and the gradients of a fixed random projection of it."""
  y = conv(x, kernel, stride, padding)
  proj = jax.random.normal(jax.random.PRNGKey(7), y.shape, jnp.float32)
  loss = lambda x, w: jnp.sum(conv(x, w, stride, padding).astype(jnp.float32) * proj)
  dx, dw = jax.grad(loss, argnums=(0, 1))(x, kernel)
  return y, dx, dw


def assert_close(a, b, tol):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  assert a.shape == b.shape
  scale = max(1.0, float(np.max(np.abs(b))))
  np.testing.assert_allclose(a, b, atol=tol * scale, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", 1])
def test_matches_grouped_conv(k, stride, padding):
  # Odd height and even width: TF 'SAME' pads them differently at stride 2.
  x, kernel = inputs(3, 7, 8, 4, k)
  got = value_and_grads(depthwise_conv, x, kernel, stride, padding)
  want = value_and_grads(grouped_conv, x, kernel, stride, padding)
  for a, b in zip(got, want):
    assert_close(a, b, 1e-5)


@pytest.mark.slow
def test_explicit_asymmetric_padding():
  x, kernel = inputs(2, 8, 8, 3, 5)
  got = value_and_grads(depthwise_conv, x, kernel, 2, ((1, 2), (2, 1)))
  want = value_and_grads(grouped_conv, x, kernel, 2, ((1, 2), (2, 1)))
  for a, b in zip(got, want):
    assert_close(a, b, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["_input_grad_scatter", "_input_grad_gather"])
def test_both_input_gradient_forms_agree(form):
  x, kernel = inputs(2, 7, 8, 3, 3)
  pads = resolve_padding("SAME", 7, 8, 3, 2)
  g = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 4, 3))
  _, vjp = jax.vjp(lambda a: grouped_conv(a, kernel, 2, "SAME"), x)
  got = getattr(depthwise, form)(g, kernel, 2, pads, (7, 8))
  assert_close(got, vjp(g)[0], 1e-5)


def test_same_padding_puts_extra_pixel_at_end():
  assert depthwise.tf_same_padding(8, 3, 2) == (0, 1)
  assert depthwise.tf_same_padding(8, 5, 2) == (1, 2)
  assert depthwise.tf_same_padding(7, 3, 1) == (1, 1)
  assert depthwise.tf_same_padding(7, 5, 2) == (2, 2)


@pytest.mark.slow
def test_bfloat16_close_to_float32_reference():
  x, kernel = inputs(2, 9, 9, 8, 5)
  xb, kb = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  got = value_and_grads(depthwise_conv, xb, kb, 2, "SAME")
  want = value_and_grads(grouped_conv, xb.astype(jnp.float32), kb.astype(jnp.float32), 2, "SAME")
  for a, b in zip(got, want):
    assert a.dtype == jnp.bfloat16
    assert_close(a, b, 2e-2)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [5, 7])
def test_batches_not_multiple_of_chunk(batch, monkeypatch):
  monkeypatch.setattr(depthwise, "dw_chunk_size", lambda *_: 2)
  x, kernel = inputs(batch, 6, 6, 3, 3, seed=batch)
  got = value_and_grads(depthwise_conv, x, kernel, 2, "SAME")
  want = value_and_grads(grouped_conv, x, kernel, 2, "SAME")
  for a, b in zip(got, want):
    assert_close(a, b, 1e-5)


def test_chunk_size_from_byte_budget():
  assert depthwise.dw_chunk_size(100, 32, budget=1000, max_chunk=64) == 10
  assert depthwise.dw_chunk_size(10**6, 32, budget=1000, max_chunk=64) == 1
  assert depthwise.dw_chunk_size(1, 32, budget=1000, max_chunk=64) == 32
  assert depthwise.dw_chunk_size(1, 32, budget=1000, max_chunk=4) == 4


def test_module_param_layout_and_bias():
  module = DepthwiseConv(5, strides=2, padding=(1, 2), use_bias=True)
  x = jnp.ones((2, 8, 8, 6))
  variables = module.init(jax.random.PRNGKey(0), x)
  assert variables["params"]["kernel"].shape == (5, 5, 1, 6)
  assert variables["params"]["bias"].shape == (6,)
  y = module.apply(variables, x)
  want = grouped_conv(x, variables["params"]["kernel"], 2, (1, 2))
  assert y.shape == (2, 4, 4, 6)
  assert_close(y, want, 1e-5)


def test_module_bfloat16_dtype():
  module = DepthwiseConv(3, dtype=jnp.bfloat16)
  x = jnp.ones((1, 5, 5, 2))
  variables = module.init(jax.random.PRNGKey(0), x)
  assert variables["params"]["kernel"].dtype == jnp.float32
  assert module.apply(variables, x).dtype == jnp.bfloat16


@pytest.fixture
def restore_depthwise():
  before = dict(conv_lib._selected)  # pylint: disable=protected-access
  yield
  conv_lib.select(before["impl"], before["depthwise"])


def test_depthwise_choice_is_per_backend_and_overridable():
  resolve = conv_lib._resolve_depthwise  # pylint: disable=protected-access
  assert resolve("auto", "cpu") == "ftlab"
  assert resolve("auto", "gpu") == "xla" and resolve("auto", "tpu") == "xla"
  assert resolve("xla", "cpu") == "xla" and resolve("ftlab", "gpu") == "ftlab"
  with pytest.raises(ValueError, match=r"config.model.depthwise_impl='cudnn'; use one of"):
    conv_lib.select("auto", "cudnn")


@pytest.mark.parametrize("impl", ["ftlab", "xla"])
def test_module_runs_where_depthwise_impl_says(impl, restore_depthwise):
  module = DepthwiseConv(3, 2, padding="SAME", use_bias=True)
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 8, 5))
  params = module.init(jax.random.PRNGKey(0), x)
  conv_lib.select("auto", impl)
  hlo = jax.jit(module.apply).lower(params, x).as_text()
  assert ("feature_group_count = 5" in hlo) == (impl == "xla")
  got = module.apply(params, x)
  want = grouped_conv(x, params["params"]["kernel"], 2, "SAME") + params["params"]["bias"]
  assert_close(got, want, 1e-5)
