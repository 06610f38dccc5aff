"""Any image folder `root/<split>/<class>/<image>`: the seeds' custom-dataset case.

  python -m ftlab.main --config=configs/imagefolder.py --workdir=runs/mine \
      --config.data.root=/data/Canidae
  python -m ftlab.main --config=configs/imagefolder.py:model=densenet121,strategy=linear_probe \
      --workdir=runs/canidae_lp --config.data.root=/data/Canidae --config.model.pretrained=densenet121

Defaults follow the MindCV DenseNet tutorial (seed 000): `train/` and `val/`
folders, Adam, lr 1e-4 for full fine-tuning, 10 epochs. `val` is held out and
evaluated once at the end on the checkpoint selected on a minival split
carved from `train`; a folder with its own `test/` sets
--config.data.test_split=test --config.data.val_split=val.
"""
from configs import default
from ftlab.configuration import args as config_args


def get_config(arg=None):
  args = config_args.parse(arg, model="resnet18", strategy="full_ft", pretrained="")
  config = default.get_config()
  config.model.name = args["model"]
  config.model.pretrained = args["pretrained"]
  config.strategy.name = args["strategy"]
  config.data.kind = "imagefolder"
  config.data.val_split = ""
  config.data.test_split = "val"
  config.optimizer.name = "adam"
  config.optimizer.lr = 1e-4
  config.optimizer.weight_decay = 0.0
  config.train.batch_size = 16
  config.train.num_epochs = 10.0
  return config
