"""Shared stand-ins for the data tests: a toy brax env (fast to compile), a linear policy ladder and critic.

ToyEnv: a 1-D point mass. state x = (pos, vel), per-episode domain `mass` ~ U[0.5, 2], command c ~ U[-1, 1].
  obs["state"] = [pos, vel | pos^2, sin(pos), cos(pos) | c]   (P = 2, E = 3, C = 1; noise-free)
  obs["privileged_state"] = [pos, vel, mass, c]              (S = 4)
  step: vel' = vel + dt * a / mass, pos' = pos + dt * vel'; reward r = -(pos' - c)^2 (uses s_{k+1});
  done when |pos'| > 1.5 (so episodes have varying lengths) or by the episode-length cut.
Ladder: K = 4 linear policies a = W_k @ priv + b_k (unbounded, so clipping is exercised); the expert (id 3) is a PD
controller to the command. Critic: V(priv) = w @ priv + b with zero weight on mass (checkable from stored obs).
"""

from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import tempfile
from typing import NamedTuple

from brax.envs.base import Env, State
import jax
import jax.numpy as jnp
import numpy as np

DT = 0.1
CRITIC_W = np.array([-1.0, -0.5, 0.0, 1.0], np.float32)
CRITIC_B = np.float32(0.25)


class ToyTask:
  name = "toy"
  dims = {"proprio": 2, "extero": 3, "extero_shape": (3,), "action": 1, "command": 1, "privileged": 4}

  def split_state(self, s):
    return s[..., :2], s[..., 2:5], s[..., 5:]


class ToyEnv(Env):
  def __init__(self):
    self.task = ToyTask()

  @property
  def observation_size(self):
    return {"state": (6,), "privileged_state": (4,)}

  @property
  def action_size(self) -> int:
    return 1

  @property
  def backend(self) -> str:
    return "toy"

  def _obs(self, x, mass, c):
    pos, vel = x[0], x[1]
    state = jnp.stack([pos, vel, pos ** 2, jnp.sin(pos), jnp.cos(pos), c])
    return {"state": state, "privileged_state": jnp.stack([pos, vel, mass, c])}

  def reset(self, rng):
    k1, k2, k3, k4 = jax.random.split(rng, 4)
    mass = jax.random.uniform(k1, (), minval=0.5, maxval=2.0)
    x = jax.random.uniform(k2, (2,), minval=-0.5, maxval=0.5)
    c = jax.random.uniform(k3, (), minval=-1.0, maxval=1.0)
    return State(pipeline_state=x, obs=self._obs(x, mass, c), reward=jnp.zeros(()), done=jnp.zeros(()),
                 metrics={}, info={"domain": {"mass": mass}, "task": {"c": c}, "rng": k4})

  def step(self, state, action):
    mass, c = state.info["domain"]["mass"], state.info["task"]["c"]
    x = state.pipeline_state
    vel = x[1] + DT * action[0] / mass
    pos = x[0] + DT * vel
    x1 = jnp.stack([pos, vel])
    reward = -((pos - c) ** 2)
    done = (jnp.abs(pos) > 1.5).astype(jnp.float32)
    return state.replace(pipeline_state=x1, obs=self._obs(x1, mass, c), reward=reward, done=done)


class Ladder(NamedTuple):
  params: dict
  apply_fn: object
  iterations: list
  expert_id: int


def linear_apply(params, policy_id, priv):
  return params["w"][policy_id] @ priv + params["b"][policy_id]


def make_ladder() -> Ladder:
  w = np.array([[[0.0, 0.0, 0.0, 0.0]],          # "iteration 0": zero action
                [[3.0, 0.0, 0.0, 0.0]],          # unstable: pushes away from 0
                [[-1.0, -0.2, 0.0, 1.0]],        # weak controller
                [[-4.0, -2.0, 0.0, 4.0]]], np.float32)  # expert PD to the command
  b = np.array([[0.0], [0.3], [0.0], [0.0]], np.float32)
  return Ladder({"w": jnp.asarray(w), "b": jnp.asarray(b)}, linear_apply, [0, 10, 50, 100], 3)


def make_critic():
  return ({"w": jnp.asarray(CRITIC_W), "b": jnp.asarray(CRITIC_B)}, lambda p, s: p["w"] @ s + p["b"])


def gen_config(**kw):
  from simdist_jax.data.generate import GenConfig
  base = dict(num_envs=40, num_steps=300, shard_steps=100, episode_length=60, p_expert=0.5, sigma_min=0.1,
              sigma_max=1.0, noisy_len=(1, 8), clean_len=(5, 20), never_noised_frac=0.1, init_noisy_prob=0.5)
  base.update(kw)
  return GenConfig(**base)


@functools.lru_cache(maxsize=None)
def generator():
  """(env, ladder, critic, gcfg, (init_fn, chunk_fn)) built once per session (compiles once)."""
  from simdist_jax.data.generate import make_generator
  env, ladder, critic, gcfg = ToyEnv(), make_ladder(), make_critic(), gen_config()
  return env, ladder, critic, gcfg, make_generator(env, ladder, critic, gcfg)


def generate_into(out: pathlib.Path, **kw):
  from simdist_jax.data.generate import generate
  env, ladder, critic, gcfg, gen = generator()
  return generate(env, ladder, critic, gcfg, out, seed=0, config_record={"tag": "toy"}, log=lambda s: None,
                  generator=gen, **kw)


@functools.lru_cache(maxsize=None)
def generated_dataset() -> pathlib.Path:
  """Generates the toy dataset once per test session (uninterrupted); returns its directory."""
  out = pathlib.Path(tempfile.mkdtemp(prefix="simdist_data_toy_"))
  atexit.register(shutil.rmtree, out, True)
  generate_into(out)
  return out
