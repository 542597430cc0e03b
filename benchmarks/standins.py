"""Stand-ins for timing the generation plumbing without an expert (and, `PointMassEnv`, without an MJX compile).

- `stand_in(K, S, A)`: (ladder, critic) of K random linear tanh policies and a linear critic with the call
  signatures `generate.make_generator` reads (the policy cost is negligible next to the physics).
- `random_params(init_fn, *args)`: arrays of the shapes `init_fn(*args)` returns, drawn with numpy (N(0, 0.05)):
  timing-equivalent weights without compiling the initializer (XLA takes ~30 s on a loaded 2-core CPU for the
  world model's init, more than the step being timed); `--fast-init` of the dry runs.
- `PointMassEnv`: a 1-D point mass as a brax `Env` with the simdist task interface the generator reads
  (`task.dims`, `task.split_state`, `action_size`, per-episode domain "mass"). It compiles in seconds, so dry runs
  (`benchmarks/gpu_suite.sh --dry-run`) and scaling checks exercise the generator, the storage and the sampler
  without MuJoCo; its figures say nothing about physics throughput (reported with env "toy").
"""

from __future__ import annotations

from typing import NamedTuple

from brax.envs.base import Env, State
import jax
import jax.numpy as jnp
import numpy as np


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


class PointMassTask:
  """Dims and state split of `PointMassEnv`: state = [pos, vel | pos^2, sin pos, cos pos | command]."""

  name = "toy"
  dims = {"proprio": 2, "extero": 3, "extero_shape": (3,), "action": 1, "command": 1, "privileged": 4}

  def split_state(self, s: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(proprio [..., 2], extero [..., 3], command [..., 1])."""
    return s[..., :2], s[..., 2:5], s[..., 5:]


class PointMassEnv(Env):
  """1-D point mass, mass ~ U[0.5, 2] per episode, command ~ U[-1, 1]; done when |pos| > 1.5."""

  dt = 0.05

  def __init__(self) -> None:
    self.task = PointMassTask()

  @property
  def observation_size(self) -> dict:
    """{"state": (6,), "privileged_state": (4,)}."""
    return {"state": (6,), "privileged_state": (4,)}

  @property
  def action_size(self) -> int:
    """One force."""
    return 1

  @property
  def backend(self) -> str:
    """Not a physics backend."""
    return "toy"

  def _obs(self, x: jax.Array, mass: jax.Array, c: jax.Array) -> dict:
    pos, vel = x[0], x[1]
    return {"state": jnp.stack([pos, vel, pos ** 2, jnp.sin(pos), jnp.cos(pos), c]),
            "privileged_state": jnp.stack([pos, vel, mass, c])}

  def reset(self, rng: jax.Array) -> State:
    """A new episode: mass, initial (pos, vel) and command drawn from `rng`."""
    k1, k2, k3, k4 = jax.random.split(rng, 4)
    mass = jax.random.uniform(k1, (), minval=0.5, maxval=2.0)
    x = jax.random.uniform(k2, (2,), minval=-0.5, maxval=0.5)
    c = jax.random.uniform(k3, (), minval=-1.0, maxval=1.0)
    return State(pipeline_state=x, obs=self._obs(x, mass, c), reward=jnp.zeros(()), done=jnp.zeros(()),
                 metrics={}, info={"domain": {"mass": mass}, "task": {"c": c}, "rng": k4})

  def step(self, state: State, action: jax.Array) -> State:
    """Semi-implicit Euler step; reward -(pos - command)^2."""
    mass, c = state.info["domain"]["mass"], state.info["task"]["c"]
    x = state.pipeline_state
    vel = x[1] + self.dt * action[0] / mass
    pos = x[0] + self.dt * vel
    x1 = jnp.stack([pos, vel])
    done = (jnp.abs(pos) > 1.5).astype(jnp.float32)
    return state.replace(pipeline_state=x1, obs=self._obs(x1, mass, c), reward=-((pos - c) ** 2), done=done)
