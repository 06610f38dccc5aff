"""Auto-augment ops and policies, color jitter, random erasing, and their determinism in the Loader."""
import numpy as np
import pytest
from PIL import Image, ImageOps

from ftlab.data import augment_ops, autoaugment, datasets, transforms
from ftlab.data.pipeline import Augment, Loader
from ftlab.training import trainer
from tests.helpers import tiny_config


def _reference() -> Image.Image:
  """A 40x32 RGB image with gradients, a square and noise (every op changes it)."""
  y, x = np.mgrid[0:32, 0:40]
  rgb = np.stack([x * 6, y * 7, (x + y) * 3], -1).astype(np.int64)
  rgb[8:20, 10:24] = (230, 40, 90)
  rgb += np.random.default_rng(0).integers(-10, 10, rgb.shape)
  return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _arr(img) -> np.ndarray:
  return np.asarray(img)


@pytest.mark.parametrize("name", sorted(augment_ops.OPS))
def test_every_op_is_deterministic_uint8_and_keeps_the_size(name):
  img = _reference()
  a = augment_ops.apply(name, img, 7.0, np.random.default_rng(5))
  b = augment_ops.apply(name, img, 7.0, np.random.default_rng(5))
  assert a.size == img.size and a.mode == "RGB"
  assert _arr(a).dtype == np.uint8
  np.testing.assert_array_equal(_arr(a), _arr(b))


IDENTITIES = [
    (lambda im: augment_ops.invert(augment_ops.invert(im)), "invert twice"),
    (lambda im: augment_ops.rotate(im, 0), "rotate 0"),
    (lambda im: augment_ops.solarize(im, 256), "solarize 256"),
    (lambda im: augment_ops.posterize(im, 8), "posterize 8 bits"),
    (lambda im: augment_ops.solarize_add(im, 0), "solarize-add 0"),
    (lambda im: augment_ops.shear_x(im, 0.0), "shear 0"),
    (lambda im: augment_ops.shear_y(im, 0.0), "shear 0"),
    (lambda im: augment_ops.translate_x_rel(im, 0.0), "translate 0"),
    (lambda im: augment_ops.translate_y_rel(im, 0.0), "translate 0"),
    (lambda im: augment_ops.color(im, 1.0), "enhance 1"),
    (lambda im: augment_ops.contrast(im, 1.0), "enhance 1"),
    (lambda im: augment_ops.brightness(im, 1.0), "enhance 1"),
    (lambda im: augment_ops.sharpness(im, 1.0), "enhance 1"),
]


@pytest.mark.parametrize("fn,what", IDENTITIES)
def test_identity_arguments(fn, what):
  img = _reference()
  np.testing.assert_array_equal(_arr(fn(img)), _arr(img), err_msg=what)


def test_op_properties():
  img = _reference()
  a = _arr(img).astype(int)
  np.testing.assert_array_equal(_arr(augment_ops.equalize(img)), _arr(ImageOps.equalize(img)))
  np.testing.assert_array_equal(_arr(augment_ops.invert(img)), 255 - a)
  np.testing.assert_array_equal(_arr(augment_ops.solarize(img, 0)), 255 - a)
  np.testing.assert_array_equal(_arr(augment_ops.posterize(img, 2)), a & 0b11000000)
  np.testing.assert_array_equal(_arr(augment_ops.solarize_add(img, 50)),
                                np.where(a < 128, np.minimum(a + 50, 255), a))
  stretched = _arr(augment_ops.auto_contrast(img))
  assert stretched.reshape(-1, 3).min(0).tolist() == [0, 0, 0]
  assert stretched.reshape(-1, 3).max(0).tolist() == [255, 255, 255]
  gray = _arr(augment_ops.color(img, 0.0))
  assert np.abs(gray[..., 0].astype(int) - gray[..., 1]).max() <= 1
  assert (_arr(augment_ops.brightness(img, 0.0)) == 0).all()
  shifted = _arr(augment_ops.translate_x_rel(img, 0.25))  # 10 px left, filled on the right
  np.testing.assert_array_equal(shifted[:, :30], a[:, 10:])
  assert (shifted[:, 30:] == augment_ops.FILL).all()


def test_magnitude_to_argument_maps():
  rng = np.random.default_rng(0)
  assert augment_ops.OPS["Posterize"].level_to_args(10, rng) == (4,)
  assert augment_ops.OPS["PosterizeIncreasing"].level_to_args(10, rng) == (0,)
  assert augment_ops.OPS["PosterizeOriginal"].level_to_args(0, rng) == (4,)
  assert augment_ops.OPS["Solarize"].level_to_args(10, rng) == (256,)
  assert augment_ops.OPS["SolarizeIncreasing"].level_to_args(10, rng) == (0,)
  assert augment_ops.OPS["SolarizeAdd"].level_to_args(10, rng) == (110,)
  assert augment_ops.OPS["Color"].level_to_args(5, rng) == pytest.approx((1.0,))
  signs = {np.sign(augment_ops.OPS["Rotate"].level_to_args(10, rng)[0]) for _ in range(50)}
  assert signs == {-1.0, 1.0}
  assert abs(augment_ops.OPS["Rotate"].level_to_args(10, rng)[0]) == pytest.approx(30.0)
  assert abs(augment_ops.OPS["ShearX"].level_to_args(10, rng)[0]) == pytest.approx(0.3)
  assert abs(augment_ops.OPS["TranslateXRel"].level_to_args(10, rng)[0]) == pytest.approx(0.45)


