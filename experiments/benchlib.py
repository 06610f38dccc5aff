"""Shared pieces of the benchmark scripts (`bench_strategies.py`, `bench_step.py`).

* Every measurement runs in a fresh subprocess (`subprocs.run_worker`), so
  its peak RSS (`ru_maxrss`) belongs to that measurement alone.
* Step times are medians over several steps. The machine is shared: the CPU
  time other processes took while we timed (`ForeignLoad`, read from
  /proc/stat) is measured, a contended round of steps is re-timed, and the
  parent waits for a quiet machine before starting each worker.
* ftlab states are built the way `ftlab.training.trainer` builds them: a config from
  `configs.default`, `state.build_setup` and `state.initial_state` (random
  init), steps jitted with `donate_argnums=(0,)` and compiled ahead of time.
"""
import dataclasses
import json
import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple


BATCH = 32
NUM_CLASSES = 100  # a fine-tuning target's head (e.g. FGVC-Aircraft's 100 variants)
QUIET_CORES = 0.3  # other processes' average CPU use (cores) we accept while timing
ROUND_WAIT_S = 30.0  # idle wait for quiet between contended rounds of steps
CLK_TCK = os.sysconf("SC_CLK_TCK")


def num_cores() -> int:
  """CPU cores this process may run on."""
  return len(os.sched_getaffinity(0))


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU's model name and widest x86 vector ISA, e.g. 'AMD EPYC (avx2)'."""
  try:
    with open(cpuinfo, encoding="utf-8") as f:
      text = f.read()
  except OSError:
    return "unknown CPU"
  fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  flags = set(fields.get("flags", "").split())
  isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "no x86 vector flags")
  return f"{fields.get('model name', 'unknown CPU')} ({isa})"


def loadavg() -> float:
  """The 1-minute load average."""
  with open("/proc/loadavg", encoding="ascii") as f:
    return float(f.read().split()[0])


def peak_rss_mb() -> float:
  """This process's peak resident set size in MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _busy_seconds() -> float:
  """CPU seconds spent busy (all cores, all processes) since boot."""
  with open("/proc/stat", encoding="ascii") as f:
    fields = [int(v) for v in f.readline().split()[1:9]]
  idle = fields[3] + fields[4]  # idle + iowait
  return (sum(fields) - idle) / CLK_TCK


def _own_seconds() -> float:
  t = os.times()
  return t.user + t.system


class ForeignLoad:
  """Average number of cores kept busy by *other* processes over an interval."""

  def __init__(self):
    self.restart()

  def restart(self) -> None:
    self._wall, self._busy, self._own = time.perf_counter(), _busy_seconds(), _own_seconds()

  def cores(self) -> float:
    wall = max(time.perf_counter() - self._wall, 1e-9)
    foreign = (_busy_seconds() - self._busy) - (_own_seconds() - self._own)
    return max(foreign, 0.0) / wall

  def own_cores(self) -> float:
    """Average number of cores this process kept busy over the interval."""
    return (_own_seconds() - self._own) / max(time.perf_counter() - self._wall, 1e-9)


def wait_for_quiet(max_wait_s: float = 120.0, sample_s: float = 2.0,
                   threshold: float = QUIET_CORES) -> float:
  """Waits (while idle) until other processes use < `threshold` cores; returns the last sample."""
  deadline = time.perf_counter() + max_wait_s
  while True:
    probe = ForeignLoad()
    time.sleep(sample_s)
    cores = probe.cores()
    if cores < threshold or time.perf_counter() > deadline:
      return cores


@dataclasses.dataclass
class Timing:
  """Per-step wall times of the least contended timed round."""
  times_s: List[float]
  foreign_cores: float
  rounds: int
  own_cores: float = 0.0  # this process's average CPU use while timed

  @property
  def median_s(self) -> float:
    return statistics.median(self.times_s)


def time_steps(step: Callable[[], None], steps: int, warmup: int, rounds: int = 3,
               threshold: float = QUIET_CORES) -> Timing:
  """Times `step()` (which must block until its work is done) `steps` times.

  After `warmup` untimed calls, a round of `steps` timed calls is repeated
  (at most `rounds` times, after waiting up to ROUND_WAIT_S for a quiet
  machine) while other processes used >= `threshold` cores during it; the
  least contended round is returned.
  """
  for _ in range(warmup):
    step()
  best = None
  for r in range(1, rounds + 1):
    if r > 1:
      wait_for_quiet(ROUND_WAIT_S, threshold=threshold)
    load = ForeignLoad()
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      step()
      times.append(time.perf_counter() - start)
    timing = Timing(times, load.cores(), r, load.own_cores())
    if best is None or timing.foreign_cores < best.foreign_cores:
      best = timing
    if timing.foreign_cores < threshold:
      break
  best.rounds = r
  return best


# --- ftlab states and steps -------------------------------------------------


def half_blocks(model: str) -> int:
  """freeze_shallow's block count used here: half the model's trunk blocks (rounded down)."""
  from ftlab.models import get_spec  # pylint: disable=import-outside-toplevel
  return len(get_spec(model).blocks) // 2


def ftlab_config(model: str, image_size: int, strategy: str, dtype: str = "float32",
                 freeze_blocks: int = 0):
  """configs.default with the benchmark's overrides (`freeze_blocks=0`: half the blocks)."""
  from configs.default import get_config  # pylint: disable=import-outside-toplevel
  config = get_config()
  config.model.name = model
  config.model.dtype = dtype
  config.data.image_size = image_size
  config.strategy.name = strategy
  config.strategy.freeze_blocks = freeze_blocks or half_blocks(model)
  config.train.batch_size = BATCH
  return config


