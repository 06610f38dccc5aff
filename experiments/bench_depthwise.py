"""Times the shifted multiply-add depthwise conv against XLA's grouped conv.

Prints forward and forward+backward milliseconds for a few EfficientNet-Lite0
depthwise layer shapes at batch 32 (spatial sizes of a 96x96 input by
default; `--size 224` for the configured resolution).

  python experiments/bench_depthwise.py [--size 96] [--batch 32] [--repeats 5]
      [--train_step]

`--train_step` also times a whole EfficientNet-Lite0 SGD train step (forward,
backward, update; train-mode BatchNorm) with either depthwise implementation.
"""
import argparse
import functools
import time

import jax
import jax.numpy as jnp
import optax

from ftlab.models import depthwise, efficientnet_lite

# (channels, kernel, stride, input size as a fraction of the image size) of
# EfficientNet-Lite0 depthwise layers, shallow to deep.
LITE0_LAYERS = (
    (32, 3, 1, 1 / 2),
    (96, 3, 2, 1 / 2),
    (144, 5, 2, 1 / 4),
    (240, 3, 2, 1 / 8),
    (480, 5, 1, 1 / 16),
    (672, 5, 2, 1 / 16),
    (1152, 3, 1, 1 / 32),
)


def grouped_conv(x, kernel, stride, padding="SAME"):
  pads = depthwise.resolve_padding(padding, x.shape[1], x.shape[2], kernel.shape[0], stride)
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=x.shape[-1])


def shifted_conv(x, kernel, stride):
  return depthwise.depthwise_conv(x, kernel, stride, "SAME")


def fwd_bwd(conv, x, kernel, stride):
  """Output and both gradients of sum(conv(x) * 1)."""
  y, vjp = jax.vjp(lambda a, b: conv(a, b, stride), x, kernel)
  return (y,) + vjp(jnp.ones_like(y))


def time_ms(fn, *args, repeats):
  jax.block_until_ready(fn(*args))  # compile
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best * 1e3


def bench_layer(batch, size, channels, k, stride, repeats):
  hw = max(1, round(size))
  kx, kw = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(kx, (batch, hw, hw, channels), jnp.float32)
  kernel = jax.random.normal(kw, (k, k, 1, channels), jnp.float32)
  row = {}
  for name, conv in (("grouped", grouped_conv), ("shifted", shifted_conv)):
    fwd = jax.jit(functools.partial(conv, stride=stride))
    both = jax.jit(functools.partial(fwd_bwd, conv, stride=stride))
    row[name] = (time_ms(fwd, x, kernel, repeats=repeats),
                 time_ms(both, x, kernel, repeats=repeats))
  return hw, row


def lite0_images_per_second(batch, size, repeats):
  """Images/s of a jitted Lite0 train step with the current `depthwise_conv`."""
  model = efficientnet_lite.efficientnet_lite0(10)
  x = jnp.ones((batch, size, size, 3))
  labels = jnp.zeros((batch,), jnp.int32)
  variables = model.init(jax.random.PRNGKey(0), x[:1])
  tx = optax.sgd(0.01)

  @jax.jit
  def step(params, stats, opt_state):
    def loss_fn(p):
      logits, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(1)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new
    grads, new = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new["batch_stats"], opt_state

  args = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  return batch / (time_ms(step, *args, repeats=repeats) / 1e3)


def bench_train_step(batch, size, repeats):
  fast = depthwise.depthwise_conv
  print(f"Lite0 train step, batch {batch}, {size}x{size}:")
  try:
    depthwise.depthwise_conv = grouped_conv
    print(f"  grouped conv: {lite0_images_per_second(batch, size, repeats):6.1f} images/s",
          flush=True)
  finally:
    depthwise.depthwise_conv = fast
  print(f"  shifted:      {lite0_images_per_second(batch, size, repeats):6.1f} images/s")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--train_step", action="store_true")
  args = parser.parse_args()
  print(f"batch {args.batch}, image {args.size}, best of {args.repeats} (ms); "
        f"kernel-grad chunks of <= {depthwise.DW_MAX_CHUNK} images, "
        f"<= {depthwise.DW_CHUNK_BYTES >> 20} MiB")
  print(f"{'layer (HxW C k s)':>22} | {'grouped fwd':>11} {'fwd+bwd':>9} | "
        f"{'shifted fwd':>11} {'fwd+bwd':>9} | {'speedup fwd':>11} {'fwd+bwd':>8}")
  totals = {"grouped": [0.0, 0.0], "shifted": [0.0, 0.0]}
  for channels, k, stride, frac in LITE0_LAYERS:
    hw, row = bench_layer(args.batch, args.size * frac, channels, k, stride, args.repeats)
    for name, (f, fb) in row.items():
      totals[name][0] += f
      totals[name][1] += fb
    (gf, gb), (sf, sb) = row["grouped"], row["shifted"]
    layer = f"{hw}x{hw} {channels} k{k} s{stride}"
    print(f"{layer:>22} | {gf:11.2f} {gb:9.2f} | {sf:11.2f} {sb:9.2f} | "
          f"{gf / sf:10.1f}x {gb / sb:7.1f}x", flush=True)
  (gf, gb), (sf, sb) = totals["grouped"], totals["shifted"]
  print(f"{'total':>22} | {gf:11.2f} {gb:9.2f} | {sf:11.2f} {sb:9.2f} | "
        f"{gf / sf:10.1f}x {gb / sb:7.1f}x")
  if args.train_step:
    bench_train_step(args.batch, args.size, args.repeats)


if __name__ == "__main__":
  main()
