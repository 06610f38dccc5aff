"""ftlab.models.pooling.max_pool: values of nn.max_pool, PyTorch's gradient."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ftlab.models.pooling import global_avg_pool, max_pool

CASES = [((3, 3), (2, 2), ((1, 1), (1, 1))), ((2, 2), (2, 2), ((0, 0), (0, 0))),
         ((3, 3), (1, 1), ((1, 1), (1, 1)))]


@pytest.mark.slow
@pytest.mark.parametrize("window,strides,padding", CASES)
@pytest.mark.parametrize("hw", [(9, 9), (10, 7)])
def test_values_and_gradient_match_flax_without_ties(window, strides, padding, hw):
  x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
  g = jax.random.normal(jax.random.key(1), nn.max_pool(x, window, strides, padding).shape)
  ours, ours_vjp = jax.vjp(lambda x: max_pool(x, window, strides, padding), x)
  ref, ref_vjp = jax.vjp(lambda x: nn.max_pool(x, window, strides, padding), x)
  np.testing.assert_array_equal(ours, ref)
  np.testing.assert_allclose(ours_vjp(g)[0], ref_vjp(g)[0], rtol=1e-6, atol=1e-6)


def test_ties_send_the_gradient_to_the_first_maximum_like_pytorch():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, (2, 8, 8, 4)).astype(np.float32)  # many ties
  ours, vjp = jax.vjp(lambda x: max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1))), jnp.asarray(x))
  g = rng.normal(size=ours.shape).astype(np.float32)
  tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
  ty = torch.nn.functional.max_pool2d(tx, 3, 2, 1)
  ty.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
  np.testing.assert_array_equal(ours, ty.detach().numpy().transpose(0, 2, 3, 1))
  np.testing.assert_allclose(vjp(jnp.asarray(g))[0], tx.grad.numpy().transpose(0, 2, 3, 1),
                             rtol=1e-6, atol=1e-6)


def test_bfloat16_stays_bfloat16():
  x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
  y, vjp = jax.vjp(lambda x: max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1))), x)
  assert y.dtype == jnp.bfloat16 and vjp(y)[0].dtype == jnp.bfloat16


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_global_avg_pool_is_the_spatial_mean(dtype):
  x = jax.random.normal(jax.random.key(2), (3, 5, 7, 4)).astype(dtype)
  y = global_avg_pool(x)
  assert y.shape == (3, 4) and y.dtype == dtype
  np.testing.assert_allclose(np.asarray(y, np.float32),
                             np.asarray(jnp.mean(x.astype(jnp.float32), axis=(1, 2))),
                             rtol=1e-2 if dtype == jnp.bfloat16 else 1e-6, atol=1e-6)
