"""GFLOP/s of ResNet-18's convolutions: XLA, ftlab's oneDNN custom calls, PyTorch.

  python experiments/bench_conv_layers.py [--image_size=96] [--batch=32] [--steps=10]

For every distinct convolution of ResNet-18 at `--image_size` (batch 32, float32,
NHWC / channels_last), times the forward pass, the input gradient
(backward-data) and the kernel gradient (backward-weights) of each
implementation, interleaved layer by layer so that the machine's drift hits
all three alike:

* XLA: `lax.conv_general_dilated` jitted (the gradients via `jax.vjp`, so
  XLA compiles only the one asked for), with ftlab's XLA flags;
* oneDNN: `ftlab.ops.conv`'s three custom calls, jitted one by one;
* PyTorch: `torch.nn.functional.conv2d` and `torch.ops.aten.convolution_backward`
  on channels_last tensors, `torch.set_num_threads` = cores.

GFLOP/s = 2 * N * Ho * Wo * Cout * Cin * kh * kw / median seconds (the same
count for each pass). The last line sums the time over ResNet-18's 20 convs
(each shape weighted by how often it occurs).
"""
import argparse
import functools

import benchlib

# (name, count in ResNet-18, in_channels, out_channels, kernel, stride, input size at 224 / 224)
LAYERS = (
    ("conv1 7x7/2", 1, 3, 64, 7, 2, 1.0),
    ("layer1 3x3", 4, 64, 64, 3, 1, 0.25),
    ("layer2 3x3/2", 1, 64, 128, 3, 2, 0.25),
    ("layer2 1x1/2", 1, 64, 128, 1, 2, 0.25),
    ("layer2 3x3", 3, 128, 128, 3, 1, 0.125),
    ("layer3 3x3/2", 1, 128, 256, 3, 2, 0.125),
    ("layer3 1x1/2", 1, 128, 256, 1, 2, 0.125),
    ("layer3 3x3", 3, 256, 256, 3, 1, 0.0625),
    ("layer4 3x3/2", 1, 256, 512, 3, 2, 0.0625),
    ("layer4 1x1/2", 1, 256, 512, 1, 2, 0.0625),
    ("layer4 3x3", 3, 512, 512, 3, 1, 0.03125),
)
PASSES = ("fwd", "bwd_data", "bwd_weights")
IMPLS = ("xla", "onednn", "torch")


def jax_calls(batch, size, cin, cout, k, stride):
  """{(impl, pass): blocking callable} for XLA and ftlab's oneDNN calls."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax import lax  # pylint: disable=import-outside-toplevel

  from ftlab.ops import conv  # pylint: disable=import-outside-toplevel
  p = (k - 1) // 2
  pads = ((p, p), (p, p))
  geometry = conv.Geometry((stride, stride), pads)
  x = jax.random.normal(jax.random.key(0), (batch, size, size, cin))
  w = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
  xla = lambda a, b: lax.conv_general_dilated(a, b, (stride, stride), pads,  # pylint: disable=unnecessary-lambda-assignment
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
  g = jax.random.normal(jax.random.key(2), xla(x, w).shape)
  fns = {
      ("xla", "fwd"): (jax.jit(xla), (x, w)),
      ("xla", "bwd_data"): (jax.jit(lambda a, b, c: jax.vjp(lambda v: xla(v, b), a)[1](c)[0]),
                            (x, w, g)),
      ("xla", "bwd_weights"): (jax.jit(lambda a, b, c: jax.vjp(lambda v: xla(a, v), b)[1](c)[0]),
                               (x, w, g)),
      ("onednn", "fwd"): (jax.jit(functools.partial(conv._forward, geometry)), (x, w)),  # pylint: disable=protected-access
      ("onednn", "bwd_data"): (jax.jit(functools.partial(
          conv._backward_data, geometry, (size, size))), (g, w)),  # pylint: disable=protected-access
      ("onednn", "bwd_weights"): (jax.jit(functools.partial(
          conv._backward_weights, geometry, (k, k, cin, cout))), (x, g)),  # pylint: disable=protected-access
  }
  return {key: functools.partial(lambda f, a: f(*a).block_until_ready(), f, a)
          for key, (f, a) in fns.items()}


def torch_calls(batch, size, cin, cout, k, stride):
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(benchlib.num_cores())
  p = (k - 1) // 2
  cl = torch.channels_last
  x = torch.randn(batch, cin, size, size).contiguous(memory_format=cl)
  w = torch.randn(cout, cin, k, k).contiguous(memory_format=cl)
  y = torch.nn.functional.conv2d(x, w, None, stride, p)
  g = torch.randn_like(y).contiguous(memory_format=cl)
  back = lambda mask: torch.ops.aten.convolution_backward(  # pylint: disable=unnecessary-lambda-assignment
      g, x, w, None, [stride] * 2, [p] * 2, [1, 1], False, [0, 0], 1, mask)
  return {("torch", "fwd"): lambda: torch.nn.functional.conv2d(x, w, None, stride, p),
          ("torch", "bwd_data"): lambda: back([True, False, False]),
          ("torch", "bwd_weights"): lambda: back([False, True, False])}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image_size", type=int, default=96)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()
  from ftlab.training import runtime  # pylint: disable=import-outside-toplevel
  runtime.configure_xla()
  rows, totals = [], {(i, p): 0.0 for i in IMPLS for p in PASSES}
  for name, count, cin, cout, k, stride, rel in LAYERS:
    size = int(round(args.image_size * rel))
    out = -(-size // stride)
    flops = 2.0 * args.batch * out * out * cout * cin * k * k
    calls = {**jax_calls(args.batch, size, cin, cout, k, stride),
             **torch_calls(args.batch, size, cin, cout, k, stride)}
    row = {"layer": name, "shape": f"{size}x{size}x{cin}->{out}x{out}x{cout}", "count": count}
    for pass_name in PASSES:
      for impl in IMPLS:
        seconds = benchlib.time_steps(calls[(impl, pass_name)], args.steps, warmup=2,
                                      rounds=1).median_s
        row[f"{impl}_{pass_name}"] = flops / seconds / 1e9
        totals[(impl, pass_name)] += count * seconds
    rows.append(row)
    benchlib.log(f"  {name} done")
  columns = [("layer", "layer", ""), ("shape", "shape", ""), ("count", "n", "d")]
  columns += [(f"{i}_{p}", f"{p}:{i}", ".0f") for p in PASSES for i in IMPLS]
  print(f"GFLOP/s, ResNet-18 convs at {args.image_size}x{args.image_size}, batch {args.batch}, "
        f"float32, {benchlib.cpu_description()}, {benchlib.num_cores()} cores")
  print(benchlib.format_table(rows, columns))
  print("ms per step over the 20 convs: " + ", ".join(
      f"{p} " + "/".join(f"{i} {totals[(i, p)] * 1e3:.0f}" for i in IMPLS) for p in PASSES))


if __name__ == "__main__":
  main()
