"""Fine-tuning strategies as data: ordered (regex, action) rules over parameter paths.

A rule's regex must *fully* match a '/'-joined parameter path such as
`layer1/0/conv1/kernel`; the first matching rule wins and every parameter
must be matched (end with a catch-all `.*`). A rule that matches nothing is
an error that lists the nearest paths. Actions:

* `"freeze"`: the parameter is not differentiated, has no optimizer state and
  never changes; BatchNorm modules whose parameters are frozen also keep
  their running statistics and normalise with them (inference mode).
* a number `k`: trainable with the base schedule scaled by `k`.
* a dict with any of `lr_mult` (1.0), `wd_mult` (1.0), `freeze` (False) and
  `bn` ('update' or 'freeze', default 'freeze' for frozen parameters and
  'update' otherwise).

Weight decay: for `sgd` and `adam` it is coupled (L2 added to the gradient,
as PyTorch's `weight_decay`), so it is scaled by the group's LR; for `adamw`
it is decoupled but multiplied by the group's LR, as in PyTorch's AdamW. In
both cases `wd_mult` scales it per group.

Presets (`PRESETS`) build rules from the architecture's declared blocks
(`ModelSpec.blocks`, shallow to deep) and head, so `freeze_shallow` with
`freeze_blocks=7` means the first seven trunk blocks on every model
(MobileNetV3's features.0..features.6, as in the MindCV guide).

`lora` trains low-rank adapters (`training/lora.py`): leaves `P/lora_a`,
`P/lora_b` beside each adapted kernel `P`, added to the parameter shapes
before the rules are compiled, so they form their own group in the plan (and
in the table printed at the start of a run); the head trains, the rest is frozen.
"""
import dataclasses
import difflib
import re
from typing import Any, Callable, Dict, List, Sequence, Tuple

import jax.numpy as jnp

from ftlab.models import ModelSpec


# Normalisation layers have a `scale`: BatchNorms (models/layers.py) and LayerNorms alike. A
# LayerNorm in these sets is harmless (it reads no Mode); `Setup.batch_norms` says which have
# running statistics.
BN_SCALE = "scale"


# The leaf names of a LoRA adapter beside its kernel (`training/lora.py`).
LORA_LEAVES = ("lora_a", "lora_b")


class StrategyError(ValueError):
  pass


def nearest_paths(pattern: str, paths, n: int = 5) -> list:
  """The `n` paths closest to `pattern` as text, for errors about a regex that matches nothing."""
  return difflib.get_close_matches(pattern, list(paths), n=n, cutoff=0.0)


@dataclasses.dataclass(frozen=True)
class Action:
  lr_mult: float = 1.0
  wd_mult: float = 1.0
  freeze: bool = False
  bn: str = ""  # 'update' | 'freeze'; '' = follow `freeze`

  @property
  def bn_frozen(self) -> bool:
    return self.bn == "freeze" if self.bn else self.freeze


def parse_action(action: Any, rule: str) -> Action:
  if isinstance(action, str):
    if action != "freeze":
      raise StrategyError(f"rule {rule!r}: action {action!r} is not 'freeze', a number or a dict")
    return Action(freeze=True)
  if isinstance(action, (int, float)):
    return Action(lr_mult=float(action))
  if hasattr(action, "items"):
    fields = dict(action.items())
    unknown = set(fields) - {"lr_mult", "wd_mult", "freeze", "bn"}
    if unknown or fields.get("bn", "") not in ("", "update", "freeze"):
      raise StrategyError(f"rule {rule!r}: bad action {fields}")
    return Action(**fields)
  raise StrategyError(f"rule {rule!r}: action {action!r} is not 'freeze', a number or a dict")


@dataclasses.dataclass
class Group:
  name: str
  rule: str
  action: Action
  paths: List[str]
  size: int = 0


