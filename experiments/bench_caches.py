"""What the computation-sharing caches save per epoch, through the real input pipeline.

  python experiments/bench_caches.py [--model=resnet18] [--image_size=96] [--per_class=96]
      [--epochs=3]

On a generated image folder (3 classes x `--per_class` PNGs of 128x128, so
decoding and resizing are counted, as a user's run pays them), with
`data.augment=False, data.flip_only=True` (the horizontal flip is the only
augmentation):

* linear_probe: epochs of the image step fed by the training `Loader` against
  epochs of the head-only step fed by the flip-aware `FeatureLoader`
  (`feature_cache.cache_splits`: one trunk pass per orientation, timed apart).
* freeze_shallow (`--freeze_blocks`, default 2: ResNet-18's stem and layer1):
  epochs of the image step against epochs of the step that starts at the
  freeze boundary (`make_train_step(..., from_block=n)`) fed by
  `boundary_cache.build`'s activations (both orientations, timed apart).

Compilation is excluded from every epoch time (each step is compiled before
its first timed epoch). Ratios are of epochs measured back to back in one
process, so a shared machine slows both sides alike; the medians over
`--epochs` epochs are printed with the load average.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ftlab.training import runtime  # pylint: disable=wrong-import-position

runtime.configure_xla()

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position

from configs import default  # pylint: disable=wrong-import-position
from ftlab.training import feature_cache  # pylint: disable=wrong-import-position
from ftlab.training import boundary_cache  # pylint: disable=wrong-import-position
from ftlab.training import run as run_lib  # pylint: disable=wrong-import-position
from ftlab.training.steps import make_train_step, make_trunk_step  # pylint: disable=wrong-import-position

CLASSES = ("a", "b", "c")
SOURCE_SIZE = 128


def make_folder(root: str, per_class: int) -> str:
  rng = np.random.default_rng(0)
  for split, n in (("train", per_class), ("val", 2), ("test", 2)):
    for c, name in enumerate(CLASSES):
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(n):
        pixels = rng.integers(0, 256, (SOURCE_SIZE, SOURCE_SIZE, 3), dtype=np.uint8)
        pixels[..., c] = 255
        Image.fromarray(pixels).save(os.path.join(root, split, name, f"{i}.png"))
  return root


def make_config(root: str, args, strategy: str):
  config = default.get_config()
  config.model.name = args.model
  config.strategy.name = strategy
  config.data.root = root
  config.data.image_size = args.image_size
  config.data.augment = False
  config.data.flip_only = True
  config.data.num_workers = 2
  config.train.batch_size = 32
  config.train.eval_batch_size = 32
  config.train.compilation_cache_dir = ""
  return config


def time_epochs(step, state, batches_of, epochs: int) -> tuple:
  """(median epoch seconds, state): epoch 0 is a warm-up (compiles), epochs 1.. are timed."""
  rng = jax.random.key(1)
  times = []
  for epoch in range(epochs + 1):
    t0 = time.perf_counter()
    for batch in batches_of(epoch):
      state, out = step(state, jax.device_put(batch), rng)
    jax.block_until_ready((state, out))
    if epoch:
      times.append(time.perf_counter() - t0)
  return statistics.median(times), state


def cached_probe(root: str, args) -> dict:
  run = run_lib.prepare(make_config(root, args, "linear_probe"), tempfile.mkdtemp(),
                        for_training=False)
  state = run.template(0)
  images = jax.jit(make_train_step(run.setup), donate_argnums=(0,))
  image_s, _ = time_epochs(images, jax.tree.map(jax.numpy.copy, state),
                           run.loaders["train"].epoch, args.epochs)
  trunk = jax.jit(make_trunk_step(run.setup))
  t0 = time.perf_counter()
  cached = feature_cache.cache_splits(trunk, state, run.loaders, run.devices, 32)
  extraction_s = time.perf_counter() - t0
  head = jax.jit(make_train_step(run.setup, 0, on_features=True), donate_argnums=(0,))
  cached_s, _ = time_epochs(head, state, cached["train"].epoch, args.epochs)
  return {"what": "linear_probe, flip-only", "images_epoch_s": image_s, "cached_epoch_s": cached_s,
          "speedup": image_s / cached_s, "cache_build_s": extraction_s,
          "train_images": len(run.data.train)}


def boundary_top(root: str, args) -> dict:
  config = make_config(root, args, "freeze_shallow")
  config.strategy.freeze_blocks = args.freeze_blocks
  run = run_lib.prepare(config, tempfile.mkdtemp(), for_training=False)
  state = run.template(0)
  images = jax.jit(make_train_step(run.setup), donate_argnums=(0,))
  image_s, _ = time_epochs(images, jax.tree.map(jax.numpy.copy, state),
                           run.loaders["train"].epoch, args.epochs)
  n = boundary_cache.boundary_block(run.setup, config, len(run.data.train), run.setup.image_size)
  assert n == args.freeze_blocks, n
  cached, build_s = boundary_cache.build(run.setup, state, run.loaders["train"], run.devices, n, 32)
  top = jax.jit(make_train_step(run.setup, 0, from_block=n), donate_argnums=(0,))
  cached_s, _ = time_epochs(top, state, cached.epoch, args.epochs)
  return {"what": f"freeze_shallow ({n} blocks), flip-only", "images_epoch_s": image_s,
          "cached_epoch_s": cached_s, "speedup": image_s / cached_s, "cache_build_s": build_s,
          "train_images": len(run.data.train)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="resnet18")
  parser.add_argument("--image_size", type=int, default=96)
  parser.add_argument("--per_class", type=int, default=96)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--freeze_blocks", type=int, default=2)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = make_folder(os.path.join(tmp, "data"), args.per_class)
    rows = [cached_probe(root, args), boundary_top(root, args)]
  print(f"{args.model} at {args.image_size}px, batch 32, {rows[0]['train_images']} train images, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
  for r in rows:
    print(f"{r['what']:<36} images {r['images_epoch_s']:.3f} s/epoch  cached "
          f"{r['cached_epoch_s']:.4f} s/epoch  = {r['speedup']:.1f}x  (cache built once in "
          f"{r['cache_build_s']:.2f} s)")


if __name__ == "__main__":
  main()
