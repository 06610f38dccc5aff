"""Converts PyTorch weights into a Flax checkpoint directory, once, ahead of training.

  python -m ftlab.convert --arch=efficientnet_lite0 --src=weights.pth --out=DIR \
      [--num_classes=N]

`--src` is a `.pth`/`.pt`/`.safetensors` file or a registered weights name
(default: the weights registered under `--arch`). `DIR` receives:

* `variables.msgpack`: `{'params', 'batch_stats'}` as written by
  `flax.serialization.msgpack_serialize`;
* `meta.json`: arch, source file name and sha256, num_classes, input_size,
  mean, std, the re-initialised head entries and the ftlab version.

Why msgpack rather than an orbax checkpoint: the result is one small
(ImageNet CNNs: 10-100 MB) self-describing file that reads back synchronously
without a template in well under a second, is trivially copied or hashed, and
needs no background threads or directory protocol; orbax's strengths
(sharded/async saves of training state) do not apply to a one-off weights
file. Training runs keep using orbax for their own checkpoints.

With `--num_classes` other than the checkpoint's, the head is re-initialised
(seed `--seed`) and listed in meta.json.
"""
import json
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import serialization

import ftlab
from ftlab import models
from ftlab.pretrained import download, load, registry

FORMAT = "flax-msgpack"


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is a shareable file
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def convert_file(arch: str, src, out, num_classes: int = 1000, *, seed: int = 0,
                 strict: bool = True) -> load.LoadReport:
  """Converts `src` for model `arch` and writes `out/variables.msgpack` + `out/meta.json`.

  Args:
    arch: a name in `ftlab.models.MODELS`.
    src: a weights file or a registered weights name (see `registry.resolve`).
    out: output directory (created; existing files are replaced).
    num_classes: classes of the converted model's head.
    seed: seed of the head's initialisation when it is re-initialised.
    strict: fail when the checkpoint lacks model entries or has extra ones.

  Returns:
    The LoadReport of the conversion.
  """
  spec = models.get_spec(arch)
  path = registry.resolve(src)
  if path.is_dir():
    raise ValueError(f"--src={src}: {path} is a directory; convert reads weights files")
  model = spec.build(num_classes, jnp.float32)
  template = load.template_variables(model, spec.input_size, jax.random.key(seed))
  variables, report = load.load_pretrained(template, path, spec, strict=strict)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  _write_atomic(out / load.VARIABLES_FILE,
                serialization.msgpack_serialize(jax.device_get(variables)))
  meta = {
      "format": FORMAT, "arch": arch, "source": path.name,
      "source_sha256": download.sha256_of(path), "num_classes": num_classes,
      "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
      "reinitialized": report.reinitialized, "seed": seed, "ftlab_version": ftlab.__version__,
  }
  _write_atomic(out / load.META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
  return report


FLAGS = flags.FLAGS


def define_flags():
  """Defines the CLI flags (only when run as a program, so importing is side-effect free)."""
  flags.DEFINE_string("arch", None, "Model name in ftlab.models.MODELS.")
  flags.DEFINE_string("src", None, "Weights file or registered name (default: --arch's weights).")
  flags.DEFINE_string("out", None, "Output directory.")
  flags.DEFINE_integer("num_classes", 1000, "Classes of the converted head.")
  flags.DEFINE_integer("seed", 0, "Seed of a re-initialised head.")
  flags.DEFINE_bool("strict", True, "Fail on missing or unexpected checkpoint entries.")
  flags.mark_flags_as_required(["arch", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    report = convert_file(FLAGS.arch, FLAGS.src or FLAGS.arch, FLAGS.out, FLAGS.num_classes,
                          seed=FLAGS.seed, strict=FLAGS.strict)
  except (OSError, ValueError) as e:  # unknown names, unreadable files, shape mismatches
    raise SystemExit(f"convert: {e}") from e
  print(report.summary())
  print(f"wrote {os.path.join(FLAGS.out, load.VARIABLES_FILE)} and {load.META_FILE}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
