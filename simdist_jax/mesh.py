"""Data-parallel device meshes from `run.mesh`: one "data" axis, params replicated, batches sharded along it.

`run.mesh` (an int): 0 or 1 = one device, the default (no mesh at all: every function here is then the identity, so
the compiled programs are exactly the single-device ones); n >= 2 = the first n of `jax.devices()`; -1 = every
device. `config.load_config` checks it once (`validation.py`): n <= `jax.device_count()` and n divides the batch
sizes split over it (`model.batch_size`, `model.finetune.batch_size`, `data.num_envs`).

The pattern (pretraining, finetuning, data generation): the host places the state replicated
(`replicate`, `NamedSharding(mesh, P())`) and the batch sharded along its batch axis (`shard`,
`NamedSharding(mesh, P(..., "data"))`) at the call site; inside the SAME jitted step, `constrain` pins the batch
(drawn inside the scan) and the carried state to those shardings, and jit/GSPMD inserts the all-reduce of the
gradient (a mean over the batch). Results go back to the default device (`to_default_device`) so callers mix them
with single-device arrays as before. Random draws do not depend on the sharding (`jax_threefry_partitionable`,
on by default), so n devices see the same batches, dropout masks and noise as one; only the order of the float
reductions differs (losses agree to rounding, not bitwise).

Multi-host (`simdist_jax.distributed`, `run.num_processes` >= 2 with `run.mesh = -1`): the mesh spans every
process's devices (`jax.devices()`); `replicate` / `shard` then build global arrays with
`jax.make_array_from_callback` from the value every process holds (each places its own devices' slices), and
`to_default_device` brings replicated results to this process's first device through the host.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def resolve_size(value: int, device_count: int) -> int:
  """Devices along the data axis for a `run.mesh` value: 0/1 -> 1, -1 -> `device_count`, n -> n."""
  value = int(value)
  if value in (0, 1):
    return 1
  if value == -1:
    return int(device_count)
  if value < -1:
    raise ValueError(f"run.mesh={value}: must be -1 (every device), 0 or 1 (one device) or n >= 2 devices")
  return value


def problems(value: int, device_count: int, batch_sizes: Mapping[str, int]) -> list[str]:
  """`run.mesh=...: must ...` messages (empty when fine) for `value` on `device_count` devices, where each
  `batch_sizes[key]` (e.g. {"model.batch_size": 128}) must split evenly over the devices."""
  n = resolve_size(value, device_count)
  if n > device_count:
    return [f"run.mesh={value}: must be <= jax.device_count()={device_count} (devices along the '{AXIS}' axis; "
            f"-1 = every device)"]
  return [f"run.mesh={value}: must divide {key}={size} ({n} devices, each takes an equal share of the batch)"
          for key, size in batch_sizes.items() if int(size) % n]


def make_mesh(size: int) -> Mesh | None:
  """A 1-D mesh over the first `size` devices (axis "data"), or None for one device (no mesh)."""
  size = int(size)
  if size <= 1:
    return None
  devices = jax.devices()
  if size > len(devices):
    raise ValueError(f"run.mesh={size}: must be <= jax.device_count()={len(devices)}")
  return Mesh(np.asarray(devices[:size]), (AXIS,))


def from_config(cfg: Any) -> Mesh | None:
  """The mesh of `cfg.run.mesh` (absent -> 0: one device, None)."""
  run = cfg["run"] if "run" in cfg else {}
  value = int(run.get("mesh", 0)) if hasattr(run, "get") else 0
  if value in (0, 1):
    return None
  return make_mesh(resolve_size(value, jax.device_count()))


def size(mesh: Mesh | None) -> int:
  """Devices along the data axis (1 without a mesh)."""
  return 1 if mesh is None else int(mesh.shape[AXIS])


def check_divisible(mesh: Mesh | None, sizes: Mapping[str, int]) -> None:
  """ValueError naming the key when a batch size (`{"model.batch_size": 128}`) does not split evenly over the
  mesh (the same rule `validation.py` applies at load, for callers that bypass it)."""
  n = size(mesh)
  for key, s in sizes.items():
    if int(s) % n:
      raise ValueError(f"{key}={s} does not split over the {n} devices of run.mesh (needs {key} % {n} == 0)")


def batch_spec(axis: int = 0) -> PartitionSpec:
  """`P(None, ..., "data")`: sharded along dimension `axis`, replicated along every other."""
  return PartitionSpec(*([None] * axis), AXIS)


def spans_processes(mesh: Mesh | None) -> bool:
  """Whether `mesh` holds devices of other processes (a multi-host run, `simdist_jax.distributed`)."""
  return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def _global(x: Any, sharding: NamedSharding) -> jax.Array:
  """A host (or this process's) value as a global array of `sharding`: every process holds the same value and
  contributes the slices of its own devices (`make_array_from_callback`; no cross-process check or copy)."""
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(_global(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _put(tree: Any, mesh: Mesh, spec: PartitionSpec) -> Any:
  sharding = NamedSharding(mesh, spec)
  if spans_processes(mesh):
    return jax.tree.map(lambda x: _global(x, sharding), tree)
  return jax.device_put(tree, sharding)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
  """`tree` with every leaf replicated on every device of `mesh` (identity without a mesh). On a mesh over
  several processes every process must pass the same values (host or its own devices' arrays)."""
  if mesh is None:
    return tree
  return _put(tree, mesh, PartitionSpec())


def shard(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
  """`tree` with every leaf split along dimension `axis` over the data axis (identity without a mesh).

  Shapes: each leaf [..., B, ...] with B (at `axis`) a multiple of the mesh size; device d holds rows
  d * B/n .. (d+1) * B/n - 1. On a mesh over several processes every process passes the whole (same) value and
  places the rows of its own devices.
  """
  if mesh is None:
    return tree
  return _put(tree, mesh, batch_spec(axis))


def constrain(tree: Any, mesh: Mesh | None, axis: int | None = 0) -> Any:
  """Inside jit: `with_sharding_constraint` of every leaf to sharded along `axis` (None: replicated); identity
  without a mesh (so the traced program is the single-device one)."""
  if mesh is None:
    return tree
  spec = PartitionSpec() if axis is None else batch_spec(axis)
  return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, spec))


def to_default_device(tree: Any, mesh: Mesh | None) -> Any:
  """`tree` moved to this process's first device, `jax.local_devices()[0]` (identity without a mesh): replicated
  results, usable next to single-device arrays again (on a mesh over several processes, through the host)."""
  if mesh is None:
    return tree
  device = jax.local_devices()[0]
  if spans_processes(mesh):
    def local(x: Any) -> Any:
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(local(jax.random.key_data(x)), impl=jax.random.key_impl(x))
      return jax.device_put(np.asarray(x.addressable_data(0)), device)  # replicated: every copy is the value
    return jax.tree.map(local, tree)
  return jax.device_put(tree, device)
