"""Classifies images with pretrained ImageNet weights or a fine-tuned run.

  python -m ftlab.predict --pretrained=efficientnet_lite0 cat.jpg photos/
  python -m ftlab.predict --workdir=runs/aircraft --out=predictions.csv photos/

Prints each image's top-k classes (default 5) with names and probabilities;
folders expand to the images inside them (recursively, sorted). `--out`
writes `image,rank,class,probability` rows.

`--pretrained` takes a registered weights name (the model of the same name is
built), a directory written by `ftlab.convert` (its meta.json names the
model), or a weights file together with `--arch`. `--workdir` uses the best
checkpoint of a training run through `ftlab.training.checkpoint.load_best`.
"""
import csv
import dataclasses
import importlib.resources
import pathlib
import sys
from typing import Any, Callable, List, Sequence

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from ftlab import models
from ftlab.data import transforms
from ftlab.pretrained import load, registry
from ftlab.training import runtime, steps


IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
RESIZE_RATIO = 256 / 224  # the usual ImageNet evaluation: resize 256, center crop 224


def imagenet_classes() -> List[str]:
  """The 1000 ImageNet-1k class names in index order."""
  text = importlib.resources.files("ftlab.pretrained").joinpath("imagenet_classes.txt")
  return text.read_text(encoding="utf-8").splitlines()