def build_state(config, total_steps: int = 1000):
  """(setup, state) as the training loop builds them, from random init."""
  import jax  # pylint: disable=import-outside-toplevel

  from ftlab.training import state as state_lib  # pylint: disable=import-outside-toplevel
  setup = state_lib.build_setup(config, NUM_CLASSES, total_steps, 0, 100)
  state = state_lib.initial_state(setup, config, jax.random.key(config.seed), load_weights=False)
  return setup, state


def random_batch(image_size: int, seed: int = 0, batch: int = BATCH) -> Dict:
  """Random uint8 NHWC images and int32 labels (numpy)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
          "label": rng.integers(0, NUM_CLASSES, batch, dtype=np.int32)}


def compile_step(fn, *args, donate: Tuple[int, ...] = (0,)):
  """(compiled executable, seconds to lower and compile) of `jax.jit(fn)` on `args`."""
  import jax  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  from ftlab.training import runtime  # pylint: disable=import-outside-toplevel
  compiled = jax.jit(fn, donate_argnums=donate).lower(*args).compile()
  seconds = time.perf_counter() - start
  runtime.release_free_memory()  # as ftlab's Trainer does after each compilation
  return compiled, seconds


def flops_of(compiled) -> float:
  """FLOPs of one call, from XLA's cost analysis of the compiled program (0 if unknown)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0))


class Stepper:
  """Calls a compiled step that donates its state (argument 0), keeping the newest state."""

  def __init__(self, compiled, state, *args):
    self.compiled, self.state, self.args = compiled, state, args

  def __call__(self) -> None:
    import jax  # pylint: disable=import-outside-toplevel
    self.state, out = self.compiled(self.state, *self.args)
    jax.block_until_ready((self.state, out))


def trainable_params(state) -> int:
  return int(sum(v.size for v in state.trainable.values()))


# --- output -----------------------------------------------------------------


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def format_table(rows: Sequence[Dict], columns: Sequence[Tuple[str, str, str]]) -> str:
  """A fixed-width table; `columns` are (key, header, format spec); missing values print '-'."""
  def cell(row, key, fmt):
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):
      return "-"
    return format(value, fmt) if fmt else str(value)

  body = [[cell(r, k, f) for k, _, f in columns] for r in rows]
  heads = [h for _, h, _ in columns]
  widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(heads)]
  lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
  lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
  return "\n".join(lines)


def write_json(path: str, rows: List[Dict]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=1)
    f.write("\n")
