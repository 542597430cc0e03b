"""Stand-ins for timing the generation plumbing without an expert (and, `PointMassEnv`, without an MJX compile).

- `stand_in(K, S, A)`: (ladder, critic) of K random linear tanh policies and a linear critic with the call
  signatures `generate.make_generator` reads (the policy cost is negligible next to the physics).
- `random_params(init_fn, *args)`: arrays of the shapes `init_fn(*args)` returns, drawn with numpy (N(0, 0.05)):
  timing-equivalent weights without compiling the initializer (XLA takes ~30 s on a loaded 2-core CPU for the
  world model's init, more than the step being timed); `--fast-init` of the dry runs.
- `PointMassEnv` (`simdist_jax.envs.point_mass`, shared with the data tests): a 1-D point mass as a brax `Env`
  with the simdist task interface the generator reads (`task.dims`, `task.split_state`, `action_size`, per-episode
  domain "mass"). It compiles in seconds, so dry runs
  (`benchmarks/gpu_suite.sh --dry-run`) and scaling checks exercise the generator, the storage and the sampler
  without MuJoCo; its figures say nothing about physics throughput (reported with env "toy").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.envs.point_mass import PointMassEnv, PointMassTask  # noqa: F401  (re-exported)


class StandInLadder(NamedTuple):
  """A ladder-shaped stand-in (linear tanh policies) with the fields the generator reads."""

  params: dict
  apply_fn: object
  iterations: list
  expert_id: int


def stand_in(num_policies: int, s_dim: int, a_dim: int, seed: int = 0):
  """(ladder, critic) stand-ins of random linear policies and a linear critic, for timing without an expert."""
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(0, 0.5, (num_policies, a_dim, s_dim)), jnp.float32)
  b = jnp.zeros((num_policies, a_dim), jnp.float32)
  ladder = StandInLadder({"w": w, "b": b}, lambda p, i, s: jnp.tanh(p["w"][i] @ s + p["b"][i]),
                         list(range(num_policies)), num_policies - 1)
  critic = ({"w": jnp.asarray(rng.normal(0, 0.1, (s_dim,)), jnp.float32)}, lambda p, s: p["w"] @ s)
  return ladder, critic


def random_params(init_fn, *args, seed: int = 0):
  """A pytree of the shapes/dtypes of `init_fn(*args)` (found with `jax.eval_shape`, nothing compiled) filled with
  N(0, 0.05) draws from numpy."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.05, s.shape), s.dtype), jax.eval_shape(init_fn, *args))
