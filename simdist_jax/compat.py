"""Fallbacks for JAX APIs that the pinned brax still calls but newer JAX removed.

`jax.device_put_replicated(x, devices)` was deprecated in JAX 0.8 and removed in 0.10 (google/brax#671); brax 0.14.2
PPO calls it to replicate its `TrainingState` before the pmapped epoch. `install()` adds a replacement built on
`jax.device_put` with a `NamedSharding` over a 1-D device mesh, and ONLY when the attribute is missing, so on JAX
versions that still have the original nothing changes.

Shapes: D = number of devices. Every leaf x[...] becomes [D, ...], shard d on device d (what the original returned).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def device_put_replicated(x: Any, devices: Sequence[jax.Device]) -> Any:
  """Replicates every leaf of `x` across `devices` along a new leading axis [D, ...], one shard per device.

  Same values, shapes and per-device placement as `jax.device_put_replicated` (JAX < 0.10).
  """
  devices = list(devices)
  if not devices:
    raise ValueError("device_put_replicated: `devices` is empty")
  sharding = NamedSharding(Mesh(np.array(devices), ("devices",)), PartitionSpec("devices"))

  def put(leaf):
    leaf = jnp.asarray(leaf)
    stacked = jnp.broadcast_to(leaf[None], (len(devices),) + leaf.shape)
    return jax.device_put(stacked, sharding)

  return jax.tree.map(put, x)


def has_native_device_put_replicated(module: Any = jax) -> bool:
  """True when `module` (JAX) still ships `device_put_replicated` (quietly: no deprecation warning)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    return hasattr(module, "device_put_replicated")


def install(module: Any = jax) -> bool:
  """Installs the fallbacks that `module` (JAX) lacks. Idempotent. Returns True when something was installed."""
  if has_native_device_put_replicated(module):
    return False
  module.device_put_replicated = device_put_replicated
  return True