TIMM_CASES = [("shear_x", (0.2,)), ("shear_y", (-0.15,)), ("translate_x_rel", (0.3,)),
              ("translate_y_rel", (-0.2,)), ("rotate", (17.0,)), ("solarize", (100,)),
              ("solarize_add", (60,)), ("posterize", (3,)), ("color", (0.4,)),
              ("contrast", (1.6,)), ("brightness", (1.3,)), ("sharpness", (1.9,)),
              ("auto_contrast", ()), ("equalize", ()), ("invert", ())]


@pytest.mark.parametrize("name,args", TIMM_CASES)
def test_ops_match_timm(name, args):
  timm_aa = pytest.importorskip("timm.data.auto_augment")
  img = _reference()
  kwargs = dict(fillcolor=augment_ops.FILL, resample=augment_ops.RESAMPLE)
  theirs = getattr(timm_aa, name)(img, *args, **kwargs)
  np.testing.assert_array_equal(_arr(getattr(augment_ops, name)(img, *args)), _arr(theirs))


@pytest.mark.parametrize("name", ["Posterize", "PosterizeIncreasing", "PosterizeOriginal",
                                  "Solarize", "SolarizeIncreasing", "SolarizeAdd", "Color",
                                  "Contrast", "Brightness", "Sharpness"])
def test_unsigned_level_maps_match_timm(name):
  timm_aa = pytest.importorskip("timm.data.auto_augment")
  for level in (0, 3, 7, 10):
    ours = augment_ops.OPS[name].level_to_args(level, np.random.default_rng(0))
    assert ours == pytest.approx(timm_aa.LEVEL_TO_ARG[name](level, {}))


def test_policy_ops_match_timm_lists():
  timm_aa = pytest.importorskip("timm.data.auto_augment")
  assert list(autoaugment.RAND_OPS) == timm_aa._RAND_TRANSFORMS  # pylint: disable=protected-access
  assert list(autoaugment.RAND_INCREASING_OPS) == timm_aa._RAND_INCREASING_TRANSFORMS  # pylint: disable=protected-access
  for name in ("original", "v0"):
    theirs = [[(op.name, op.prob, op.magnitude) for op in sub]
              for sub in timm_aa.auto_augment_policy(name)]
    assert [list(sub) for sub in autoaugment.AUTO_POLICIES[name]] == theirs


def _chi_square(counts: np.ndarray) -> float:
  expected = counts.sum() / len(counts)
  return float(((counts - expected) ** 2 / expected).sum())


def test_rand_augment_picks_each_op_uniformly():
  policy = autoaugment.parse("rand-m7-mstd0.5")
  assert policy.ops == autoaugment.RAND_OPS and policy.num_ops == 2 and policy.prob == 0.5
  rng = np.random.default_rng(0)
  names = [n for _ in range(2000) for n in policy.choose(rng)]
  counts = np.array([names.count(op) for op in autoaugment.RAND_OPS])
  assert _chi_square(counts) < 36.1  # chi-square, 14 degrees of freedom, p = 0.001


def test_auto_augment_picks_each_sub_policy_uniformly():
  policy = autoaugment.parse("v0")
  rng = np.random.default_rng(0)
  picks = [policy.policy.index(policy.choose(rng)) for _ in range(2500)]
  counts = np.bincount(picks, minlength=25)
  assert _chi_square(counts) < 51.2  # 24 degrees of freedom, p = 0.001


def test_policy_strings():
  ra = autoaugment.parse("randaug-m7-mstd0.5")
  assert ra == autoaugment.parse("rand-m7-mstd0.5")
  assert (ra.magnitude, ra.noise.std, ra.noise.max) == (7.0, 0.5, 10.0)
  inc = autoaugment.parse("rand-m9-n3-inc1-mmax12-p0.8")
  assert (inc.ops, inc.num_ops, inc.noise.max, inc.prob) == (
      autoaugment.RAND_INCREASING_OPS, 3, 12.0, 0.8)
  trivial = autoaugment.parse("trivialaugment")
  assert (trivial.num_ops, trivial.prob, trivial.noise.std) == (1, 1.0, float("inf"))
  assert autoaugment.parse("original-mstd0.5").noise.std == 0.5
  assert autoaugment.parse("") is None


def test_magnitude_noise_is_clipped():
  noise = autoaugment.Noise(std=5.0, max=10.0)
  rng = np.random.default_rng(0)
  draws = [noise.draw(9.0, rng) for _ in range(500)]
  assert min(draws) >= 0.0 and max(draws) == 10.0


@pytest.mark.parametrize("spec,what", [
    ("rand-m99x", "'99x' in 'm99x' is not a number"), ("rand-q7", "unknown section 'q7'"),
    ("foo", "unknown policy 'foo'"), ("rand-m11", "magnitude 11 is outside"),
    ("rand-n1.5", "number of ops"), ("v0-n2", "unknown section 'n2'"),
    ("trivialaugment-m5", "takes no sections")])
