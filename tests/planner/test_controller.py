"""Closed-loop controller: functional history buffer, front padding, stabilising a numpy double integrator."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.planner import controller
from simdist_jax.planner import mppi
from tests.planner import lqr_gains
from tests.planner import make_linear_model
from tests.planner import make_variables

DT = 0.1
F = np.array([[1.0, DT], [0.0, 1.0]])  # double integrator, state (pos, vel)
G = np.array([[0.5 * DT**2], [DT]])
Q, R, P_TERM = np.diag([1.0, 0.1]), np.array([[0.01]]), np.diag([20.0, 5.0])
T, H = 10, 3
DIMS = {"proprio": 2, "extero": 0, "extero_shape": (0,), "action": 1, "command": 0}
CFG = mppi.PlannerConfig(num_samples=128, num_prior_samples=8, iterations=4, num_elites=16,
                         inverse_temperature=5.0, init_std=1.0, min_std=0.05, prior_std=0.1, discount=0.99,
                         horizon=T, warm_start="shift", action_low=-1.0, action_high=1.0)
MODEL = make_linear_model(T)
VARIABLES = make_variables(F, G, Q, R, P_TERM)
ACT = controller.make_act(CFG, MODEL)  # one compiled step shared by the tests


def _rollout(policy, x0, steps):
  """Numpy env loop; returns (cost, final state)."""
  x, cost = np.asarray(x0, np.float64), 0.0
  for _ in range(steps):
    u = np.clip(np.asarray(policy(x.astype(np.float32)), np.float64).reshape(1), -1.0, 1.0)
    cost += float(x @ Q @ x + u @ R @ u)
    x = F @ x + G @ u
  return cost, x


def test_history_buffer_front_padding_and_push():
  act = ACT
  state = controller.init_controller(CFG, DIMS, H, jax.random.key(0))
  obs = [jnp.array([1.0, 0.0]), jnp.array([2.0, 0.5]), jnp.array([3.0, 1.0]), jnp.array([4.0, 1.5])]
  actions = []
  no_cmd = jnp.zeros((T + 1, 0))
  for t, o in enumerate(obs):
    ph, ah = controller.history_inputs(state, o)
    # Expected: o_{t-H..t-1} front-padded with o_0; a_{t-H..t-1} front-padded with zeros.
    exp_p = [obs[max(k, 0)] for k in range(t - H, t)]
    exp_a = [actions[k] if k >= 0 else jnp.zeros(1) for k in range(t - H, t)]
    np.testing.assert_array_equal(np.asarray(ph), np.stack(exp_p))
    np.testing.assert_array_equal(np.asarray(ah), np.stack(exp_a))
    a, state, info = act(VARIABLES, state, o, jnp.zeros((0,)), no_cmd)
    assert a.shape == (1,) and int(info["controller/step"]) == t
    actions.append(a)
  assert int(state.step) == 4
  np.testing.assert_array_equal(np.asarray(state.proprio_hist), np.stack(obs[1:]))
  np.testing.assert_array_equal(np.asarray(state.action_hist), np.stack(actions[1:]))
  with pytest.raises(ValueError, match="proprio_t"):
    act(VARIABLES, state, jnp.zeros(3), jnp.zeros((0,)), no_cmd)


def test_controller_stabilises_double_integrator():
  x0, steps = np.array([1.0, 0.0]), 60
  ctrl = controller.Controller(CFG, MODEL, VARIABLES, DIMS, history=H, key=jax.random.key(0), model_horizon=T,
                               act_fn=ACT)
  cost_mppi, x_final = _rollout(ctrl, x0, steps)
  cost_zero, _ = _rollout(lambda x: np.zeros(1), x0, steps)
  k_lqr = lqr_gains(F, G, Q, R, P_TERM, 60, 0.99)[0]  # near-stationary gain, clipped: a strong baseline
  cost_lqr, _ = _rollout(lambda x: -k_lqr @ x, x0, steps)
  assert cost_zero == pytest.approx(60.0)
  assert cost_mppi < 0.35 * cost_zero
  assert cost_mppi < 1.1 * cost_lqr  # measured 9.10 vs 9.02
  assert np.abs(x_final).max() < 0.1
  assert int(ctrl.last_info["planner/nonfinite_fallback"]) == 0
  summary = ctrl.latency_summary()
  assert summary["latency/n"] == steps - 1 and 0 < summary["latency/p50_ms"] <= summary["latency/p99_ms"]
  # Reset clears the history; new variables reuse the compiled function.
  ctrl.reset(jax.random.key(1))
  assert int(ctrl.state.step) == 0
  n_compiled = ctrl._act._cache_size()  # pylint: disable=protected-access
  ctrl.set_variables(jax.tree.map(lambda v: v * 1.1, VARIABLES))
  ctrl(np.array([0.5, 0.0], np.float32))
  assert ctrl._act._cache_size() == n_compiled  # pylint: disable=protected-access


def test_controller_command_tiling():
  ctrl = controller.Controller.__new__(controller.Controller)  # no jit needed for the host-side helper
  ctrl.dims, ctrl.model_horizon = {"command": 3}, 4
  cmds = ctrl.commands([0.5, 0.0, 0.1])
  assert cmds.shape == (5, 3)
  np.testing.assert_array_equal(cmds[-1], np.array([0.5, 0.0, 0.1], np.float32))
  with pytest.raises(ValueError, match="commands"):
    ctrl.commands(None)


def test_replace_last_action_updates_the_history():
  import jax.numpy as jnp
  from simdist_jax.planner import mppi
  from simdist_jax.planner.controller import Controller
  from simdist_jax.world_model.model import Context

  class _Model:  # the smallest duck-typed model: the policy chunk is zeros, every return 0
    def context(self, v, ph, ah, p, e):
      return Context(tokens=jnp.zeros((3, 1)), z=jnp.zeros(1))

    def policy_chunk(self, v, ctx, c):
      return jnp.zeros((2, 1))

    def predict_latents(self, v, ctx, a):
      return jnp.zeros((2, 1))

    def predict_returns(self, v, ctx, z, a, c):
      return jnp.zeros(2), jnp.zeros(2)

  cfg = mppi.PlannerConfig(num_samples=4, num_prior_samples=0, iterations=1, num_elites=2, horizon=2,
                           init_std=0.0, min_std=0.0)
  ctrl = Controller(cfg, _Model(), {}, {"proprio": 1, "action": 1, "command": 0}, history=1,
                    key=jax.random.PRNGKey(0), jit=False)
  a = ctrl(np.zeros(1, np.float32))
  assert float(ctrl.state.action_hist[-1, 0]) == float(a[0]) == 0.0
  ctrl.replace_last_action(np.array([0.7]))
  assert np.isclose(float(ctrl.state.action_hist[-1, 0]), 0.7)


def test_gate_open_share_counts_the_gated_steps_that_applied_the_plan():
  """`gate_counts` / `gate_open_frac` against the per-step `planner/gate_open` flags of the same steps: a margin
  on the double integrator from x0 = (1, 0) that the predicted gain over pi clears on some steps, not on all, a
  margin no predicted gain reaches (never open: every step applies pi's chunk), and the ungated planner (NaN: no
  gated step). `before` takes the share since an earlier count. Margin 5: the predicted advantage falls from 10.4
  as the state nears the origin (measured: open on the first 4 steps, then closed)."""
  def run(cfg, steps=12):
    ctrl = controller.Controller(cfg, MODEL, VARIABLES, DIMS, history=H, key=jax.random.key(0), model_horizon=T)
    x, flags = np.array([1.0, 0.0], np.float32), []
    for _ in range(steps):
      u = np.asarray(ctrl(x)).reshape(1)
      flags.append(int(ctrl.last_info["planner/gate_open"]))
      x = (F @ x + G @ u).astype(np.float32)
    return ctrl, flags

  ctrl, flags = run(dataclasses.replace(CFG, advantage_gate=True, gate_margin=5.0))
  assert 0 < sum(flags) < 12
  assert ctrl.gate_counts() == (12, sum(flags))
  assert ctrl.gate_open_frac() == pytest.approx(sum(flags) / 12)
  before = (4, sum(flags[:4]))
  assert ctrl.gate_open_frac(before) == pytest.approx(sum(flags[4:]) / 8)
  closed, flags_closed = run(dataclasses.replace(CFG, advantage_gate=True, gate_margin=1e9))
  assert flags_closed == [0] * 12 and closed.gate_counts() == (12, 0) and closed.gate_open_frac() == 0.0
  ungated, flags_ungated = run(CFG, steps=3)
  assert flags_ungated == [1, 1, 1]  # reported open when there is no gate
  assert ungated.gate_counts() == (0, 0) and np.isnan(ungated.gate_open_frac())
