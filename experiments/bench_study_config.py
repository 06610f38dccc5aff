"""The config experiments/bench_study.py runs on an image folder (`--data=DIR`): data sizes x
strategies x LRs, all from the config argument ('/' separates list items):

  experiments/bench_study_config.py:data=/data/fmnist,sizes=10/100,lrs=0.003/0.01/0.03/0.1

`DIR/train/<class>/*` and `DIR/test/<class>/*` (experiments/fashion_mnist_folder.py writes a
class-balanced Fashion-MNIST subset so). One minival, carved from the whole train split before
the subsets are drawn (`data.minival_from='full'`), serves every size, so the sizes are nested
and compared on the same selection split. It is 30% of the train split (`minival_fraction`):
the pool is larger than the subsets, so a larger minival costs no training image, and on
Fashion-MNIST at 10 images per class it made halving pick the full grid's LR for 4 of 6
strategies instead of 2 of 6 with 10% (docs/studies.md). The recipe is
`configs/fashion_mnist.py`'s (the one the fidelity check runs), with the epochs, batch, image
size and evaluation interval given here. The study searches `lrs` (the head alone and
scratch: `head_lrs`) per strategy and size and retrains the choice with seeds 0 .. seeds-1
(the search seed is 1000); the untuned sweep runs every strategy at `untuned_lr` over the same
seeds. `max_rungs=1` makes the study the full grid on its own (every trial to the end), whose
curves experiments/halving_replay.py replays.
"""
from configs import fashion_mnist
from ftlab.configuration import args as config_args
from ftlab.studies import space
from ftlab.sweeps import grid

STRATEGY_ORDER = ["linear_probe", "freeze_shallow", "full_ft", "full_ft_head_lr",
                  "full_ft_deep_lr", "scratch"]
HEAD_ONLY = ("linear_probe", "scratch")


def _args(arg):
  return config_args.parse(
      arg, data="", sizes="10/100", strategies="/".join(STRATEGY_ORDER),
      lrs="0.003/0.01/0.03/0.1", head_lrs="0.01/0.03/0.1/0.3", untuned_lr=0.01,
      model="efficientnet_lite0", pretrained="efficientnet_lite0", epochs=10.0,
      eval_every=1.0, image_size=64, batch=32, minival_fraction=0.3, freeze_blocks=0, seeds=3,
      max_rungs=space.DEFAULT_MAX_RUNGS)


def _list(text: str, kind=str) -> list:
  return [kind(x) for x in text.split("/") if x]


def get_config(arg=None):
  args = _args(arg)
  config = fashion_mnist.get_config(f"model={args['model']},pretrained={args['pretrained']}")
  config.strategy.freeze_blocks = args["freeze_blocks"]
  config.data.root = args["data"]
  config.data.image_size = args["image_size"]
  config.data.minival_fraction = args["minival_fraction"]
  config.data.minival_from = "full"
  config.optimizer.lr = args["untuned_lr"]
  config.train.batch_size = args["batch"]
  config.train.eval_batch_size = 2 * args["batch"]
  config.train.num_epochs = args["epochs"]
  config.train.eval_every_epochs = args["eval_every"]
  return config


def _sizes(args) -> list:
  return [{"data.train_per_class": k} for k in _list(args["sizes"], int)]


def get_sweep(arg=None):
  """The untuned table: every strategy at `untuned_lr`, every size, the final seeds."""
  args = _args(arg)
  return grid.cross(grid.product(**{"data.train_per_class": _list(args["sizes"], int)}),
                    grid.product(**{"strategy.name": _list(args["strategies"]),
                                    "seed": list(range(args["seeds"]))}))


def get_study(arg=None):
  """Every strategy's LR tuned per size by successive halving, then the final seeds."""
  args = _args(arg)
  lrs = {s: _list(args["head_lrs" if s in HEAD_ONLY else "lrs"], float)
         for s in _list(args["strategies"])}
  return space.study({s: {"optimizer.lr": v} for s, v in lrs.items()}, sizes=_sizes(args),
                     final_seeds=list(range(args["seeds"])), max_rungs=args["max_rungs"])
