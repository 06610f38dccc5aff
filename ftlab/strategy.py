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
"""
import dataclasses
import difflib
import re
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ftlab.models import ModelSpec

BN_LEAVES = ("scale", "bias")


class StrategyError(ValueError):
  pass


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
    modules = set()
    for g in self.groups:
      if g.action.bn_frozen:
        modules.update(p.rsplit("/", 1)[0] for p in g.paths if p.rsplit("/", 1)[-1] in BN_LEAVES)
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
      near = difflib.get_close_matches(group.rule, list(shapes), n=5, cutoff=0.0)
      raise StrategyError(f"rule {group.rule!r} matches no parameter (first match wins); "
                          f"nearest paths: {near}")
  return Plan(groups, labels)


def _numel(shape) -> int:
  n = 1
  for d in shape:
    n *= int(d)
  return n


def under(module_regex: str) -> str:
  """Regex for every parameter under modules matching `module_regex`."""
  return f"(?:{module_regex})/.*"


def _linear_probe(spec: ModelSpec, cfg) -> list:
  del cfg
  return [(under(spec.head), 1.0), (".*", "freeze")]


def _freeze_shallow(spec: ModelSpec, cfg) -> list:
  n = cfg.freeze_blocks
  if not 0 < n < len(spec.blocks):
    raise StrategyError(f"config.strategy.freeze_blocks={n}: the model has {len(spec.blocks)} "
                        f"trunk blocks {list(spec.blocks)}; freeze between 1 and {len(spec.blocks) - 1}")
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


def _custom(spec: ModelSpec, cfg) -> list:
  del spec
  return [tuple(r) for r in cfg.rules]


@dataclasses.dataclass(frozen=True)
class Preset:
  rules: Callable[[ModelSpec, Any], list]
  pretrained: bool = True  # False: start from random init whatever model.pretrained says
  source: str = ""


PRESETS = {
    "linear_probe": Preset(_linear_probe, source="MindCV guide 'freeze all features'; seeds 000/003"),
    "freeze_shallow": Preset(_freeze_shallow, source="MindCV guide: features.0-6 frozen"),
    "full_ft": Preset(_full_ft, source="all seeds: full fine-tuning"),
    "full_ft_head_lr": Preset(_full_ft_head_lr, source="Gluon lr_mult=10 (seed 001); MindCV x1.2"),
    "full_ft_deep_lr": Preset(_full_ft_deep_lr, source="MindCV guide: features.13/14/15 x1.05/1.1/1.15"),
    "scratch": Preset(_full_ft, pretrained=False, source="seed 003: train from scratch"),
    "custom": Preset(_custom, source="config.strategy.rules"),
}


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise StrategyError(f"config.strategy.name={name!r} is not a preset; choose one of {list(PRESETS)}")
  return PRESETS[name]


def build_plan(spec: ModelSpec, strategy_cfg, shapes: Dict[str, Tuple[int, ...]]) -> Plan:
  return compile_rules(get_preset(strategy_cfg.name).rules(spec, strategy_cfg), shapes)
