"""Data parallelism: a 1-D mesh over every device, batch sharded, state replicated.

BatchNorm statistics are computed over the global batch (a cross-device
mean): the compiled program reduces over the sharded batch axis.
"""
import dataclasses
import os
from typing import Optional

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np


@dataclasses.dataclass
class Devices:
  mesh: Mesh

  @classmethod
  def create(cls) -> "Devices":
    return cls(Mesh(np.asarray(jax.devices()), ("data",)))

  @property
  def count(self) -> int:
    return self.mesh.devices.size

  def check_batch(self, batch_size: int, key: str) -> None:
    if batch_size % self.count:
      raise ValueError(f"{key}={batch_size} does not divide over {self.count} devices; "
                       f"use a multiple of {self.count}")

  def replicate(self, tree):
    return jax.device_put(tree, NamedSharding(self.mesh, P()))

  def shard_batch(self, batch: dict) -> dict:
    """Assembles the global batch from this process's slice of it."""
    sharding = NamedSharding(self.mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def initialize(coordinator_address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int]) -> None:
  """Joins a multi-process (multi-host) run; a no-op for a single process.

  Each argument falls back to the environment (JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES, JAX_PROCESS_ID). CPU processes talk through gloo.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "1"))
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if num_processes <= 1:
    return
  if not coordinator_address or process_id is None:
    raise ValueError("a multi-process run needs --coordinator_address and --process_id "
                     f"(got {coordinator_address!r}, {process_id!r})")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