def expand_images(paths: Sequence) -> List[pathlib.Path]:
  """Files as given; folders become the image files inside them (recursive, sorted)."""
  files = []
  for entry in map(pathlib.Path, paths):
    if entry.is_dir():
      files += sorted(p for p in entry.rglob("*")
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif entry.is_file():
      files.append(entry)
    else:
      raise FileNotFoundError(f"image {entry} does not exist")
  return files


@dataclasses.dataclass
class Predictor:
  """A model with its variables, class names and evaluation preprocessing.

  `image_size` defaults to `spec.input_size`; a fine-tuned run may have
  trained at another size and resize ratio. Images go through the run's own
  evaluation path: `data.transforms.eval_image`, then the eval step's
  `training.steps.normalize`.
  """
  model: Any
  variables: Any
  spec: models.ModelSpec
  class_names: List[str]
  image_size: int = 0
  resize_ratio: float = RESIZE_RATIO

  def __post_init__(self):
    self.image_size = self.image_size or self.spec.input_size
    self._logits: Callable = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    """Softmax probabilities for a batch of `preprocess`ed (normalised float) NHWC images."""
    return np.asarray(jax.nn.softmax(self._logits(self.variables, jnp.asarray(images)), axis=-1))

  def preprocess(self, path) -> np.ndarray:
    """The run's evaluation input: `data.transforms.eval_image` (uint8), normalised by the eval
    step's own `training.steps.normalize`; float32 HWC."""
    image = transforms.eval_image(str(path), self.image_size, self.resize_ratio)
    return np.asarray(steps.normalize(jnp.asarray(image), self.spec))


def _arch_for(source: str, path: pathlib.Path, arch) -> str:
  """The model to build: --arch, the converted dir's meta, or the registered name."""
  if path.is_dir():
    meta_arch = load.read_converted(path)[1].get("arch")
    if arch and meta_arch and arch != meta_arch:
      raise ValueError(f"--arch={arch} but {path}/meta.json says arch={meta_arch}")
    arch = arch or meta_arch
  arch = arch or (source if source in models.MODELS else None)
  if not arch:
    raise ValueError(f"--pretrained={source}: cannot tell the model; pass --arch")
  return arch


def from_pretrained(source: str, arch: str = None) -> Predictor:
  """A Predictor for ImageNet weights (or a converted directory's classes)."""
  path = registry.resolve(source)
  arch = _arch_for(source, path, arch)
  spec = models.get_spec(arch)
  num_classes = 1000
  if path.is_dir():
    num_classes = int(load.read_converted(path)[1].get("num_classes", num_classes))
  model = spec.build(num_classes, jnp.float32)
  template = load.template_variables(model, spec.input_size)
  variables, report = load.load_pretrained(template, path, spec, strict=True)
  if report.reinitialized:
    name = report.reinitialized[0]
    raise ValueError(f"--pretrained={source}: {name} has shape {report.shapes[name][0]}, not "
                     f"{report.shapes[name][1]} for {num_classes} classes; predict needs "
                     "ImageNet weights or a directory converted for the classes")
  names = imagenet_classes() if num_classes == 1000 else [f"class_{i}" for i in range(num_classes)]
  return Predictor(model, variables, spec, names)


def from_workdir(workdir: str) -> Predictor:
  """A Predictor for a fine-tuned run's best checkpoint."""
  from ftlab.training import \
    checkpoint  # pylint: disable=import-outside-toplevel  # pulls in training code
  run = checkpoint.load_best(workdir)
  return Predictor(run.model, run.variables, run.spec, list(run.class_names),
                   image_size=run.config.data.image_size,
                   resize_ratio=run.config.data.eval_resize_ratio)


def predict(predictor: Predictor, files: Sequence, top_k: int = 5, batch_size: int = 16):
  """Yields (file, [(rank, class index, class name, probability), ...]) per image."""
  for start in range(0, len(files), batch_size):
    batch = files[start:start + batch_size]
    probs = predictor.probabilities(np.stack([predictor.preprocess(f) for f in batch]))
    for file, p in zip(batch, probs):
      order = np.argsort(-p, kind="stable")[:top_k]
      yield file, [(rank + 1, int(i), predictor.class_names[i], float(p[i]))
                   for rank, i in enumerate(order)]


def write_csv(results, out) -> None:
  """Writes image,rank,class,probability rows."""
  with open(out, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["image", "rank", "class", "probability"])
    for file, top in results:
      for rank, _, name, prob in top:
        writer.writerow([str(file), rank, name, f"{prob:.6f}"])


FLAGS = flags.FLAGS


def define_flags():
  """Defines the CLI flags (only when run as a program)."""
  flags.DEFINE_string("pretrained", None, "Registered weights name, converted dir or weights file.")
  flags.DEFINE_string("arch", None, "Model for a --pretrained weights file.")
  flags.DEFINE_string("workdir", None, "Training run whose best checkpoint to use.")
  flags.DEFINE_string("out", None, "Optional CSV file of image,rank,class,probability rows.")
  flags.DEFINE_integer("top_k", 5, "Classes to show per image.")
  flags.DEFINE_integer("batch_size", 16, "Images per forward pass.")


def run(images: Sequence, *, pretrained: str = None, arch: str = None, workdir: str = None,
        out: str = None, top_k: int = 5, batch_size: int = 16, stream=None):
  """What the CLI does: predicts `images` (files or folders), prints, optionally writes CSV.

  Exactly one of `pretrained` and `workdir` must be given. Returns the
  results of `predict` as a list.
  """
  if bool(pretrained) == bool(workdir):
    raise ValueError("pass exactly one of --pretrained and --workdir")
  files = expand_images(images)
  predictor = from_workdir(workdir) if workdir else from_pretrained(pretrained, arch)
  results = list(predict(predictor, files, top_k, batch_size))
  stream = stream or sys.stdout
  for file, top in results:
    print(file, file=stream)
    for rank, index, name, prob in top:
      print(f"  {rank}. {name} ({index})  {prob:.4f}", file=stream)
  if out:
    write_csv(results, out)
  return results


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("give at least one image or folder")
  runtime.configure_xla()
  try:
    run(argv[1:], pretrained=FLAGS.pretrained, arch=FLAGS.arch, workdir=FLAGS.workdir,
        out=FLAGS.out, top_k=FLAGS.top_k, batch_size=FLAGS.batch_size)
  except (OSError, ValueError) as e:  # missing images or weights, unknown names, bad files
    raise SystemExit(f"predict: {e}") from e
  if FLAGS.out:
    print(f"wrote {FLAGS.out}", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main)
