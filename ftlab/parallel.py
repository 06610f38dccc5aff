"""Data parallelism: a 1-D mesh over every device, batch sharded, state replicated.

BatchNorm statistics are computed over the global batch (a cross-device
mean): the compiled program reduces over the sharded batch axis.
"""
import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


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