@dataclasses.dataclass
class Plan:
  """A compiled strategy: which group every parameter belongs to."""
  groups: List[Group]
  labels: Dict[str, str]  # parameter path -> group name

  def trainable(self, path: str) -> bool:
    return not self.group_of(path).action.freeze

  def group_of(self, path: str) -> Group:
    return self._by_name[self.labels[path]]

  def __post_init__(self):
    self._by_name = {g.name: g for g in self.groups}

  @property
  def trainable_groups(self) -> List[Group]:
    return [g for g in self.groups if not g.action.freeze]

  def frozen_bn(self) -> frozenset:
    """Module paths of BatchNorm layers to keep in inference mode."""
    return self._bn_modules(frozen=True)

  def updated_bn(self) -> frozenset:
    """Module paths of BatchNorm layers that normalise with batch statistics and update them."""
    return self._bn_modules(frozen=False)

  def frozen_modules(self) -> frozenset:
    """Module paths all of whose parameters are frozen (dropout and drop-path off inside)."""
    frozen = {}
    for path in self.labels:
      parts = path.split("/")[:-1]
      for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        frozen[prefix] = frozen.get(prefix, True) and not self.trainable(path)
    return frozenset(p for p, f in frozen.items() if f)

  def _bn_modules(self, frozen: bool) -> frozenset:
    modules = set()
    for g in self.groups:
      if g.action.bn_frozen == frozen:
        modules.update(p.rsplit("/", 1)[0] for p in g.paths if p.rsplit("/", 1)[-1] == BN_SCALE)
    return frozenset(modules)

  def table(self) -> str:
    lines = [f"{'group':<8} {'rule':<40} {'#params':>12} {'lr_mult':>8} {'wd_mult':>8} {'bn':>7}"]
    for g in self.groups:
      lr = "frozen" if g.action.freeze else f"{g.action.lr_mult:g}"
      bn = "freeze" if g.action.bn_frozen else "update"
      lines.append(f"{g.name:<8} {g.rule:<40} {g.size:>12,} {lr:>8} {g.action.wd_mult:>8g} {bn:>7}")
    return "\n".join(lines)


def compile_rules(rules: Sequence[Tuple[str, Any]], shapes: Dict[str, Tuple[int, ...]]) -> Plan:
  """Assigns every parameter path (keys of `shapes`) to its first matching rule."""
  if not rules:
    raise StrategyError("the strategy has no rules; end with a catch-all ('.*', ...)")
  compiled = [(re.compile(r), r, parse_action(a, r)) for r, a in rules]
  groups = [Group(f"g{i}", r, act, []) for i, (_, r, act) in enumerate(compiled)]
  labels = {}
  for path, shape in shapes.items():
    for (pattern, _, _), group in zip(compiled, groups):
      if pattern.fullmatch(path):
        group.paths.append(path)
        group.size += _numel(shape)
        labels[path] = group.name
        break
    else:
      raise StrategyError(f"parameter {path!r} is matched by no rule; end the rules with a catch-all '.*'")
  for group in groups:
    if not group.paths:
      raise StrategyError(f"rule {group.rule!r} matches no parameter (first match wins); "
                          f"nearest paths: {nearest_paths(group.rule, shapes)}")
  return Plan(groups, labels)


def _numel(shape) -> int:
  n = 1
  for d in shape:
    n *= int(d)
  return n


def under(module_regex: str) -> str:
  """Regex for every parameter under modules matching `module_regex`, or named by it.

  The second form covers parameters held directly by a module that has other
  children too (ViT's `class_token`, `encoder/pos_embedding`).
  """
  return f"(?:(?:{module_regex})/.*|{module_regex})"


def _linear_probe(spec: ModelSpec, cfg) -> list:
  del cfg
  return [(under(spec.head), 1.0), (".*", "freeze")]


def _freeze_shallow(spec: ModelSpec, cfg) -> list:
  """The first `cfg.freeze_blocks` trunk blocks frozen; 0 = the model's `spec.freeze_blocks`."""
  n = cfg.freeze_blocks or spec.freeze_blocks
  if not 0 < n < len(spec.blocks):
    raise StrategyError(f"config.strategy.freeze_blocks={n}: the model has {len(spec.blocks)} "
                        f"trunk blocks {list(spec.blocks)}; freeze between 1 and "
                        f"{len(spec.blocks) - 1}, or 0 for the model's default ({spec.freeze_blocks})")
  return [(under("|".join(spec.blocks[:n])), "freeze"), (".*", 1.0)]


def _full_ft(spec: ModelSpec, cfg) -> list:
  del spec, cfg
  return [(".*", 1.0)]


def _full_ft_head_lr(spec: ModelSpec, cfg) -> list:
  return [(under(spec.head), float(cfg.head_lr_mult)), (".*", 1.0)]


def _full_ft_deep_lr(spec: ModelSpec, cfg) -> list:
  mults = [float(m) for m in cfg.deep_lr_mults]
  if not 0 < len(mults) <= len(spec.blocks):
    raise StrategyError(f"config.strategy.deep_lr_mults={tuple(mults)}: give 1 to "
                        f"{len(spec.blocks)} multipliers for the last trunk blocks")
  deep = spec.blocks[len(spec.blocks) - len(mults):]
  return [(under(b), m) for b, m in zip(deep, mults)] + [(".*", 1.0)]


def _layer_decay(spec: ModelSpec, cfg) -> list:
  """Geometric layer-wise LR decay: block i from the head down gets decay**i."""
  rate = float(cfg.layer_decay)
  if not 0.0 < rate <= 1.0:
    raise StrategyError(f"config.strategy.layer_decay={rate} must be in (0, 1]")
  n = len(spec.blocks)
  return [(under(spec.head), 1.0)] + [(under(b), rate ** (n - i)) for i, b in enumerate(spec.blocks)]


