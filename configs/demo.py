"""The embedded default: fine-tune on scikit-learn's digits, a few minutes on 2 CPU cores.

  python -m ftlab.main --config=configs/demo.py --workdir=runs/demo

The dataset ships with scikit-learn (1,797 8x8 digits written once as 32x32
PNGs to ~/.cache/ftlab/digits as an image folder), so it runs with no download.
Config arguments: `configs/demo.py:model=tiny_cnn,strategy=full_ft`.
"""
from configs import default
from ftlab import config_args


def get_config(arg=None):
  args = config_args.parse(arg, model="tiny_cnn", strategy="full_ft")
  config = default.get_config()
  config.model.name = args["model"]
  config.strategy.name = args["strategy"]
  config.data.kind = "digits"
  config.data.val_split = ""
  config.data.image_size = 32
  config.data.rrc_min_scale = 0.6
  config.data.hflip = False  # digits are not mirror-symmetric
  config.optimizer.lr = 0.05
  config.optimizer.warmup_epochs = 0.5
  config.train.batch_size = 32
  config.train.eval_batch_size = 64
  config.train.num_epochs = 6.0
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 200
  return config
