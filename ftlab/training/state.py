"""The train state and everything that shapes it: model, strategy phases, optimizer.

Parameters are held as two flat dicts keyed by '/'-joined path: `trainable`
(differentiated, with optimizer state) and `frozen` (constants of the step).
A strategy with several phases (lp_ft, gradual_unfreeze) moves parameters
between the two at phase boundaries (`regroup`), which is the only time the
step is recompiled.

`hparams` holds the scalars a search varies (base LR, per-group LR
multipliers and weight decays, momentum, clipping norm, label smoothing,
L2-SP's alpha and beta) as float32 values the step reads, so runs that
differ only in them share one compiled program (ftlab/training/optim.py).

With the `lora` strategy the flat dicts also hold the adapters
(`<kernel>/lora_a`, `lora_b`, trainable); `model_params` folds them into
their kernels (`lora.merge`, scale `TrainState.lora_scale`), for the loss
function at every step and for evaluation, prediction and export.
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional

from absl import logging
import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import optax

from ftlab.models import ModelSpec, conv, get_spec, inits, with_drop_path
from ftlab.models.layers import Mode
from ftlab.pretrained import load as load_lib
from ftlab.training import ema as ema_lib
from ftlab.training import lora as lora_lib
from ftlab.training import mixup as mixup_lib
from ftlab.training import optim, strategy


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  trainable: Dict[str, jax.Array]
  frozen: Dict[str, jax.Array]
  batch_stats: Any
  opt_state: Any
  anchor: Dict[str, Dict[str, jax.Array]]  # L2-SP: `l2sp_anchor` (empty otherwise)
  hparams: Dict[str, jax.Array]  # the phase's `Phase.hparams` as float32 scalars, read by the step
  ema: Dict[str, Dict[str, jax.Array]]  # train.ema_decay > 0: ema.py's average ({} otherwise)
  lora_scale: float = flax.struct.field(pytree_node=False, default=0.0)  # LoRA's alpha / r


BN_POLICIES = ("batch", "frozen", "reestimate")


def check_bn_policy(policy: str) -> str:
  if policy not in BN_POLICIES:
    raise ValueError(f"config.model.bn={policy!r}; use one of {list(BN_POLICIES)}")
  return policy


@dataclasses.dataclass
class Phase:
  """One phase of a strategy: its plan, optimizer, schedule and BatchNorm modes.

  `all_frozen_bn` holds every BatchNorm under `config.model.bn=frozen` (all of
  them normalise with their running statistics, never updated) and is empty
  otherwise: then the plan decides (`Plan.frozen_bn`, BatchNorms whose
  parameters are frozen).
  """
  start: int
  plan: strategy.Plan
  tx: optax.GradientTransformation
  bn_momentum: float = 0.0
  hparams: Dict[str, float] = dataclasses.field(default_factory=dict)  # the scalars a search varies
  with_hparams: Optional[Callable[[dict], optax.GradientTransformation]] = None  # `tx` reading them
  window: Optional[optim.Window] = None  # the steps its schedule spans (optim.Window)
  schedule: str = strategy.RUN           # strategy.RUN | PROBE | FINE_TUNE
  lr_fn: Optional[Callable[[int], Any]] = None  # its own step count -> LR (Python constants)
  all_frozen_bn: frozenset = frozenset()

  def transform(self, hparams: Dict[str, jax.Array]) -> optax.GradientTransformation:
    """`tx` with its scalars read from `hparams` (TrainState.hparams, traced in the step)."""
    return self.with_hparams(hparams=hparams)

  def lr_at(self, step: int) -> float:
    """The base LR (before group multipliers) at global step `step` of this phase."""
    return float(self.lr_fn(step - self.start))

  @property
  def frozen_bn(self) -> frozenset:
    """BatchNorm modules that normalise with their running statistics and never update them."""
    return self.plan.frozen_bn() | self.all_frozen_bn

  @property
  def updated_bn(self) -> frozenset:
    """BatchNorm modules that normalise with batch statistics and update their running ones."""
    return self.plan.updated_bn() - self.all_frozen_bn

  @property
  def mode(self) -> Mode:
    return Mode(True, self.frozen_bn, self.bn_momentum, self.plan.frozen_modules())


@dataclasses.dataclass
class Setup:
  """Model, strategy phases and loss settings of a run, derived from its config."""
  spec: ModelSpec
  model: Any
  image_size: int
  num_classes: int
  phases: List[Phase]
  preset: strategy.Preset
  label_smoothing: float
  l2sp: tuple  # (alpha, beta) or ()
  batch_norms: frozenset = frozenset()  # module paths with running statistics (not LayerNorms)
  bn_policy: str = "batch"               # config.model.bn (BN_POLICIES)
  mixup: Any = None                      # mixup.Mixup (config.train.mixup_*), None = off
  ema_decay: float = 0.0                 # config.train.ema_decay (0 = no EMA weights)
  lora: Optional[lora_lib.Adapters] = None  # the `lora` strategy's adapters

  def phase_index(self, step: int) -> int:
    """The phase that runs step `step` (0-based)."""
    return max(i for i, p in enumerate(self.phases) if p.start <= step)

  def structure_index(self, step: int) -> int:
    """The phase whose layout a state that has completed `step` steps has."""
    return self.phase_index(max(step - 1, 0))


def flatten(tree) -> Dict[str, Any]:
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def unflatten(flat: Dict[str, Any]):
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def model_params(flat: Dict[str, jax.Array], lora_scale: float) -> dict:
  """The model's parameter tree from flat parameters, LoRA adapters merged into their kernels."""
  return unflatten(lora_lib.merge(flat, lora_scale))


