"""Times converting PyTorch weights to Flax and loading the converted checkpoint.

  python experiments/bench_convert.py [--arch=efficientnet_lite0] [--src=...] [--repeats=3]

Targets on the 2-core machine: convert < 10 s, load of the converted
directory < 2 s. Each phase reports the best of `--repeats` runs (after one
untimed warm-up for the jitted/traced parts); import time is printed apart.
"""
import time

T0 = time.perf_counter()
import tempfile  # noqa: E402

import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from ftlab import convert, models  # noqa: E402
from ftlab.pretrained import load, pth, registry  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T0

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", "efficientnet_lite0", "Model to convert.")
flags.DEFINE_string("src", None, "Weights file or registered name (default: --arch).")
flags.DEFINE_integer("repeats", 3, "Timed runs per phase (the best is reported).")

TARGETS = {"convert_file": 10.0, "load converted dir": 2.0}


def best_of(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv):
  del argv
  spec = models.get_spec(FLAGS.arch)
  src = registry.resolve(FLAGS.src or FLAGS.arch)
  out = tempfile.mkdtemp(prefix="bench_convert_")
  model = spec.build(1000, jnp.float32)
  first = time.perf_counter()
  convert.convert_file(FLAGS.arch, src, out)  # warm-up: tracing and the head's init compile
  first = time.perf_counter() - first
  rows = {
      "convert_file (first call, cold)": first,
      "  read .pth (torch-free)": best_of(lambda: pth.load_state_dict(src), FLAGS.repeats),
      "convert_file": best_of(lambda: convert.convert_file(FLAGS.arch, src, out), FLAGS.repeats),
      "  template_variables": best_of(lambda: load.template_variables(model, spec.input_size),
                                      FLAGS.repeats),
  }
  template = load.template_variables(model, spec.input_size)
  rows["load converted dir"] = best_of(
      lambda: load.load_pretrained(load.template_variables(model, spec.input_size), out, spec,
                                   strict=True), FLAGS.repeats)
  rows["  of which merge into a given template"] = best_of(
      lambda: load.load_pretrained(template, out, spec, strict=True), FLAGS.repeats)
  print(f"{FLAGS.arch} from {src.name}; imports {IMPORT_SECONDS:.2f} s")
  for name, seconds in rows.items():
    target = TARGETS.get(name)
    verdict = f"  (target < {target:.0f} s: {'ok' if seconds < target else 'MISSED'})" if target else ""
    print(f"{name:40s} {seconds:6.2f} s{verdict}")


if __name__ == "__main__":
  app.run(main)
