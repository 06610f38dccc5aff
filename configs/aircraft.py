"""FGVC-Aircraft (100 variants), the MindCV fine-tuning guide's recipe (seed 002).

  python -m ftlab.main --config=configs/aircraft.py --workdir=runs/air \
      --config.data.root=/data/fgvc-aircraft-2013b
  python -m ftlab.main --config=configs/aircraft.py:model=resnet18,strategy=full_ft --workdir=...
  python -m ftlab.sweep --config=configs/aircraft.py --workdir=runs/air_sweep \
      --config.data.root=...   # or set root in this file; see get_sweep
  python -m ftlab.report --workdir=runs/air_sweep

Recipe (MindCV guide): MobileNetV3-small pretrained on ImageNet, batch 8,
image 600, SGD momentum 0.9, lr 0.002 cosine, weight decay 2e-5, label
smoothing 0.1, 50 epochs. The guide's table (top-1 %): freeze all features
48.66 | freeze shallow (features.0-6) 76.83 | full FT 88.35 | classifier LR
x1.2 88.89 | features.13/14/15 LR x1.05/1.1/1.15 88.68. The guide's
RandAugment is set as it spells it (`data.auto_augment =
"randaug-m7-mstd0.5"`: 2 ops per image, magnitude 7 with noise std 0.5,
after random-resized-crop + flip; ftlab/data/autoaugment.py). Data is read
from the annotation files directly (the "online" way);
`--config.data.download=True` fetches the official archive (2.6 GB,
md5-checked) into `data.root`.

ConvNeXt-tiny is in the sweep too: MindCV's appendix reports 93.69% for a
fine-tuned ConvNeXt-tiny on this dataset (its own recipe, not the guide's
MobileNetV3 one above); here it runs under the same recipe as the others,
with torchvision's drop-path 0.1 (`model.drop_path_rate`), and
`freeze_blocks=7` freezes its features.0-3 (stem and the first two stages).

Result here: not run (no dataset on the development machine, CPU only).
"""
from configs import default
from ftlab.configuration import args as config_args
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
  config.strategy.freeze_blocks = 7        # features.0 .. features.6 (convnext_tiny: 0 .. 3)
  config.strategy.head_lr_mult = 1.2
  config.data.kind = "aircraft"
  config.data.root = args["root"]
  config.data.train_split = "trainval"
  config.data.val_split = ""
  config.data.test_split = "test"
  config.data.image_size = 600
  config.data.auto_augment = "randaug-m7-mstd0.5"  # the guide's RandAugment
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.002
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 2e-5
  config.train.label_smoothing = 0.1
  config.train.batch_size = 8
  config.train.eval_batch_size = 16
  config.train.num_epochs = 50.0
  config.train.checkpoint_every_steps = 500
  return config


def get_sweep(arg=None):
  """The guide's table: 6 strategies x 5 models x 3 seeds (the appendix's models included)."""
  del arg
  models = ["mobilenet_v3_small", "resnet18", "mobilenet_v3_large", "convnext_tiny", "resnest50d"]
  return grid.cross(
      grid.zip_(**{"model.name": models, "model.pretrained": models}),
      grid.product(**{"strategy.name": STRATEGY_ORDER, "seed": [0, 1, 2]}))
