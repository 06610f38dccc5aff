"""Helpers shared by the tests against PyTorch originals: randomised torch models, the tiny
torch twin of tiny_cnn, and running, comparing and converting both sides.

This module imports torch, which must not be loaded after TensorFlow (see conftest.py): torch-
free helpers are in tests/helpers.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import torch

from ftlab import models

NUM_CLASSES = 10


def randomise_(net: torch.nn.Module, seed: int = 1) -> None:
  """Random BN statistics/affine, linear weights and conv biases at scales keeping activations O(1).

  Freshly constructed PyTorch models have BN mean 0 / var 1 / scale 1 / shift 0,
  which would hide a mistake in how statistics or affine parameters convert.
  """
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.2, generator=gen)
        m.running_var.uniform_(0.5, 2.0, generator=gen)
        m.weight.uniform_(0.2, 0.6, generator=gen)
        m.bias.normal_(0, 0.2, generator=gen)
      elif isinstance(m, torch.nn.Linear):
        m.weight.normal_(0, m.in_features**-0.5, generator=gen)
        m.bias.normal_(0, 0.1, generator=gen)
      elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
        m.bias.normal_(0, 0.1, generator=gen)


def randomise_transformer_(net: torch.nn.Module, is_norm, is_embedding) -> None:
  """Random weights at scales keeping a ViT's activations O(1), from torch's global generator.

  Biases N(0, 0.1^2); the LayerNorm affine parameters (`is_norm(name)`) U(0.5, 1.5); matrices
  N(0, 1 / fan_in) except the class token and position embedding (`is_embedding(name)`),
  which, like the remaining tensors, get N(0, 0.5^2).
  """
  with torch.no_grad():
    for name, p in net.named_parameters():
      if name.endswith("bias"):
        p.normal_(0, 0.1)
      elif is_norm(name):
        p.uniform_(0.5, 1.5)
      elif p.ndim >= 2 and not is_embedding(name):
        p.normal_(0, p[0].numel() ** -0.5)
      else:
        p.normal_(0, 0.5)


def numpy_state(net: torch.nn.Module) -> dict:
  """The state dict as numpy copies (a later train-mode step of `net` leaves them unchanged)."""
  return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def template_for(model, hw) -> dict:
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3)))


def nhwc(x: np.ndarray) -> jnp.ndarray:
  return jnp.asarray(x.transpose(0, 2, 3, 1))


def run_jitted(fn, *args):
  """Compiles `fn` for `args` and runs it once.

  Each graph runs a single time, so compilation dominates; XLA's backend
  (LLVM) optimisations are turned off to halve it. They do not change the
  floating-point semantics the parity checks rely on.
  """
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})(*args)


def max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


def flax_outputs(model, variables, x: np.ndarray, dropout_rng=None) -> tuple:
  """Flax (logits, trunk, head(trunk)) in eval mode for the NCHW batch `x`, in one compiled
  program; with `dropout_rng`, the train-mode logits as a fourth output."""

  def run(v, x):
    trunk = model.apply(v, x, part="trunk")
    out = (model.apply(v, x), trunk, model.apply(v, trunk, part="head"))
    if dropout_rng is not None:
      out += (model.apply(v, x, train=True, rngs={"dropout": dropout_rng}),)
    return out

  return run_jitted(run, variables, nhwc(x))


def assert_eval_parity(outputs: tuple, ref_logits, ref_trunk, tol: float) -> None:
  """`flax_outputs`' logits and trunk within `tol` of the reference's (its trunk flattened per
  example), and the head applied to the trunk equal to the whole model."""
  logits, trunk, head = outputs[:3]
  assert logits.dtype == jnp.float32 and logits.shape == ref_logits.shape
  assert max_diff(logits, ref_logits) < tol, max_diff(logits, ref_logits)
  ref_trunk = np.reshape(ref_trunk, (len(ref_trunk), -1))
  assert trunk.shape == ref_trunk.shape, (trunk.shape, ref_trunk.shape)
  assert max_diff(trunk, ref_trunk) < tol, max_diff(trunk, ref_trunk)
  assert max_diff(head, logits) < 1e-6


def torch_forward(net, x: np.ndarray, head: str):
  """torchvision logits and the features entering its head module `head`."""
  seen = {}

  def keep_input(_, args):
    seen["trunk"] = args[0].detach().numpy()

  hook = getattr(net, head).register_forward_pre_hook(keep_input)
  try:
    with torch.no_grad():
      logits = net(torch.from_numpy(x)).numpy()
  finally:
    hook.remove()
  return logits, seen["trunk"]


class _TorchConvBN(torch.nn.Module):
  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv = torch.nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
    self.bn = torch.nn.BatchNorm2d(cout)

  def forward(self, x):
    return torch.relu(self.bn(self.conv(x)))


class TorchTiny(torch.nn.Module):
  """PyTorch twin of ftlab.models.tiny.TinyCNN (same module names)."""

  def __init__(self, num_classes, width=8):
    super().__init__()
    self.conv1 = torch.nn.Conv2d(3, width, 3, padding=1, bias=False)
    self.bn1 = torch.nn.BatchNorm2d(width)
    self.layer1 = _TorchConvBN(width, 2 * width, 2)
    self.layer2 = _TorchConvBN(2 * width, 4 * width, 2)
    self.fc = torch.nn.Linear(4 * width, num_classes)

  def forward(self, x):
    x = torch.relu(self.bn1(self.conv1(x)))
    return self.fc(self.layer2(self.layer1(x)).mean(dim=(2, 3)))


def torch_tiny(num_classes, width=8, seed=0):
  """A TorchTiny with random weights and non-trivial BatchNorm statistics."""
  torch.manual_seed(seed)
  net = TorchTiny(num_classes, width)
  for module in net.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      module.running_mean.uniform_(-0.5, 0.5)
      module.running_var.uniform_(0.5, 2.0)
      module.weight.data.uniform_(0.5, 1.5)
      module.bias.data.uniform_(-0.5, 0.5)
  return net.eval()


def tiny_template(num_classes):
  """TinyCNN and variables filled with numpy noise (no JAX random-op compiles)."""
  model = models.get_spec("tiny_cnn").build(num_classes, jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(1), jnp.zeros((1, 32, 32, 3)))
  rng = np.random.default_rng(1)

  def fill(path, s):
    positive = path[-1].key == "var"  # BatchNorm variances
    return jnp.asarray(rng.uniform(0.5, 2, s.shape) if positive else rng.normal(size=s.shape),
                       s.dtype)

  return model, jax.tree_util.tree_map_with_path(fill, shapes)
