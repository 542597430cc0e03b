"""IQL: on a one-state dataset of two actions the value converges to the configured expectile of Q, the critic to the
rewards, and the advantage-weighted actor moves toward the better action."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.baselines import iql
from simdist_jax.world_model import model as model_lib
from tests.world_model import tiny_config

DIMS = {"proprio": 1, "extero": 0, "extero_shape": (), "action": 1, "command": 0}


def _cfg(**kw):
  c = dict(hidden=(32, 32), discount=0.0, tau=0.05, expectile=0.7, temperature=3.0, lr=3e-3, offline_steps=1, utd=1,
           batch_size=128, sim_share=0.5, update_chunk=100, bc_init=False)
  c.update(kw)
  return iql.IQLConfig(**c)


def _batches(rng, g, b=128):
  # actions -1 (reward 0) and +1 (reward 1), equally often, in one state; discount 0: Q(s, a) = r(a)
  a = np.where(rng.uniform(size=(g, b, 1)) < 0.5, -1.0, 1.0).astype(np.float32)
  z = np.zeros((g, b, 0), np.float32)
  ones = np.ones((g, b, 1), np.float32)
  return {"proprio": ones, "extero": z, "command": z, "action": a, "reward": (a[..., 0] > 0).astype(np.float32),
          "next_proprio": ones, "next_extero": z, "next_command": z, "not_done": np.ones((g, b), np.float32)}


@pytest.mark.parametrize("expectile", [0.5, 0.7, 0.9])
def test_value_is_the_expectile_and_the_actor_prefers_the_better_action(expectile):
  spec = model_lib.make_spec(tiny_config(DIMS).model, DIMS)
  nets = iql.make_nets(spec, _cfg(expectile=expectile))
  state = iql.init_state(nets, jax.random.PRNGKey(0))
  scaler = model_lib.identity_scaler(DIMS)
  low, high = jnp.array([-1.0]), jnp.array([1.0])
  rng = np.random.default_rng(0)
  for _ in range(15):
    state, m = iql.update(nets, state, scaler, _batches(rng, 100), low, high)
  obs = (jnp.ones(1), jnp.zeros(0), jnp.zeros(0))
  v = float(nets.value.apply({"params": state.value}, *obs))
  # the tau-expectile of {0, 1} equally likely is tau: tau (1 - v) = (1 - tau) v
  assert v == pytest.approx(expectile, abs=0.06), (v, m)
  q = nets.critic.apply({"params": state.critic}, *obs, jnp.array([-1.0])), nets.critic.apply(
      {"params": state.critic}, *obs, jnp.array([1.0]))
  np.testing.assert_allclose(np.asarray(q[0]), 0.0, atol=0.06)
  np.testing.assert_allclose(np.asarray(q[1]), 1.0, atol=0.06)
  mu, _ = nets.actor.apply({"params": state.actor}, *obs)
  assert float(jnp.tanh(mu[0])) > 0.5  # exp(beta A) weights the rewarded action about 20x more
  assert int(state.steps) == 1500


def test_gaussian_log_prob_hand_case():
  # N(0.5; 0, 1): -0.125 - 0.5 log(2 pi); with std e: -(0.5 / e)^2 / 2 - 1 - 0.5 log(2 pi)
  lp = iql.gaussian_log_prob(jnp.array([0.5, 0.5]), jnp.zeros(2), jnp.array([0.0, 1.0]))
  half_log_2pi = 0.5 * np.log(2 * np.pi)
  assert float(lp) == pytest.approx(-0.125 - half_log_2pi - (0.125 / np.e ** 2) - 1.0 - half_log_2pi, rel=1e-5)
