"""Shared fixtures: the CartPole config and jitted env functions, built once per session."""

import pathlib

import jax
import pytest

from simdist_jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CARTPOLE = str(ROOT / "experiments" / "configs" / "cartpole.py")


@pytest.fixture(scope="session")
def cartpole_cfg():
  return config_lib.load_config(CARTPOLE + ":small")


@pytest.fixture(scope="session")
def cartpole_env(cartpole_cfg):
  from simdist_jax.envs.registry import make_env
  env = make_env(cartpole_cfg, "sim")
  return env, jax.jit(env.reset), jax.jit(env.step)
