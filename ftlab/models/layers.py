"""Layers shared by every architecture: the train/eval `Mode`, BatchNorm, Dropout, DropPath.

Every model threads one `train` argument through its modules. It is either a
plain bool or a `Mode`, which additionally names the parts of the network that
stay in inference mode while the rest trains: BatchNorm modules that normalise
with their running statistics and never update them, and frozen modules,
inside which dropout and drop-path are off. A frozen trunk under a `Mode`
therefore computes exactly what it computes at evaluation.
"""
import dataclasses
from typing import Any, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.conv import Conv


@dataclasses.dataclass(frozen=True)
class Mode:
  """Training mode with per-module BatchNorm freezing.

  Attributes:
    train: whether the network is being trained (dropout on, BN batch stats).
    frozen_bn: '/'-joined module paths of BatchNorm layers kept in inference
      mode even when `train` is True.
    frozen_modules: '/'-joined paths of modules all of whose parameters are
      frozen; dropout and drop-path inside them are off (`stochastic`).
    bn_momentum: when > 0, the running-statistics momentum of every BatchNorm
      (PyTorch convention: weight of the new batch), in place of the
      architecture's own; TF-trained weights use 0.01, which leaves the
      running statistics of a short fine-tuning run far from the new data.
    stochastic: False turns dropout and drop-path off everywhere (the
      forward passes that only measure BatchNorm statistics, training/bn_stats.py).
  """
  train: bool
  frozen_bn: frozenset = frozenset()
  bn_momentum: float = 0.0  # > 0: overrides every BatchNorm's momentum (timm's --bn-momentum)
  frozen_modules: frozenset = frozenset()
  stochastic: bool = True


TrainArg = Union[bool, Mode]


def is_training(train: TrainArg) -> bool:
  return train.train if isinstance(train, Mode) else bool(train)


def stochastic(train: TrainArg, path: tuple) -> bool:
  """True if dropout / drop-path at module `path` is on: training, and not inside a frozen module."""
  if not is_training(train):
    return False
  if isinstance(train, Mode):
    return train.stochastic and not any("/".join(path[:i]) in train.frozen_modules
                                        for i in range(1, len(path)))
  return True


def bn_uses_batch_stats(train: TrainArg, path: tuple) -> bool:
  """True if the BatchNorm module at `path` normalises with batch statistics."""
  if not is_training(train):
    return False
  if isinstance(train, Mode):
    return "/".join(path) not in train.frozen_bn
  return True


class BatchNorm(nn.Module):
  """BatchNorm over all but the last axis with PyTorch's semantics.

  `momentum` is PyTorch's (weight of the new batch statistic, 0.1 by default);
  the running variance is updated with the unbiased batch variance, as
  `torch.nn.BatchNorm2d` does, so converted checkpoints and fine-tuning runs
  behave like the original. Parameters are `scale`/`bias`, statistics
  `mean`/`var` in the `batch_stats` collection.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  scale_init: Any = nn.initializers.ones  # zeros: timm's zero_init_last residual BatchNorms

  @nn.compact
  def __call__(self, x, train: TrainArg):
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    if bn_uses_batch_stats(train, self.path):
      axes = tuple(range(x.ndim - 1))
      x32 = x.astype(jnp.float32)
      mean = jnp.mean(x32, axes)
      var = jnp.mean(jnp.square(x32 - mean), axes)
      if not self.is_initializing():
        n = x.size // features
        unbiased = var * (n / max(n - 1, 1))
        m = train.bn_momentum if isinstance(train, Mode) and train.bn_momentum else self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * mean
        ra_var.value = (1 - m) * ra_var.value + m * unbiased
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax_rsqrt(var + self.epsilon)
    y = x.astype(self.dtype) * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)
    return y


def jax_rsqrt(x):
  return 1.0 / jnp.sqrt(x)


class Dropout(nn.Module):
  """Dropout that reads the shared `train` argument (rng stream 'dropout'); off in frozen modules."""
  rate: float

  @nn.compact
  def __call__(self, x, train: TrainArg):
    return nn.Dropout(self.rate, deterministic=not stochastic(train, self.path))(x)


def torch_conv(features: int, kernel: int, stride: int, dtype: Any, name: str,
               kernel_init=inits.KAIMING_NORMAL_FAN_OUT) -> Conv:
  """Bias-free conv with PyTorch's symmetric padding (kernel - 1) // 2."""
  p = (kernel - 1) // 2
  return Conv(features, (kernel, kernel), (stride, stride), padding=((p, p), (p, p)),
              use_bias=False, dtype=dtype, kernel_init=kernel_init, name=name)


class DropPath(nn.Module):
  """torchvision's StochasticDepth(p, 'row'): drops whole samples of a residual branch.

  On only in training and outside frozen modules (`stochastic`); survivors are
  scaled by 1 / (1 - rate). Uses the 'dropout' rng stream.
  """
  rate: float

  @nn.compact
  def __call__(self, x, train: TrainArg):
    if self.rate == 0.0 or not stochastic(train, self.path):
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0).astype(x.dtype)
