"""How many programs a run compiled, how long that took, and how many the persistent cache served.

Read from JAX's own monitoring events (jax 0.10.2): every XLA compilation,
whether it compiles or loads from the persistent compilation cache, records
'/jax/core/compile/backend_compile_duration' (its seconds); the cache records
'/jax/compilation_cache/cache_hits' and '/jax/compilation_cache/cache_misses'.
A study logs these per trial to show that trials differing only in
hyperparameter values share their program (ftlab/training/optim.py).
"""
import threading

from jax import monitoring

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
HIT_EVENT = "/jax/compilation_cache/cache_hits"
MISS_EVENT = "/jax/compilation_cache/cache_misses"


class CompileStats:
  """Counts this process's compilations between `start()` and `stop()`."""

  def __init__(self):
    self.programs, self.seconds, self.cache_hits, self.cache_misses = 0, 0.0, 0, 0
    self._lock = threading.Lock()

  def _on_duration(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event == COMPILE_EVENT:
      with self._lock:
        self.programs += 1
        self.seconds += duration

  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    with self._lock:
      self.cache_hits += event == HIT_EVENT
      self.cache_misses += event == MISS_EVENT

  def start(self) -> "CompileStats":
    monitoring.register_event_duration_secs_listener(self._on_duration)
    monitoring.register_event_listener(self._on_event)
    return self

  def stop(self) -> None:
    monitoring.unregister_event_duration_listener(self._on_duration)
    monitoring.unregister_event_listener(self._on_event)

  def summary(self) -> dict:
    """results.json's 'compile': programs compiled or loaded, their seconds, cache hits and misses."""
    return {"programs": self.programs, "seconds": self.seconds, "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses}