def params_of(state: TrainState) -> dict:
  return model_params({**state.frozen, **state.trainable}, state.lora_scale)


def variables_of(state: TrainState) -> dict:
  return {"params": params_of(state), "batch_stats": state.batch_stats}


def init_variables(model, image_size: int, rng) -> dict:
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = jax.jit(lambda r: model.init(r, x, train=False))(rng)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def variable_shapes(model, image_size: int) -> tuple:
  """({parameter path: shape}, '/'-joined paths of the modules holding BatchNorm statistics)."""
  tree = jax.eval_shape(lambda: init_variables(model, image_size, jax.random.key(0)))
  batch_norms = frozenset(k.rsplit("/", 1)[0] for k in flatten(tree["batch_stats"]))
  return {k: v.shape for k, v in flatten(tree["params"]).items()}, batch_norms


def param_shapes(model, image_size: int) -> Dict[str, tuple]:
  return variable_shapes(model, image_size)[0]


def loss_hparams(config) -> Dict[str, float]:
  """The loss's scalars a search may vary (read by the step when the term is on)."""
  return {"label_smoothing": config.train.label_smoothing,
          "l2sp_alpha": config.strategy.l2sp_alpha, "l2sp_beta": config.strategy.l2sp_beta}


def schedule_window(name: str, total_steps: int, warmup_steps: int, probe_steps: int) -> optim.Window:
  """The steps a phase's schedule spans: the run, the probe, or fine-tuning after the probe."""
  if name == strategy.PROBE:
    return optim.Window(0, probe_steps)
  if name == strategy.FINE_TUNE:
    return optim.Window(probe_steps, total_steps - probe_steps, warmup_steps)
  return optim.Window(0, total_steps, warmup_steps)


def _phase(config, start: int, plan: strategy.Plan, window: optim.Window, schedule: str,
           rewarm: int, all_frozen_bn: frozenset) -> Phase:
  hparams = {**optim.optimizer_hparams(config.optimizer, plan), **loss_hparams(config)}
  if schedule == strategy.PROBE:
    hparams["lr"] = config.optimizer.lr * config.strategy.lp_lr_mult
  make = functools.partial(optim.make_optimizer, config.optimizer, plan, window, start, rewarm)
  lr_fn = optim.window_schedule(config.optimizer, window, start, rewarm, hparams["lr"])
  return Phase(start, plan, make(hparams=dict(hparams)), config.model.bn_momentum, hparams, make,
               window, schedule, lr_fn, all_frozen_bn)


