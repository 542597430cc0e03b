"""Shared stand-ins for the data tests: a toy brax env (fast to compile), a linear policy ladder and critic.

ToyEnv: the 1-D point mass of `simdist_jax.envs.point_mass` at dt = DT. state x = (pos, vel), per-episode domain `mass` ~ U[0.5, 2], command c ~ U[-1, 1].
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

import jax.numpy as jnp
import numpy as np

from simdist_jax.envs.point_mass import PointMassEnv, PointMassTask

DT = 0.1
CRITIC_W = np.array([-1.0, -0.5, 0.0, 1.0], np.float32)
CRITIC_B = np.float32(0.25)


ToyTask = PointMassTask


class ToyEnv(PointMassEnv):
  """The point mass at the data tests' control period DT."""

  def __init__(self):
    super().__init__(dt=DT)


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