def test_bad_policy_strings_are_one_line_errors(spec, what):
  with pytest.raises(ValueError) as info:
    Augment(16, train=True, auto_augment=spec)
  message = str(info.value)
  assert "\n" not in message and f"config.data.auto_augment={spec!r}" in message
  assert what in message


@pytest.mark.parametrize("spec", ["rand-m7-mstd0.5", "original", "v0", "trivialaugment",
                                  "rand-m9-n3-inc1"])
def test_policies_are_deterministic_given_the_rng(spec):
  policy, img = autoaugment.parse(spec), _reference()
  outs = [_arr(policy(img, np.random.default_rng([0, 1, i]))) for i in range(8)]
  again = [_arr(policy(img, np.random.default_rng([0, 1, i]))) for i in range(8)]
  for a, b in zip(outs, again):
    np.testing.assert_array_equal(a, b)
  assert len({o.tobytes() for o in outs}) > 1


def test_color_jitter_and_random_erasing_are_deterministic_and_in_range():
  img = _reference()
  jit = [_arr(transforms.color_jitter(img, 0.4, np.random.default_rng(i))) for i in range(4)]
  np.testing.assert_array_equal(jit[0], _arr(transforms.color_jitter(img, 0.4,
                                                                     np.random.default_rng(0))))
  assert all(j.dtype == np.uint8 and j.shape == (32, 40, 3) for j in jit)
  assert not np.array_equal(jit[0], jit[1])
  base = _arr(img)
  erased = transforms.random_erase(base, 1.0, augment_ops.FILL, np.random.default_rng(0))
  assert erased.dtype == np.uint8 and erased.shape == base.shape
  changed = (erased != base).any(-1)
  assert 0 < changed.mean() <= 1 / 3 and (erased[changed] == augment_ops.FILL).all()
  np.testing.assert_array_equal(
      erased, transforms.random_erase(base, 1.0, augment_ops.FILL, np.random.default_rng(0)))
  np.testing.assert_array_equal(
      transforms.random_erase(base, 0.0, augment_ops.FILL, np.random.default_rng(0)), base)


def test_bad_jitter_and_erasing_values():
  with pytest.raises(ValueError, match=r"config.data.color_jitter=-0.1"):
    Augment(16, train=True, color_jitter=-0.1)
  with pytest.raises(ValueError, match=r"config.data.random_erasing=1.5"):
    Augment(16, train=True, random_erasing=1.5)


@pytest.mark.parametrize("key, value", [("auto_augment", "rand-m7-mstd0.5"),
                                        ("color_jitter", 0.4), ("random_erasing", 0.25)])
def test_augment_false_refuses_the_augmentation_it_would_drop(image_folder, tmp_path, key, value):
  with pytest.raises(ValueError, match=rf"config.data.augment=False .* would drop "
                                       rf"config.data.{key}={value!r}"):
    Augment(16, train=False, **{key: value})
  workdir = tmp_path / "run"
  config = tiny_config(image_folder, **{"data.augment": False, f"data.{key}": value})
  with pytest.raises(ValueError, match=rf"would drop config.data.{key}={value!r}"):
    trainer.train_and_evaluate(config, str(workdir))
  assert not (workdir / "config.json").exists()


def test_augmented_batches_are_a_pure_function_of_seed_epoch_and_index(image_folder):
  data = datasets.load(tiny_config(image_folder).data)
  aug = Augment(16, train=True, auto_augment="rand-m7-mstd0.5", random_erasing=0.5)
  loader = Loader(data.train, 8, aug, train=True, seed=3, num_workers=2)
  full = list(loader.epoch(1))
  tail = list(loader.epoch(1, start=2))
  for a, b in zip(full[2:], tail):
    np.testing.assert_array_equal(a["image"], b["image"])
  plain = Loader(data.train, 8, Augment(16, train=True), train=True, seed=3, num_workers=2)
  assert not np.array_equal(full[0]["image"], next(plain.epoch(1))["image"])
  jitter = Loader(data.train, 8, Augment(16, train=True, color_jitter=0.4), train=True, seed=3)
  np.testing.assert_array_equal(next(jitter.epoch(1))["image"], next(jitter.epoch(1))["image"])


def test_config_keys_reach_the_train_loader_only(image_folder):
  from ftlab.training import run  # pylint: disable=import-outside-toplevel
  config = tiny_config(image_folder)
  config.data.auto_augment, config.data.random_erasing = "rand-m7-mstd0.5", 0.25
  data = datasets.load(config.data)
  loaders = run.make_loaders(config, data, 16)
  train = loaders["train"].augment
  assert (train.policy.magnitude, train.random_erasing) == (7.0, 0.25)
  assert all(l.augment.policy is None for k, l in loaders.items() if k != "train")
  config.data.auto_augment = "rand-q7"
  with pytest.raises(ValueError, match=r"config.data.auto_augment='rand-q7'"):
    run.make_loaders(config, data, 16)