def build_setup(config, num_classes: int, total_steps: int, warmup_steps: int,
                steps_per_epoch: int) -> Setup:
  """Model, strategy phases and optimizers for `config`."""
  if config.model.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={config.model.dtype!r}; use one of {list(DTYPES)}")
  spec = get_spec(config.model.name)
  conv.select(config.model.conv_impl, config.model.depthwise_impl)
  model = spec.build(num_classes, DTYPES[config.model.dtype], config.model.init)
  model = with_drop_path(model, config.model.drop_path_rate)
  image_size = config.data.image_size or spec.input_size
  shapes, batch_norms = variable_shapes(model, image_size)
  preset = strategy.get_preset(config.strategy.name)
  adapters = lora_lib.resolve(spec, config.strategy, shapes) if preset.lora else None
  if adapters:
    shapes = {**shapes, **adapters.shapes}
  if config.optimizer.phase_warmup_epochs < 0:
    raise ValueError(f"config.optimizer.phase_warmup_epochs={config.optimizer.phase_warmup_epochs} "
                     "must be >= 0")
  rewarm = int(round(config.optimizer.phase_warmup_epochs * steps_per_epoch))
  probe = strategy.probe_steps(config.strategy, steps_per_epoch)
  policy = check_transfer_keys(config, batch_norms)
  all_frozen_bn = batch_norms if policy == "frozen" else frozenset()
  phases = [_phase(config, start, plan, schedule_window(name, total_steps, warmup_steps, probe),
                   name, rewarm, all_frozen_bn)
            for start, plan, name in strategy.build_phases(spec, config.strategy, shapes,
                                                           total_steps, steps_per_epoch)]
  if preset.l2sp and not config.model.pretrained:
    raise ValueError(f"config.strategy.name={config.strategy.name!r} pulls the weights loaded from "
                     "config.model.pretrained towards their start, but config.model.pretrained is "
                     "empty: name the pretrained weights")
  l2sp = (config.strategy.l2sp_alpha, config.strategy.l2sp_beta) if preset.l2sp else ()
  return Setup(spec, model, image_size, num_classes, phases, preset,
               config.train.label_smoothing, l2sp, batch_norms, policy,
               mixup_lib.from_config(config.train), check_ema(config.train), adapters)


def check_transfer_keys(config, batch_norms: frozenset) -> str:
  """config.model.bn (returned), head_init, bn_batches and strategy.lp_lr_mult, checked."""
  policy = check_bn_policy(config.model.bn)
  if config.model.head_init not in inits.HEAD_INITS:
    raise ValueError(f"config.model.head_init={config.model.head_init!r}; use one of "
                     f"{list(inits.HEAD_INITS)}")
  if config.model.bn_batches <= 0:
    raise ValueError(f"config.model.bn_batches={config.model.bn_batches} must be > 0")
  if config.strategy.lp_lr_mult <= 0:
    raise ValueError(f"config.strategy.lp_lr_mult={config.strategy.lp_lr_mult} must be > 0")
  if policy == "frozen" and not batch_norms:
    logging.info("config.model.bn=frozen: %s has no BatchNorm, nothing to freeze",
                 config.model.name)
  return policy


def check_ema(train_cfg) -> float:
  """config.train.ema_decay, checked against config.train.select_ema."""
  if not 0 <= train_cfg.ema_decay < 1:
    raise ValueError(f"config.train.ema_decay={train_cfg.ema_decay} must be in [0, 1) (0 = off)")
  if train_cfg.select_ema and not train_cfg.ema_decay:
    raise ValueError("config.train.select_ema=True needs EMA weights: set config.train.ema_decay "
                     "(e.g. 0.9998)")
  return float(train_cfg.ema_decay)


STALE_BN_SHARE = 0.05  # warn when running statistics end the run holding more of their start


def stale_bn_warning(setup: Setup, total_steps: int) -> str:
  """A warning ('' if none) when BatchNorm running statistics barely move in this run.

  After n steps that update them with momentum m (PyTorch convention), the
  running statistics still hold (1 - m)^n of their starting (pretrained)
  values, and evaluation normalises with them: TF-trained weights (m = 0.01)
  fine-tuned for a few hundred steps evaluate with ImageNet's statistics.
  """
  if setup.bn_policy != "batch":
    return ""  # frozen: never updated; reestimate: recomputed before every evaluation
  bn_momentum = setup.phases[0].bn_momentum  # config.model.bn_momentum, shared by every phase
  momentum = bn_momentum or setup.spec.bn_momentum
  ends = [p.start for p in setup.phases[1:]] + [total_steps]
  steps = sum(end - p.start for p, end in zip(setup.phases, ends) if p.updated_bn & setup.batch_norms)
  kept = (1.0 - momentum) ** steps
  if steps == 0 or kept <= STALE_BN_SHARE:
    return ""
  source = "config.model.bn_momentum" if bn_momentum else "the architecture's own"
  return (f"BatchNorm running statistics will still hold {kept:.0%} of their starting values "
          f"after {steps} updating steps at momentum {momentum:g} ({source}); evaluation "
          f"normalises with them. Raise config.model.bn_momentum (e.g. 0.1) or train longer.")