def _bitfit(spec: ModelSpec, cfg) -> list:
  """Only biases (and BatchNorm shifts/scales if `bitfit_bn_scale`) plus the head train."""
  scale = {"lr_mult": 1.0} if cfg.bitfit_bn_scale else {"freeze": True, "bn": "update"}
  return [(under(spec.head), 1.0), (".*/bias", 1.0), (".*/scale", scale), (".*", "freeze")]


def _l2sp(spec: ModelSpec, cfg) -> list:
  """Full fine-tuning; weight decay replaced by the L2-SP penalty (see `penalty`)."""
  del cfg
  return [(under(spec.head), {"wd_mult": 0.0}), (".*", {"wd_mult": 0.0})]


def _lora(spec: ModelSpec, cfg) -> list:
  """LoRA: the adapters and the head train, every other parameter is frozen."""
  del cfg
  adapters = f".*/(?:{'|'.join(LORA_LEAVES)})"
  return [(adapters, 1.0), (under(spec.head), 1.0), (".*", "freeze")]


def _custom(spec: ModelSpec, cfg) -> list:
  del spec
  return [tuple(r) for r in cfg.rules]


# Which LR schedule a phase runs (`optim.Window`): the run's one schedule over all its steps;
# the linear probe's own (its `strategy.lp_epochs`, peak `lp_lr_mult` x the LR, no warm-up);
# or full fine-tuning's own after the probe (`train.num_epochs`, the warm-up, peak the LR).
RUN, PROBE, FINE_TUNE = "run", "probe", "fine_tune"


def probe_steps(cfg, steps_per_epoch: int) -> int:
  """Steps of the linear-probe phase that precedes fine-tuning (0 for presets without one)."""
  if not get_preset(cfg.name).probe:
    return 0
  steps = int(round(cfg.lp_epochs * steps_per_epoch))
  if steps <= 0:
    raise StrategyError(f"config.strategy.lp_epochs={cfg.lp_epochs} gives {steps} probe steps; "
                        f"{cfg.name} fits the head first: give it at least one step")
  return steps


def _single(rules_fn):
  return lambda spec, cfg, total_steps, steps_per_epoch: [(0, rules_fn(spec, cfg), RUN)]


def _lp_ft(spec: ModelSpec, cfg, total_steps: int, steps_per_epoch: int) -> list:
  """Kumar et al.: the head fit first (its own schedule), then full fine-tuning's own schedule."""
  switch = probe_steps(cfg, steps_per_epoch)
  if switch >= total_steps:
    raise StrategyError(f"config.strategy.name={cfg.name!r}: the probe's {switch} steps leave "
                        f"no fine-tuning steps of {total_steps}; raise config.train.num_epochs")
  return [(0, _linear_probe(spec, cfg), PROBE), (switch, _full_ft(spec, cfg), FINE_TUNE)]


