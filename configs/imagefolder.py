"""Any image folder `root/<split>/<class>/<image>`: your own data.

  python -m ftlab.main --config=configs/imagefolder.py --workdir=runs/mine \
      --config.data.root=/data/Canidae
  python -m ftlab.main --config=configs/imagefolder.py:model=densenet121,strategy=linear_probe \
      --workdir=runs/canidae_lp --config.data.root=/data/Canidae

Splits are detected from the folders present (ftlab/data/imagefolder.py):
`train/ val/ test/` selects checkpoints on a minival carved from train,
evaluates val for reference and test held out; `train/ val/` holds val out
(reported as test); `train/` alone carves a test split from train
(`data.test_fraction`). The log line and results.json's layout say which.

Weights: the model's registered ImageNet weights (ftlab/pretrained/registry.py)
unless `pretrained=` names others (a registered name or a file) or is empty
(random init). A model without registered weights (tiny_cnn, vit_s_16) starts
from random init unless `pretrained=` names a file.

Recipe: the MindCV DenseNet tutorial's (Adam, lr 1e-4, batch 16, 10 epochs).
"""
from configs import default
from ftlab.configuration import args as config_args
from ftlab.pretrained import registry

# `pretrained` when the config argument is not given: the model's registered weights.
REGISTERED = "registered"


def get_config(arg=None):
  args = config_args.parse(arg, model="resnet18", strategy="full_ft", pretrained=REGISTERED)
  config = default.get_config()
  config.model.name = args["model"]
  config.model.pretrained = args["pretrained"]
  if args["pretrained"] == REGISTERED:
    config.model.pretrained = args["model"] if args["model"] in registry.WEIGHTS else ""
  config.strategy.name = args["strategy"]
  config.data.kind = "imagefolder"
  config.optimizer.name = "adam"
  config.optimizer.lr = 1e-4
  config.optimizer.weight_decay = 0.0
  config.train.batch_size = 16
  config.train.num_epochs = 10.0
  return config
