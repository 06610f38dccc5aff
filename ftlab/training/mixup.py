"""Mixup and CutMix inside the compiled train step (timm's `Mixup`, batch mode).

timm's semantics (timm/data/mixup.py), drawn from the step's own rng:
- with probability `prob` a batch is mixed, else it trains on its own labels;
- with both alphas > 0, CutMix is chosen with probability `switch_prob`,
  mixup otherwise; with one alpha > 0, that one; lam ~ Beta(alpha, alpha);
- every image is mixed with its mirror in the batch (`x[::-1]`);
- mixup: `lam * x + (1 - lam) * x[::-1]`; CutMix: a box of side
  `int(size * sqrt(1 - lam))` centred uniformly (clipped at the border) is
  pasted from `x[::-1]`, and lam becomes the share of the image left
  (timm's `correct_lam=True`);
- targets: `mixup_target`, i.e. label smoothing first (`smoothing /
  num_classes` off, `1 - smoothing + smoothing / num_classes` on), then
  `lam * y + (1 - lam) * y[::-1]`; they sum to one.
Mixing acts on the normalised float images (timm's non-prefetch path;
its uint8 collate mixes before normalising, equal up to rounding since the
normalisation is affine). The dominant label of an example, the one train
top-1 is measured against, is its own when lam >= 0.5, else its partner's.
"""
import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Mixup:
  mixup_alpha: float
  cutmix_alpha: float
  prob: float
  switch_prob: float

  @property
  def enabled(self) -> bool:
    return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def from_config(train_cfg) -> Mixup:
  """`config.train`'s mixup keys, checked (one-line errors naming the key)."""
  for key in ("mixup_alpha", "cutmix_alpha"):
    if train_cfg[key] < 0:
      raise ValueError(f"config.train.{key}={train_cfg[key]} must be >= 0 (0 = off)")
  for key in ("mixup_prob", "mixup_switch_prob"):
    if not 0 <= train_cfg[key] <= 1:
      raise ValueError(f"config.train.{key}={train_cfg[key]} must be in [0, 1]")
  return Mixup(float(train_cfg.mixup_alpha), float(train_cfg.cutmix_alpha),
               float(train_cfg.mixup_prob), float(train_cfg.mixup_switch_prob))


def _draw(mix: Mixup, rng) -> tuple:
  """(lam, use_cutmix) of one batch, as timm's `_params_per_batch`."""
  r_apply, r_switch, r_mixup, r_cutmix = jax.random.split(rng, 4)
  apply = jax.random.uniform(r_apply) < mix.prob
  if mix.mixup_alpha > 0 and mix.cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(r_switch) < mix.switch_prob
  else:
    use_cutmix = jnp.asarray(mix.cutmix_alpha > 0)
  # An alpha of 0 is never drawn from (`use_cutmix` rules it out): Beta(1, 1) keeps it finite.
  lam_mixup = jax.random.beta(r_mixup, mix.mixup_alpha or 1.0, mix.mixup_alpha or 1.0)
  lam_cutmix = jax.random.beta(r_cutmix, mix.cutmix_alpha or 1.0, mix.cutmix_alpha or 1.0)
  lam = jnp.where(apply, jnp.where(use_cutmix, lam_cutmix, lam_mixup), 1.0)
  return lam, apply & use_cutmix


def cutmix_mask(rng, height: int, width: int, lam):
  """(mask: True inside the pasted box, corrected lam), timm's `rand_bbox` + `correct_lam`."""
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  r_y, r_x = jax.random.split(rng)
  cy = jax.random.randint(r_y, (), 0, height)
  cx = jax.random.randint(r_x, (), 0, width)
  yl, yh = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  xl, xh = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  rows, cols = jnp.arange(height), jnp.arange(width)
  mask = (((rows >= yl) & (rows < yh))[:, None]) & (((cols >= xl) & (cols < xh))[None, :])
  area = (yh - yl) * (xh - xl)
  return mask, 1.0 - area.astype(jnp.float32) / float(height * width)


def mix_targets(labels, num_classes: int, lam, smoothing):
  """timm's `mixup_target`: smoothed one-hot of the labels and of their mirror, mixed by lam.

  `smoothing` may be a traced value (the train state's, so one program serves every value);
  smoothing by 0 leaves the one-hot exactly as it is.
  """
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
  return lam * targets + (1.0 - lam) * targets[::-1]


def apply(mix: Mixup, rng, images, labels, num_classes: int, smoothing) -> tuple:
  """(mixed NHWC float images, soft targets, dominant labels, lam) of one batch."""
  r_draw, r_box = jax.random.split(rng)
  lam, use_cutmix = _draw(mix, r_draw)
  flipped = images[::-1]
  mask, box_lam = cutmix_mask(r_box, images.shape[1], images.shape[2], lam)
  pasted = jnp.where(mask[None, :, :, None], flipped, images)
  blended = lam * images + (1.0 - lam) * flipped
  mixed = jnp.where(use_cutmix, pasted, blended).astype(images.dtype)
  lam = jnp.where(use_cutmix, box_lam, lam)
  dominant = jnp.where(lam >= 0.5, labels, labels[::-1])
  return mixed, mix_targets(labels, num_classes, lam, smoothing), dominant, lam