def unfreeze_starts(cfg, probe: int, total_steps: int, num_blocks: int) -> list:
  """[(first step, number of trainable top blocks)] of gradual unfreezing's fine-tuning stages."""
  if int(cfg.unfreeze_stages) < 1:
    raise StrategyError(f"config.strategy.unfreeze_stages={cfg.unfreeze_stages} must be >= 1")
  stages = min(int(cfg.unfreeze_stages), num_blocks)  # at most one stage per trunk block
  if not 0.0 <= cfg.unfreeze_fraction < 1.0:
    raise StrategyError(f"config.strategy.unfreeze_fraction={cfg.unfreeze_fraction} must be in "
                        "[0, 1): the share of fine-tuning over which the trunk is unfrozen")
  span = cfg.unfreeze_fraction * (total_steps - probe)
  starts = [(probe + int(round(k * span / stages)), -(-(k + 1) * num_blocks // stages))
            for k in range(stages)]
  return [s for i, s in enumerate(starts) if i + 1 == len(starts) or s[0] < starts[i + 1][0]]


def _gradual_unfreeze(spec: ModelSpec, cfg, total_steps: int, steps_per_epoch: int) -> list:
  """ULMFiT's order on LP-FT's budget: the probe, then full fine-tuning's own schedule, during
  whose first `unfreeze_fraction` the trunk's blocks are unfrozen from the top in
  `unfreeze_stages` equal groups (each group with fresh momentum, as a new phase)."""
  probe = probe_steps(cfg, steps_per_epoch)
  if probe >= total_steps:
    raise StrategyError(f"config.strategy.name={cfg.name!r}: the probe's {probe} steps leave "
                        f"no fine-tuning steps of {total_steps}; raise config.train.num_epochs")
  phases = [(0, _linear_probe(spec, cfg), PROBE)]
  n = len(spec.blocks)
  for start, top in unfreeze_starts(cfg, probe, total_steps, n):
    frozen = spec.blocks[:n - top]
    rules = [(under("|".join(frozen)), "freeze"), (".*", 1.0)] if frozen else [(".*", 1.0)]
    phases.append((start, rules, FINE_TUNE))
  return phases


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named strategy: its phases (start step, rules) and how it starts and regularises.

  Attributes:
    phases: (spec, strategy config, total steps, steps per epoch) ->
      [(first step, rules, schedule: RUN | PROBE | FINE_TUNE), ...].
    pretrained: False starts from random init whatever `model.pretrained` says.
    probe: the run starts with a linear-probe phase of `strategy.lp_epochs` of its own,
      added to the run's `train.num_epochs` of fine-tuning (`probe_steps`).
    l2sp: add the L2-SP penalty towards the starting weights (`penalty`).
    lora: the parameters include LoRA adapters (`training/lora.py`).
    source: where the recipe comes from.
  """
  phases: Callable[[ModelSpec, Any, int, int], list]
  pretrained: bool = True
  l2sp: bool = False
  lora: bool = False
  probe: bool = False
  source: str = ""


PRESETS = {
    "linear_probe": Preset(_single(_linear_probe),
                           source="MindCV guide 'freeze all features'; MindCV, MindSpore, PyTorch tutorials"),
    "freeze_shallow": Preset(_single(_freeze_shallow), source="MindCV guide: features.0-6 frozen"),
    "full_ft": Preset(_single(_full_ft), source="every tutorial ftlab grew from: fine-tune all layers"),
    "full_ft_head_lr": Preset(_single(_full_ft_head_lr),
                              source="d2l Gluon lr_mult=10; MindCV guide classifier x1.2"),
    "full_ft_deep_lr": Preset(_single(_full_ft_deep_lr),
                              source="MindCV guide: features.13/14/15 x1.05/1.1/1.15"),
    "layer_decay": Preset(_single(_layer_decay), source="BEiT/MAE layer-wise LR decay"),
    "scratch": Preset(_single(_full_ft), pretrained=False, source="PyTorch ResNet-18 tutorial: train from scratch"),
    "lp_ft": Preset(_lp_ft, probe=True, source="Kumar et al. 2022, LP-FT"),
    "bitfit": Preset(_single(_bitfit), source="Ben Zaken et al. 2022, BitFit"),
    "l2sp": Preset(_single(_l2sp), l2sp=True, source="Li et al. 2018, L2-SP"),
    "gradual_unfreeze": Preset(_gradual_unfreeze, probe=True,
                               source="Howard & Ruder 2018, ULMFiT"),
    "lora": Preset(_single(_lora), lora=True, source="Hu et al. 2021, LoRA"),
    "custom": Preset(_single(_custom), source="config.strategy.rules"),
}


def l2sp_penalty(trainable, anchor, alpha: float, beta: float):
  """L2-SP: alpha/2 ||w - w0||^2 over the loaded (pretrained) weights + beta/2 ||w||^2 on the rest.

  `anchor` is `state.l2sp_anchor(...)`: each parameter's start `w0` and a
  0/1 flag saying whether it came from the pretrained checkpoint. Every loaded
  parameter is anchored, head or not (MobileNetV3's pretrained `classifier/0`
  is); the parameters the checkpoint did not provide (a re-initialised
  classifier) are decayed towards zero, as in the paper.
  """
  start, loaded = anchor["start"], anchor["loaded"]
  near = sum(loaded[k] * jnp.sum(jnp.square(v - start[k])) for k, v in trainable.items())
  rest = sum((1.0 - loaded[k]) * jnp.sum(jnp.square(v)) for k, v in trainable.items())
  return 0.5 * alpha * near + 0.5 * beta * rest


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise StrategyError(f"config.strategy.name={name!r} is not a preset; choose one of {list(PRESETS)}")
  return PRESETS[name]


def build_phases(spec: ModelSpec, strategy_cfg, shapes: Dict[str, Tuple[int, ...]],
                 total_steps: int, steps_per_epoch: int) -> List[Tuple[int, Plan, str]]:
  """[(first step, Plan, schedule), ...] for the configured preset; one entry for most presets."""
  phases = get_preset(strategy_cfg.name).phases(spec, strategy_cfg, total_steps, steps_per_epoch)
  return [(start, compile_rules(rules, shapes), window) for start, rules, window in phases]


def build_plan(spec: ModelSpec, strategy_cfg, shapes: Dict[str, Tuple[int, ...]]) -> Plan:
  """The plan of the first phase (enough for single-phase presets)."""
  return build_phases(spec, strategy_cfg, shapes, total_steps=2, steps_per_epoch=1)[0][1]
