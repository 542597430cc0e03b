"""Advantage calibration: the probe's (plan, pi) scores match hand-stepped twin futures, and the summary's gate
figures are the hand-worked ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.analysis import calibration
from simdist_jax.analysis import oracle
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_real_env, make_task
from simdist_jax.planner import controller as ctrl_lib
from simdist_jax.planner import mppi

T, H_PLAN, GAMMA = 10, 5, 0.9


class _ActionCostModel:
  """Stand-in whose heads predict r_k = -a_k^2 and V = 0 whatever the latents: its predicted return of a chunk is
  -sum_{k<h} gamma^k a_k^2, and the same on the encoder of any true future (so A_pred = A_heads by construction)."""

  class spec:  # noqa: N801
    history, horizon = 2, T

  def context(self, variables, ph, ah, p, e):
    return p

  def policy_chunk(self, variables, ctx, commands):
    return jnp.full((T, 1), 0.2)

  def encode(self, variables, p, e):
    return p

  def predict_latents(self, variables, ctx, actions):
    return jnp.zeros((T, 5))

  def predict_returns(self, variables, ctx, z, actions, commands):
    return -jnp.square(actions[:, 0]), jnp.zeros((T,))


@pytest.mark.slow
def test_pair_scores_are_the_plan_and_pi_in_that_order(cartpole_cfg):
  """Predicted and heads = -sum gamma^k a_k^2 of (plan, pi = 0.2); critic (a zero critic) = the twin's own
  discounted rewards when it steps each chunk's first h actions from the probed state."""
  task = make_task(cartpole_cfg)
  real = make_real_env(cartpole_cfg, "sim")
  mjx_env = MjxEnv(task, make_domain(cartpole_cfg, "sim", task), sim_domain=make_domain(cartpole_cfg, "sim", task))
  cfg = mppi.PlannerConfig(num_samples=8, num_prior_samples=0, num_elites=2, horizon=H_PLAN, discount=GAMMA)
  fn = calibration.make_pair_scores(cfg, _ActionCostModel(), mjx_env, lambda params, priv: jnp.float32(0.0))
  real.reset(jax.random.PRNGKey(4))
  for a in np.linspace(-1, 1, 20, dtype=np.float32):
    real.step(np.array([a]))
  snap = real.get_state()
  state = ctrl_lib.init_controller(cfg, task.dims, 2, jax.random.PRNGKey(0))
  plan = jnp.asarray(np.linspace(-0.8, 0.8, H_PLAN, dtype=np.float32)[:, None])
  proprio = jnp.zeros((int(task.dims["proprio"]),))
  out = fn(None, None, state, proprio, jnp.zeros((0,)), jnp.zeros((T + 1, 0)),
           {k: snap[k] for k in ("params", "qpos", "qvel", "task_info", "rng")}, plan)
  disc = GAMMA ** np.arange(H_PLAN)
  cost = lambda c: -float(np.sum(disc * np.asarray(c)[:, 0] ** 2))  # noqa: E731
  expect = [cost(plan), cost(np.full((H_PLAN, 1), 0.2))]
  np.testing.assert_allclose(np.asarray(out["predicted"]), expect, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out["heads"]), expect, rtol=1e-5)
  for i, chunk in enumerate((np.asarray(plan), np.full((H_PLAN, 1), 0.2, np.float32))):
    real.set_state(snap)
    rewards = [real.step(a)[1] for a in chunk]
    assert float(out["critic"][i]) == pytest.approx(float(np.sum(disc * np.asarray(rewards))), abs=1e-3)
  assert oracle.SCORERS  # the truths come from the oracle's scorers


def test_summary_gate_figures_hand_worked():
  """A_pred = [0.5, 0.2, -0.1, 0.05], A_true = [0.4, -0.1, -0.2, 0.1]: at m = 0.1 the gate opens on 2 of 4 states
  and collects (0.4 - 0.1) / 4 = 0.075 with 1 of 2 right; at m = 0 on 3 of 4, (0.4 - 0.1 + 0.1) / 4 = 0.1, 2 of 3
  right; signs agree on 3 of 4."""
  pred, true = [0.5, 0.2, -0.1, 0.05], [0.4, -0.1, -0.2, 0.1]
  rows = [{"predicted/plan": p + 1.0, "predicted/pi": 1.0, "heads/plan": t, "heads/pi": 0.0,
           "critic/plan": 2 * t, "critic/pi": 0.0} for p, t in zip(pred, true, strict=True)]
  s = calibration.summarize(rows, margins=(0.0, 0.1))
  assert s["n_states"] == 4
  assert s["heads/margin_0.1/open"] == 0.5
  assert s["heads/margin_0.1/gain"] == pytest.approx(0.075)
  assert s["heads/margin_0.1/right_when_open"] == 0.5
  assert s["heads/margin_0/open"] == 0.75
  assert s["heads/margin_0/gain"] == pytest.approx(0.1)
  assert s["heads/margin_0/right_when_open"] == pytest.approx(2 / 3)
  assert s["critic/margin_0/gain"] == pytest.approx(0.2)
  assert s["heads/sign_agreement"] == 0.75
  assert s["heads/corr"] == pytest.approx(np.corrcoef(pred, true)[0, 1], rel=1e-6)
  assert s["heads/mean_true_advantage"] == pytest.approx(0.05)
