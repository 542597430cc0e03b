"""A 1-D point mass with the simdist task interface the data generator reads: a stand-in env that compiles in
seconds, for dry runs (`benchmarks/gpu_suite.sh --dry-run`), scaling checks and the data tests.

State x = (pos, vel), per-episode domain `mass` ~ U[0.5, 2], command c ~ U[-1, 1].
  obs["state"] = [pos, vel | pos^2, sin(pos), cos(pos) | c]   (P = 2, E = 3, C = 1; noise-free)
  obs["privileged_state"] = [pos, vel, mass, c]              (S = 4)
  step: vel' = vel + dt * a / mass, pos' = pos + dt * vel'; reward r = -(pos' - c)^2 (uses s_{k+1});
  done when |pos'| > 1.5 (so episodes have varying lengths). Its figures say nothing about physics throughput.
"""

from __future__ import annotations

from brax.envs.base import Env, State
import jax
import jax.numpy as jnp


class PointMassTask:
  """Dims and state split of `PointMassEnv`: state = [pos, vel | pos^2, sin pos, cos pos | command]."""

  name = "toy"
  dims = {"proprio": 2, "extero": 3, "extero_shape": (3,), "action": 1, "command": 1, "privileged": 4}

  def split_state(self, s: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(proprio [..., 2], extero [..., 3], command [..., 1])."""
    return s[..., :2], s[..., 2:5], s[..., 5:]


class PointMassEnv(Env):
  """1-D point mass, mass ~ U[0.5, 2] per episode, command ~ U[-1, 1]; done when |pos| > 1.5."""

  def __init__(self, dt: float = 0.05) -> None:
    self.dt = float(dt)
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
