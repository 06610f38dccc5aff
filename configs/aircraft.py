"""FGVC-Aircraft (100 variants), the MindCV fine-tuning guide's recipe.

  python -m ftlab.main --config=configs/aircraft.py --workdir=runs/air \
      --config.data.root=/data/fgvc-aircraft-2013b
  python -m ftlab.main --config=configs/aircraft.py:model=resnet18,strategy=full_ft --workdir=...
  python -m ftlab.sweep --config=configs/aircraft.py --workdir=runs/air_sweep \
      --config.data.root=...   # or set root in this file; see get_sweep
  python -m ftlab.report --workdir=runs/air_sweep
  python -m ftlab.study --config=configs/aircraft.py --workdir=runs/air_study \
      --config.data.root=...   # every strategy tuned on minival; see get_study

Recipe: the MindCV guide's, i.e. MindCV's `mobilenet_v3_small_ascend.yaml`
with the guide's overrides (batch 8, image 600, `randaug-m7-mstd0.5`,
pretrained, 50 epochs, lr 0.002), key by key: MobileNetV3-small pretrained
on ImageNet; train: random-resized-crop scale (0.08, 1) + flip 0.5,
bilinear, then RandAugment as the guide spells it (`data.auto_augment =
"randaug-m7-mstd0.5"`: 2 ops, magnitude 7, noise std 0.5;
ftlab/data/autoaugment.py), no random erasing (MindCV's `re_prob` default
0); the yaml's `color_jitter: 0.4` is set but unused, as in MindCV and
timm, because an auto-augment policy replaces it; eval: resize to
floor(600 / crop_pct 0.875) = 685, center crop 600; cross-entropy with label
smoothing 0.1; SGD momentum 0.9 (no Nesterov), weight decay 2e-5, lr 0.002,
cosine to 0 after a 4-epoch linear warm-up (`warmup_epochs: 4`), 50 epochs.
No mixup/CutMix and no EMA: the yaml sets neither and MindCV's defaults
are off (`train.mixup_alpha`, `train.ema_decay` stay 0).
The guide's table (top-1 %): freeze all features 48.66 | freeze shallow
(features.0-6) 76.83 | full FT 88.35 | classifier LR x1.2 88.89 |
features.13/14/15 LR x1.05/1.1/1.15 88.68.

What remains different from MindCV:
- `weight_decay_filter: 'auto'`: MindCV exempts biases and normalisation
  parameters from weight decay; ftlab decays every trainable parameter.
- the yaml keeps the ImageNet recipe's `decay_epochs: 466`, longer than the
  run; ftlab's cosine reaches 0 at the end of the 50 epochs (optim.py).
- `amp_level: 'O3'`, `loss_scale: 1024` (float16 on Ascend): ftlab computes
  in float32 (`model.dtype = "bfloat16"` is the nearest).
- random-resized-crop's aspect range is [3/4, 4/3] here, (0.75, 1.333) there;
  the RandAugment ops are timm's (MindCV's own port of them).
Data is read from the annotation files directly (the "online" way);
`--config.data.download=True` fetches the official archive (2.6 GB,
md5-checked) into `data.root`.

ConvNeXt-tiny is in the sweep too: MindCV's appendix reports 93.69% for a
fine-tuned ConvNeXt-tiny on this dataset (its own recipe, not the guide's
MobileNetV3 one above); here it runs under the same recipe as the others,
with torchvision's drop-path 0.1 (`model.drop_path_rate`). freeze_shallow
freezes each model's default depth (`ftlab.models.MODELS[name].freeze_blocks`):
MobileNetV3-small's features.0-6 (the guide's cut), ConvNeXt-tiny's
features.0-3 (stem and the first two stages), the ResNets' stem, layer1 and
layer2.

Result here: not run (no dataset on the development machine, CPU only).
"""
from configs import default
from ftlab.configuration import args as config_args
from ftlab.studies import space
from ftlab.sweeps import grid


# Column order of the strategy table (the guide's order, then scratch).
STRATEGY_ORDER = ["linear_probe", "freeze_shallow", "full_ft", "full_ft_head_lr",
                  "full_ft_deep_lr", "scratch"]


def get_config(arg=None):
  args = config_args.parse(arg, model="mobilenet_v3_small", strategy="full_ft", root="")
  config = default.get_config()
  config.model.name = args["model"]
  config.model.pretrained = args["model"]  # the registered ImageNet weights of that name
  config.strategy.name = args["strategy"]
  config.strategy.head_lr_mult = 1.2
  config.data.kind = "aircraft"
  config.data.root = args["root"]
  config.data.train_split = "trainval"
  config.data.val_split = ""
  config.data.test_split = "test"
  config.data.image_size = 600
  config.data.eval_resize_ratio = 685 / 600  # MindCV: floor(600 / crop_pct 0.875)
  config.data.rrc_min_scale = 0.08
  config.data.auto_augment = "randaug-m7-mstd0.5"  # the guide's RandAugment
  config.data.color_jitter = 0.4           # the yaml's; unused under auto_augment (as in MindCV)
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.002
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 2e-5
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 4.0     # the yaml's warmup_epochs
  config.train.label_smoothing = 0.1
  config.train.batch_size = 8
  config.train.eval_batch_size = 16
  config.train.num_epochs = 50.0
  config.train.checkpoint_every_steps = 500
  return config


# The guide's model and its appendix's; freeze_shallow freezes each one's default depth.
SWEEP_MODELS = ["mobilenet_v3_small", "resnet18", "mobilenet_v3_large", "convnext_tiny",
                "resnest50d"]


def get_sweep(arg=None):
  """The guide's table: 6 strategies x 5 models x 3 seeds (the appendix's models included)."""
  del arg
  return grid.cross(
      grid.zip_(**{"model.name": SWEEP_MODELS, "model.pretrained": SWEEP_MODELS}),
      grid.product(**{"strategy.name": STRATEGY_ORDER, "seed": [0, 1, 2]}))


def get_study(arg=None):
  """The guide's strategies, each with its own LR tuned on minival (5 LRs around the guide's
  0.002; the head alone 4x higher), successive halving at eta 3, then seeds 0, 1, 2."""
  del arg
  fine_tune = space.log_grid(0.0005, 0.008, 5)   # 0.0005 ... 0.008, the guide's 0.002 in the middle
  head = space.log_grid(0.002, 0.032, 5)
  return space.study({s: {"optimizer.lr": head if s in ("linear_probe", "scratch") else fine_tune}
                      for s in STRATEGY_ORDER}, final_seeds=[0, 1, 2], eta=3)