def regroup(state: TrainState, phase: Phase) -> TrainState:
  """Re-splits the parameters for `phase`, with fresh optimizer state for its trainable set."""
  params = {**state.frozen, **state.trainable}
  trainable = {k: v for k, v in params.items() if phase.plan.trainable(k)}
  frozen = {k: v for k, v in params.items() if not phase.plan.trainable(k)}
  hparams = {k: jnp.float32(v) for k, v in phase.hparams.items()}
  ema = state.ema and ema_lib.regroup(state.ema, trainable, state.batch_stats,
                                      phase.updated_bn)
  return state.replace(trainable=trainable, frozen=frozen, opt_state=phase.tx.init(trainable),
                       hparams=hparams, ema=ema)


def _load_pretrained(setup: Setup, config, variables: dict) -> tuple:
  """(variables with the pretrained weights merged in, names of the parameters loaded)."""
  variables, report = load_lib.load_pretrained(
      variables, config.model.pretrained, setup.spec, strict=config.model.strict)
  logging.info("pretrained weights %s:\n%s", config.model.pretrained, report.summary())
  prefix = "params/"
  return variables, frozenset(n[len(prefix):] for n in report.loaded if n.startswith(prefix))


def l2sp_anchor(params: Dict[str, jax.Array], loaded: frozenset) -> dict:
  """L2-SP's reference point: every parameter's starting value, and whether it was loaded.

  `loaded[k]` is 1.0 for a parameter taken from the pretrained checkpoint
  (pulled back towards its start with alpha) and 0.0 for one the checkpoint
  did not provide, such as a re-initialised classifier (decayed towards zero
  with beta). Held as arrays in the state, so a restored run keeps them.
  """
  # Copies: the step donates its state, and one buffer must not be donated twice.
  return {"start": {k: jnp.copy(v) for k, v in params.items()},
          "loaded": {k: jnp.float32(k in loaded) for k in params}}


LORA_RNG_STREAM = 1  # fold_in(rng, this): the adapters' init, apart from the model's
HEAD_RNG_STREAM = 2  # fold_in(rng, this): config.model.head_init's draws (inits.transfer_init)


def initial_state(setup: Setup, config, rng, load_weights: bool = True, phase: int = 0) -> TrainState:
  """Random init (plus pretrained weights when configured), laid out for `phase`."""
  variables = init_variables(setup.model, setup.image_size, rng)
  loaded = frozenset()
  params = flatten(variables["params"])
  if load_weights and config.model.pretrained and setup.preset.pretrained:
    variables, loaded = _load_pretrained(setup, config, variables)
    params = inits.transfer_init(flatten(variables["params"]), loaded, config.model.head_init,
                                 setup.num_classes, jax.random.fold_in(rng, HEAD_RNG_STREAM))
    new = sorted(set(params) - loaded)
    if new:
      logging.info("config.model.head_init=%s for the %d parameters the checkpoint did not "
                   "provide: %s", config.model.head_init, len(new), ", ".join(new[:8]))
  anchor = l2sp_anchor(params, loaded) if setup.l2sp else {}
  ema = {"params": {}, "batch_stats": {}} if setup.ema_decay else {}  # filled by regroup
  scale = 0.0
  if setup.lora:
    params.update(lora_lib.init(setup.lora, jax.random.fold_in(rng, LORA_RNG_STREAM)))
    scale = setup.lora.scale
  state = TrainState(step=jnp.zeros((), jnp.int32), trainable=params, frozen={},
                     batch_stats=variables["batch_stats"], opt_state=None, anchor=anchor,
                     hparams={}, ema=ema, lora_scale=scale)
  return regroup(state, setup.phases[phase])
