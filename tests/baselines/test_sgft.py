"""SGFT-SAC's pieces: potential-based shaping telescopes along a trajectory, and the sim value distils onto the
observations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

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


class _Table(nn.Module):
  """V(o) = o . phi: a potential table read through one-hot observations (SGFT's value-net interface)."""
  n: int

  @nn.compact
  def __call__(self, proprio, extero, command):
    del extero, command
    return proprio @ self.param("phi", nn.initializers.zeros, (self.n,))


def _chain_q(reward, next_state, not_done, gamma, iters=3000):
  q = np.zeros(reward.shape)
  for _ in range(iters):
    q = reward + gamma * not_done * q.max(axis=1)[next_state]
  return q


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_shaping_with_the_learners_discount_keeps_its_optimum_so_a_short_discount_stays_myopic(gamma):
  """A chain 0..N: from state s, 'left' moves to s-1, 'right' to s+1; reaching 0 ends with reward 1, reaching N
  ends with reward 10. Shaping by the long-horizon value Phi = V*_0.99 with the learner's own discount shifts every
  Q by -Phi(s) (Ng et al. 1999), so the learner's greedy policy is that of its own discount: at 0.9 it takes the
  near reward even though Phi points the other way (why `baselines.sgft.discount` = 0.9 left SGFT near zero on
  CartPole's swing-up), at 0.99 it goes for the far one."""
  n = 40
  s = np.arange(n + 1)
  next_state = np.stack([np.maximum(s - 1, 0), np.minimum(s + 1, n)], axis=1)
  reward = np.stack([(next_state[:, a] == 0) * 1.0 + (next_state[:, a] == n) * 10.0 for a in (0, 1)], axis=1)
  not_done = ((next_state != 0) & (next_state != n)).astype(np.float64)
  reward[[0, n]], not_done[[0, n]], next_state[[0, n]] = 0.0, 0.0, np.array([[0, 0], [n, n]])  # absorbing ends
  phi = _chain_q(reward, next_state, not_done, 0.99).max(axis=1)
  phi[[0, n]] = 0.0
  table = _Table(n + 1)
  params = {"phi": jnp.asarray(phi, jnp.float32)}
  dims = {"proprio": n + 1, "extero": 0, "extero_shape": (), "action": 1, "command": 0}
  scaler = model_lib.identity_scaler(dims)
  scaler["value"] = {"mean": jnp.asarray(0.0), "std": jnp.asarray(1.0)}
  eye = np.eye(n + 1, dtype=np.float32)
  z = np.zeros((2, n + 1, 0), np.float32)
  batch = {"proprio": np.stack([eye, eye]), "next_proprio": eye[next_state.T], "extero": z, "next_extero": z,
           "command": z, "next_command": z, "reward": reward.T.astype(np.float32),
           "not_done": not_done.T.astype(np.float32)}
  shaped = np.asarray(sgft.shape(table, params, scaler, batch, gamma)["reward"], np.float64).T
  q = _chain_q(reward, next_state, not_done, gamma)
  q_shaped = _chain_q(shaped, next_state, not_done, gamma)
  inner = s[1:n]
  np.testing.assert_allclose(q_shaped[inner], q[inner] - phi[inner, None], atol=1e-4)
  greedy = q_shaped[inner].argmax(axis=1)
  assert phi[2] > phi[1] > 1.0  # the potential says 'right' from state 1
  assert greedy[0] == (0 if gamma == 0.9 else 1)
