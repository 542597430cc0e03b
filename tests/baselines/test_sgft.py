"""SGFT-SAC's pieces: potential-based shaping telescopes along a trajectory, and the sim value distils onto the
observations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.baselines import iql
from simdist_jax.baselines import sgft
from simdist_jax.data import scaler as scaler_lib
from simdist_jax.data import windows
from simdist_jax.world_model import model as model_lib
from tests.world_model import tiny_config

DIMS = {"proprio": 2, "extero": 0, "extero_shape": (), "action": 1, "command": 0}


def _value_and_scaler():
  spec = model_lib.make_spec(tiny_config(DIMS).model, DIMS)
  value = iql.Value(spec, (16,))
  params = value.init(jax.random.PRNGKey(3), jnp.zeros(2), jnp.zeros(0), jnp.zeros(0))["params"]
  scaler = model_lib.identity_scaler(DIMS)
  scaler["value"] = {"mean": jnp.asarray(5.0), "std": jnp.asarray(2.0)}  # raw V = 5 + 2 z
  return spec, value, params, scaler


def _trajectory(n=12, terminal_last=False):
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(n + 1, 2)).astype(np.float32)
  z = np.zeros((1, n, 0), np.float32)
  not_done = np.ones((1, n), np.float32)
  if terminal_last:
    not_done[0, -1] = 0.0
  return {"proprio": obs[None, :-1], "extero": z, "command": z, "action": np.zeros((1, n, 1), np.float32),
          "reward": rng.normal(size=(1, n)).astype(np.float32), "next_proprio": obs[None, 1:], "next_extero": z,
          "next_command": z, "not_done": not_done}, obs


def test_shaping_telescopes_along_a_trajectory():
  _, value, params, scaler = _value_and_scaler()
  batch, obs = _trajectory()
  v = lambda o: float(model_lib.unscale(scaler, "value", value.apply({"params": params}, jnp.asarray(o),  # noqa: E731
                                                                      jnp.zeros(0), jnp.zeros(0))))
  shaped = np.asarray(sgft.shape(value, params, scaler, batch, 1.0)["reward"])
  # gamma = 1: sum of shaped rewards = sum of rewards + V(o_T) - V(o_0)
  assert shaped.sum() == pytest.approx(batch["reward"].sum() + v(obs[-1]) - v(obs[0]), abs=1e-4)
  g = 0.9
  shaped = np.asarray(sgft.shape(value, params, scaler, batch, g)["reward"])[0]
  assert shaped[3] == pytest.approx(batch["reward"][0, 3] + g * v(obs[4]) - v(obs[3]), abs=1e-5)
  term, obs = _trajectory(terminal_last=True)
  shaped = np.asarray(sgft.shape(value, params, scaler, term, g)["reward"])[0]
  assert shaped[-1] == pytest.approx(term["reward"][0, -1] - v(obs[-2]), abs=1e-5)  # no potential after the end


def test_the_sim_value_distils_onto_the_observations():
  spec, value, _, _ = _value_and_scaler()
  rng = np.random.default_rng(1)
  m = 4000
  proprio = rng.normal(size=(m, 2)).astype(np.float32)
  arrays = {"proprio": proprio, "extero": np.zeros((m, 0), np.float32), "action": np.zeros((m, 1), np.float32),
            "command": np.zeros((m, 0), np.float32), "reward": np.zeros(m, np.float32),
            "value": (10.0 + 3.0 * proprio[:, 0] - proprio[:, 1] ** 2).astype(np.float32),
            "expert_flag": np.ones(m, np.uint8), "mask": np.ones(m, np.uint8)}
  ids = np.repeat(np.arange(100, dtype=np.int32), 40)
  stats = scaler_lib.compute_stats(arrays, 1e-4)
  ds = windows.WindowDataset(arrays, ids, 0, 1, stats, DIMS, 0.2, jax.random.PRNGKey(0), 0, 0)
  _, m_ = sgft.distill_value(value, ds, model_lib.make_scaler(stats), jax.random.PRNGKey(0), 1500, 128, 3e-3,
                             log=lambda s: None)
  assert m_["sgft/value_heldout_mse"] < 0.05 * m_["sgft/value_heldout_var"], m_
