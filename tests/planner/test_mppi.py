"""MPPI/CEM planner: hand-worked updates, LQR optimum, warm start, determinism, recompiles, NaN fallback."""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.planner import mppi
from tests.planner import lqr_gains
from tests.planner import lqr_plan
from tests.planner import make_linear_model
from tests.planner import make_variables

T = 5  # model horizon of the stand-in
F = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, 0.0, 0.9]])
G = np.array([[0.1, 0.0], [0.5, 0.0], [0.0, 0.5]])
Q, R, P = np.eye(3), 0.5 * np.eye(2), 2.0 * np.eye(3)
Z0 = np.array([1.0, -0.5, 0.8], np.float32)
GAMMA = 0.95

BASE = mppi.PlannerConfig(num_samples=256, num_prior_samples=0, iterations=10, num_elites=32,
                          inverse_temperature=2.0, init_std=1.0, min_std=1e-3, prior_std=0.0, momentum=0.0,
                          discount=GAMMA, horizon=T, warm_start="none", mode="mppi", action_low=-5.0,
                          action_high=5.0)


TRACES = []  # one entry per trace of the stand-in's predict_latents
MODEL = make_linear_model(T, traces=TRACES)
VARIABLES = make_variables(F, G, Q, R, P)
CTX = MODEL.context(VARIABLES, jnp.zeros((2, 3)), jnp.zeros((2, 2)), jnp.asarray(Z0), jnp.zeros((0,)))
COMMANDS = jnp.zeros((T + 1, 0))


@functools.lru_cache(maxsize=None)
def _plan_fn(cfg):
  """One jitted planner per config, shared by the tests (compiling dominates their run time on CPU)."""
  return mppi.make_plan_fn(cfg, MODEL)


def _state(cfg, seed=0):
  return mppi.init_state(cfg, 2, jax.random.key(seed))


SHARED = dataclasses.replace(BASE, iterations=3, num_prior_samples=8, prior_std=0.1, warm_start="shift")


def test_discounted_return_hand_worked():
  cfg = dataclasses.replace(BASE, discount=0.5, horizon=3)
  rewards, values = jnp.array([1.0, 2.0, 3.0]), jnp.array([10.0, 20.0, 30.0])
  # 1 + 0.5*2 + 0.25*3 + 0.125*30
  assert float(mppi.discounted_return(cfg, rewards, values)) == pytest.approx(6.5)
  cfg_t1 = dataclasses.replace(cfg, terminal_discount="T+1")  # ... + 0.0625*30
  assert float(mppi.discounted_return(cfg_t1, rewards, values)) == pytest.approx(4.625)
  cfg_none = dataclasses.replace(cfg, terminal_discount="none")  # 1 + 0.5*2 + 0.25*3, no value term
  assert float(mppi.discounted_return(cfg_none, rewards, values)) == pytest.approx(2.75)
  cfg_h2 = dataclasses.replace(cfg, horizon=2)  # 1 + 0.5*2 + 0.25*V_2 (= values[1] = 20)
  assert float(mppi.discounted_return(cfg_h2, rewards, values)) == pytest.approx(7.0)


def test_elite_update_hand_worked():
  # 4 scalar candidates a = 0..3 with returns 0, 1, 3, 2; K = 2 -> elites a=2 (R=3), a=3 (R=2).
  cands = jnp.arange(4.0).reshape(4, 1, 1)
  returns = jnp.array([0.0, 1.0, 3.0, 2.0])
  cfg = dataclasses.replace(BASE, num_samples=4, num_elites=2, inverse_temperature=float(np.log(2.0)),
                            min_std=0.0, horizon=1)
  mean, std, st = mppi.elite_update(cfg, cands, returns, jnp.zeros((1, 1)))
  np.testing.assert_array_equal(np.asarray(st["elite_idx"]), [2, 3])
  np.testing.assert_allclose(np.asarray(st["weights"]), [2 / 3, 1 / 3], rtol=1e-6)  # exp(ln2 * (R - 3))
  assert float(mean[0, 0]) == pytest.approx(7 / 3, rel=1e-6)
  assert float(std[0, 0]) == pytest.approx(np.sqrt(2 / 9), rel=1e-6)  # 2/3 (1/3)^2 + 1/3 (2/3)^2
  # std floor.
  _, std_f, _ = mppi.elite_update(dataclasses.replace(cfg, min_std=0.5), cands, returns, jnp.zeros((1, 1)))
  assert float(std_f[0, 0]) == pytest.approx(0.5)
  # momentum 0.5 from mean 1: 0.5 * 1 + 0.5 * 7/3.
  mean_m, _, _ = mppi.elite_update(dataclasses.replace(cfg, momentum=0.5), cands, returns, jnp.ones((1, 1)))
  assert float(mean_m[0, 0]) == pytest.approx(5 / 3, rel=1e-6)
  # CEM: uniform elite weights -> mean 2.5, std 0.5.
  mean_c, std_c, st_c = mppi.elite_update(dataclasses.replace(cfg, mode="cem"), cands, returns,
                                          jnp.zeros((1, 1)))
  np.testing.assert_allclose(np.asarray(st_c["weights"]), [0.5, 0.5])
  assert float(mean_c[0, 0]) == pytest.approx(2.5) and float(std_c[0, 0]) == pytest.approx(0.5)
  # A NaN return is never an elite with positive weight.
  returns_nan = returns.at[2].set(jnp.nan)  # elites now a=3 (R=2), a=1 (R=1)
  mean_n, _, st_n = mppi.elite_update(cfg, cands, returns_nan, jnp.zeros((1, 1)))
  np.testing.assert_array_equal(np.asarray(st_n["elite_idx"]), [3, 1])
  assert float(mean_n[0, 0]) == pytest.approx(2 / 3 * 3 + 1 / 3 * 1, rel=1e-6)


@pytest.mark.parametrize("mode,terminal", [("mppi", "T"), ("cem", "T+1")])
def test_converges_to_lqr_optimum(mode, terminal):
  cfg = dataclasses.replace(BASE, mode=mode, terminal_discount=terminal)
  model, variables, ctx, commands = MODEL, VARIABLES, CTX, COMMANDS
  p_term = P * (GAMMA if terminal == "T+1" else 1.0)
  optimum = lqr_plan(F, G, Q, R, p_term, T, GAMMA, Z0)
  assert np.abs(optimum).max() < 2.0  # interior optimum, far from the bounds
  chunk, _, info = _plan_fn(cfg)(variables, _state(cfg), ctx, commands)
  np.testing.assert_allclose(np.asarray(chunk[0]), optimum[0], atol=0.03)
  np.testing.assert_allclose(np.asarray(chunk), optimum, atol=0.05)
  # The planned return is within 1e-3 of the optimal one (zero action scores much lower).
  ret = lambda a: float(mppi.discounted_return(cfg, *model.predict_returns(
      variables, ctx, model.predict_latents(variables, ctx, jnp.asarray(a, jnp.float32)),
      jnp.asarray(a, jnp.float32), commands)))
  assert ret(chunk) > ret(optimum) - 1e-3
  assert ret(optimum) > ret(np.zeros((T, 2))) + 0.3
  assert int(info["planner/nonfinite_fallback"]) == 0
  assert float(info["planner/return_max"]) <= ret(optimum) + 1e-4


def test_prior_deviation_cost_hand_worked():
  cfg = dataclasses.replace(BASE, prior_cost=3.0, horizon=2)
  prior = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  cands = jnp.stack([prior, prior + jnp.array([[1.0, 0.0], [0.0, -1.0]]), jnp.zeros((2, 2))])
  # kappa * mean of squared deviations over h * A = 4 entries: 0; 3 * 2/4; 3 * (1 + 4)/4.
  np.testing.assert_allclose(np.asarray(mppi.prior_deviation_cost(cfg, cands, prior)), [0.0, 1.5, 3.75])
  with pytest.raises(ValueError, match="disagree"):
    mppi.prior_deviation_cost(cfg, cands, prior[:1])
  with pytest.raises(ValueError, match="prior_cost"):
    dataclasses.replace(BASE, prior_cost=-1.0)


@pytest.mark.parametrize("flat", [False, True])
def test_prior_cost_converges_to_the_regularized_optimum(flat):
  # J(a) = R(a) - kappa * mean ||a - pi||^2 is a concave quadratic for the LQ stand-in, so its maximizer is one
  # Newton step from anywhere: a* = a0 - H^-1 grad J(a0). With flat returns (Q = R = P = 0) a* is the policy chunk.
  k0 = 0.5 * lqr_gains(F, G, Q, R, P, T, GAMMA)[0]  # a deliberately suboptimal policy head
  zero = np.zeros((3, 3))
  variables = make_variables(F, G, *((zero, 0.0 * R, zero) if flat else (Q, R, P)), k=k0)
  cfg = dataclasses.replace(BASE, prior_cost=10.0, warm_start="policy")
  pi = MODEL.policy_chunk(variables, CTX, COMMANDS)

  def objective(a_flat):
    a = a_flat.reshape(T, 2)
    ret = mppi.discounted_return(cfg, *MODEL.predict_returns(
        variables, CTX, MODEL.predict_latents(variables, CTX, a), a, COMMANDS))
    return ret - mppi.prior_deviation_cost(cfg, a[None], pi)[0]

  a0 = jnp.zeros((T * 2,))
  optimum = np.asarray(a0 - jnp.linalg.solve(jax.hessian(objective)(a0), jax.grad(objective)(a0))).reshape(T, 2)
  unregularized = lqr_plan(F, G, Q, R, P, T, GAMMA, Z0)
  chunk, _, _ = _plan_fn(cfg)(variables, _state(cfg), CTX, COMMANDS)
  np.testing.assert_allclose(np.asarray(chunk), optimum, atol=0.03)
  assert float(objective(chunk.reshape(-1))) > float(objective(jnp.asarray(optimum).reshape(-1))) - 1e-3
  assert float(objective(jnp.asarray(optimum).reshape(-1))) >= float(objective(pi.reshape(-1))) + (0 if flat else 0.05)
  if flat:
    np.testing.assert_allclose(optimum, np.asarray(pi), atol=1e-5)
  else:  # the cost pulls the plan measurably from the LQR optimum towards the policy head
    assert np.abs(optimum - unregularized).max() > 0.1
    assert np.linalg.norm(optimum - np.asarray(pi)) < np.linalg.norm(unregularized - np.asarray(pi)) - 0.1


def test_lqr_oracle_matches_closed_form_gain():
  # Sanity of the oracle itself: for h=1, a_0 = -(R + g G'PG)^-1 g G'P F z0.
  k = lqr_gains(F, G, Q, R, P, 1, GAMMA)[0]
  expected = np.linalg.solve(R + GAMMA * G.T @ P @ G, GAMMA * G.T @ P @ F) @ Z0
  np.testing.assert_allclose(-k @ Z0, -expected, rtol=1e-10)


def test_horizon_shorter_than_model_matches_short_lqr():
  cfg = dataclasses.replace(BASE, horizon=3)
  chunk, _, _ = _plan_fn(cfg)(VARIABLES, _state(cfg), CTX, COMMANDS)
  assert chunk.shape == (3, 2)
  np.testing.assert_allclose(np.asarray(chunk), lqr_plan(F, G, Q, R, P, 3, GAMMA, Z0), atol=0.05)


def test_warm_start_modes():
  prev = jnp.arange(8.0).reshape(4, 2)
  cfg = dataclasses.replace(BASE, horizon=4)
  shift = mppi.warm_start(dataclasses.replace(cfg, warm_start="shift", shift_fill="repeat"), prev)
  np.testing.assert_array_equal(np.asarray(shift), [[2, 3], [4, 5], [6, 7], [6, 7]])
  shift0 = mppi.warm_start(dataclasses.replace(cfg, warm_start="shift", shift_fill="zero"), prev)
  np.testing.assert_array_equal(np.asarray(shift0), [[2, 3], [4, 5], [6, 7], [0, 0]])
  paper = mppi.warm_start(dataclasses.replace(cfg, warm_start="paper_code"), prev)
  np.testing.assert_array_equal(np.asarray(paper), [[6, 7], [0, 0], [0, 0], [0, 0]])
  none = mppi.warm_start(dataclasses.replace(cfg, warm_start="none"), prev)
  np.testing.assert_array_equal(np.asarray(none), np.zeros((4, 2)))


def test_plan_moves_previous_plan_by_one_step():
  # With zero proposal std and no prior, every candidate equals the warm-started mean, so the plan returns it.
  # (paper_code's [prev[-1], 0, ...] is checked exactly in test_warm_start_modes.)
  cfg = dataclasses.replace(BASE, warm_start="shift", shift_fill="repeat", init_std=0.0, min_std=0.0,
                            iterations=2)
  expected = [[0.2, -0.3], [0.4, -0.5], [0.8, -0.9], [1.0, -1.0], [1.0, -1.0]]
  prev = jnp.array([[0.0, 0.0], [0.2, -0.3], [0.4, -0.5], [0.8, -0.9], [1.0, -1.0]])
  chunk, new_state, _ = _plan_fn(cfg)(VARIABLES, _state(cfg).replace(mean=prev), CTX, COMMANDS)
  np.testing.assert_allclose(np.asarray(chunk), expected, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new_state.mean), expected, atol=1e-6)


def test_policy_warm_start_starts_from_the_policy_chunk():
  # Zero proposal std: every Gaussian candidate equals the warm-started mean, which is the policy head's chunk
  # (not the previous plan).
  k0 = lqr_gains(F, G, Q, R, P, T, GAMMA)[0]
  variables = make_variables(F, G, Q, R, P, k=k0)
  cfg = dataclasses.replace(BASE, warm_start="policy", init_std=0.0, min_std=0.0, iterations=2)
  prev = jnp.full_like(_state(cfg).mean, 0.7)
  chunk, _, _ = _plan_fn(cfg)(variables, _state(cfg).replace(mean=prev), CTX, COMMANDS)
  expected = np.clip(np.asarray(MODEL.policy_chunk(variables, CTX, COMMANDS))[:cfg.horizon], -5, 5)
  np.testing.assert_allclose(np.asarray(chunk), expected, atol=1e-5)
  assert not np.allclose(expected, 0.7)


def test_policy_prior_samples_are_used():
  # A good policy prior (LQR gain) and a near-zero Gaussian proposal: the K=4 elites are the prior samples.
  k0 = lqr_gains(F, G, Q, R, P, T, GAMMA)[0]
  cfg = dataclasses.replace(BASE, num_samples=16, num_prior_samples=4, num_elites=4, init_std=1e-6,
                            prior_std=0.0, iterations=1)
  variables = make_variables(F, G, Q, R, P, k=k0)
  chunk, _, info = _plan_fn(cfg)(variables, _state(cfg, 1), CTX, COMMANDS)
  np.testing.assert_allclose(np.asarray(chunk), np.asarray(MODEL.policy_chunk(variables, CTX, COMMANDS)),
                             atol=1e-5)
  assert float(info["planner/prior_elite_frac"]) == 1.0
  assert float(info["planner/prior_return_max"]) == pytest.approx(float(info["planner/return_max"]), rel=1e-6)


def test_same_key_same_plan_and_key_advances():
  variables, ctx, commands, state = VARIABLES, CTX, COMMANDS, _state(SHARED)
  fn = _plan_fn(SHARED)
  a1, s1, _ = fn(variables, state, ctx, commands)
  a2, s2, _ = fn(variables, state, ctx, commands)
  np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
  np.testing.assert_array_equal(jax.random.key_data(s1.key), jax.random.key_data(s2.key))
  a3, _, _ = fn(variables, state.replace(key=jax.random.key(7)), ctx, commands)
  assert np.abs(np.asarray(a3) - np.asarray(a1)).max() > 1e-4
  assert not np.array_equal(jax.random.key_data(s1.key), jax.random.key_data(state.key))


def test_update_pieces_jit_matches_no_jit():
  # The per-step pieces, jitted and op-by-op (the full `plan` is compared in the slow test below).
  cfg = dataclasses.replace(BASE, num_samples=16, num_elites=4, horizon=3)
  cands = jax.random.normal(jax.random.key(3), (16, 3, 2))
  returns = -jnp.sum(jnp.square(cands - 0.2), axis=(1, 2))
  mean = jnp.full((3, 2), 0.1, jnp.float32)
  upd = lambda c, r, m: mppi.elite_update(cfg, c, r, m)
  (m_j, s_j, st_j), (m_n, s_n, st_n) = jax.jit(upd)(cands, returns, mean), upd(cands, returns, mean)
  np.testing.assert_allclose(np.asarray(m_j), np.asarray(m_n), atol=1e-6)
  np.testing.assert_allclose(np.asarray(s_j), np.asarray(s_n), atol=1e-6)
  np.testing.assert_allclose(np.asarray(st_j["weights"]), np.asarray(st_n["weights"]), atol=1e-6)
  ret = lambda r, v: mppi.discounted_return(cfg, r, v)
  r, v = jnp.arange(5.0), jnp.arange(5.0) * 2
  assert float(jax.jit(ret)(r, v)) == pytest.approx(float(ret(r, v)), rel=1e-6)


@pytest.mark.slow
def test_plan_jit_matches_no_jit():
  state = _state(SHARED).replace(mean=jnp.full((T, 2), 0.3, jnp.float32))
  a_j, s_j, i_j = _plan_fn(SHARED)(VARIABLES, state, CTX, COMMANDS)
  with jax.disable_jit():
    a_n, s_n, i_n = mppi.make_plan_fn(SHARED, MODEL, jit=False)(VARIABLES, state, CTX, COMMANDS)
  np.testing.assert_allclose(np.asarray(a_j), np.asarray(a_n), atol=1e-5)
  np.testing.assert_allclose(np.asarray(s_j.std), np.asarray(s_n.std), atol=1e-5)
  for k in i_j:
    np.testing.assert_allclose(np.asarray(i_j[k]), np.asarray(i_n[k]), rtol=1e-4, atol=1e-5, err_msg=k)


def test_new_variables_do_not_recompile():
  fn = _plan_fn(SHARED)  # jax.jit(functools.partial(mppi.plan, SHARED, MODEL)), maybe compiled by another test
  state = _state(SHARED)
  a1, _, _ = fn(VARIABLES, state, CTX, COMMANDS)
  n_traces, n_compiled = len(TRACES), fn._cache_size()  # pylint: disable=protected-access
  assert n_traces >= 1 and n_compiled >= 1  # the counters see the first trace
  variables2 = jax.tree.map(lambda x: x * 1.1, VARIABLES)  # "finetuned" params, same shapes
  a2, _, _ = fn(variables2, state, CTX, COMMANDS)
  assert len(TRACES) == n_traces  # no retrace
  assert fn._cache_size() == n_compiled  # no new executable  # pylint: disable=protected-access
  assert np.abs(np.asarray(a2) - np.asarray(a1)).max() > 1e-4  # the new params are actually used


def test_all_nonfinite_returns_fall_back_to_shifted_plan():
  bad = jax.tree.map(lambda x: x, VARIABLES)
  bad["params"]["dynamics"]["F"] = VARIABLES["params"]["dynamics"]["F"].at[0, 0].set(jnp.nan)
  prev = jnp.tile(jnp.arange(T, dtype=jnp.float32)[:, None] / 10, (1, 2))
  chunk, new_state, info = _plan_fn(SHARED)(bad, _state(SHARED).replace(mean=prev), CTX, COMMANDS)
  assert int(info["planner/nonfinite_fallback"]) == 1
  assert int(info["planner/nonfinite_returns"]) == SHARED.iterations * SHARED.total_samples
  assert np.all(np.isfinite(np.asarray(chunk))) and np.all(np.isfinite(np.asarray(new_state.std)))
  np.testing.assert_allclose(np.asarray(chunk), np.asarray(mppi.shift_plan(prev, "repeat")))
  assert float(info["planner/ess"]) == 0.0


def test_some_nonfinite_returns_are_masked_not_fatal():
  variables = make_variables(F, G, Q, R, P, nan_above=0.5)
  chunk, _, info = _plan_fn(SHARED)(variables, _state(SHARED), CTX, COMMANDS)
  assert int(info["planner/nonfinite_fallback"]) == 0
  assert int(info["planner/nonfinite_returns"]) > 10
  assert np.all(np.isfinite(np.asarray(chunk))) and float(chunk[0, 0]) <= 0.5
  assert np.isfinite(float(info["planner/return_mean"]))


def test_actions_respect_bounds():
  cfg = dataclasses.replace(BASE, action_low=(-0.1, -0.2), action_high=(0.1, 0.05), iterations=3)
  chunk, _, _ = _plan_fn(cfg)(VARIABLES, _state(cfg), CTX, COMMANDS)
  c = np.asarray(chunk)
  assert c[:, 0].min() >= -0.1 and c[:, 0].max() <= 0.1 and c[:, 1].min() >= -0.2 and c[:, 1].max() <= 0.05
  assert np.abs(c).max() > 0.04  # not trivially zero: the optimum is outside the box, so it sits on it


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="num_elites"):
    dataclasses.replace(BASE, num_samples=10, num_prior_samples=2, num_elites=13)
  with pytest.raises(ValueError, match="warm_start"):
    dataclasses.replace(BASE, warm_start="roll")
  with pytest.raises(ValueError, match="mode"):
    dataclasses.replace(BASE, mode="mpc")
  cfg_long = dataclasses.replace(BASE, horizon=T + 1)
  model, variables, ctx, commands = MODEL, VARIABLES, CTX, COMMANDS
  with pytest.raises(ValueError, match="horizon"):
    mppi.plan(cfg_long, model, variables, mppi.init_state(cfg_long, 2, jax.random.key(0)), ctx, commands)
  state = mppi.init_state(BASE, 2, jax.random.key(0))
  batched = jax.tree.map(lambda x: jnp.stack([x, x]), ctx)
  with pytest.raises(ValueError, match="single-example context"):
    mppi.plan(BASE, model, variables, state, batched, commands)
  with pytest.raises(ValueError, match="commands"):
    mppi.plan(BASE, model, variables, state, ctx, jnp.zeros((T, 0)))
  with pytest.raises(ValueError, match="planner state"):
    mppi.plan(BASE, model, variables, mppi.init_state(BASE, 3, jax.random.key(0)), ctx, commands)


def _indicator_score(target):
  """Scores 1 for a candidate exactly equal to `target` [h, A], 0 otherwise."""
  return lambda c: jnp.all(c == target, axis=(1, 2)).astype(jnp.float32)


@pytest.mark.parametrize("on", [True, False])
def test_noise_free_prior_chunk_is_always_a_candidate(on):
  """With `prior_mean_candidate`, pi itself is scored in every iteration (its return is reported, and a score that
  only rewards pi makes the plan pi exactly); without it, no candidate ever equals pi (prior noise 0.05)."""
  cfg = mppi.PlannerConfig(num_samples=16, num_prior_samples=4, iterations=3, num_elites=1, horizon=4,
                           init_std=0.5, prior_std=0.05, prior_mean_candidate=on, inverse_temperature=50.0)
  pi = jnp.linspace(-0.5, 0.5, 4)[:, None]
  for seed in range(5):
    st = mppi.init_state(cfg, 1, jax.random.PRNGKey(seed))
    mean, _, info = jax.jit(functools.partial(mppi.optimize, cfg, _indicator_score(pi)))(pi, st)
    assert float(info["planner/return_max"]) == (1.0 if on else 0.0)
    if on:
      assert float(info["planner/prior_mean_return"]) == 1.0
      np.testing.assert_array_equal(np.asarray(mean), np.asarray(pi))
    else:
      assert np.isnan(float(info["planner/prior_mean_return"]))
  with pytest.raises(ValueError, match="prior_mean_candidate"):
    mppi.PlannerConfig(num_samples=16, num_prior_samples=0, num_elites=1, prior_mean_candidate=True)


def test_spread_weighting_is_invariant_to_the_return_scale():
  """`weighting="spread"` gives the same elite weights for returns R and c R + b (c > 0); the paper's absolute
  weighting flattens as the returns shrink (hand case: elites 3, 2, 1 with beta 1 -> weights prop. to
  exp(0), exp(-1), exp(-2); scaled by 0.01 they are nearly uniform)."""
  cand = jnp.arange(3.0)[:, None, None] * jnp.ones((3, 2, 1))
  ret = jnp.array([1.0, 2.0, 3.0])
  mean0 = jnp.zeros((2, 1))
  ab = mppi.PlannerConfig(num_samples=3, num_prior_samples=0, num_elites=3, horizon=2, inverse_temperature=1.0)
  sp = dataclasses.replace(ab, weighting="spread")
  w_ab = np.asarray(mppi.elite_update(ab, cand, ret, mean0)[2]["weights"])
  np.testing.assert_allclose(w_ab, np.exp([0.0, -1.0, -2.0]) / np.exp([0.0, -1.0, -2.0]).sum(), rtol=1e-6)
  w_ab_small = np.asarray(mppi.elite_update(ab, cand, 0.01 * ret, mean0)[2]["weights"])
  assert w_ab_small.max() - w_ab_small.min() < 0.01
  w_sp = np.asarray(mppi.elite_update(sp, cand, ret, mean0)[2]["weights"])
  w_sp_small = np.asarray(mppi.elite_update(sp, cand, 0.01 * ret + 40.0, mean0)[2]["weights"])
  np.testing.assert_allclose(w_sp, w_sp_small, rtol=1e-3)  # float32: 40 + 0.01 R keeps ~5 digits of R
  std = np.std([1.0, 2.0, 3.0])
  expect = np.exp(-np.array([0.0, 1.0, 2.0]) / std)
  np.testing.assert_allclose(w_sp, expect / expect.sum(), rtol=1e-5)


class _EnsembleStandIn(NamedTuple):
  """Two-member scalar stand-in: member k predicts z_1 = z_0 + g_k a_0 (g = 1, 3); r_0 = -R a_0^2, V_1 = -P z_1^2."""

  spec: Any
  context: Any
  predict_latents: Any
  predict_returns: Any
  policy_chunk: Any
  predict_member_latents: Any


def _ensemble_stand_in(gains=(1.0, 3.0), r=0.5, p=1.0):
  g = jnp.asarray(gains, jnp.float32)
  members = lambda v, ctx, a: ctx.z[None, None, :] + g[:, None, None] * a[None]  # noqa: E731  [K, 1, 1]
  def returns(v, ctx, z_hat, a, c):
    return -r * jnp.square(a[:, 0]), -p * jnp.square(z_hat[:, 0])
  return _EnsembleStandIn(
      spec=type("Spec", (), {"dynamics_ensemble": len(gains)})(),
      context=None,
      predict_latents=lambda v, ctx, a: jnp.mean(members(v, ctx, a), axis=0),
      predict_returns=returns,
      policy_chunk=lambda v, ctx, c: jnp.zeros((1, 1)),
      predict_member_latents=members)


@pytest.mark.parametrize("score,penalty", [("mean_latent", 0.0), ("mean_return", 0.0), ("mean_return", 1.0)])
def test_ensemble_scores_reach_their_own_optimum(score, penalty):
  # Hand-worked: J_k(a) = -R a^2 - gamma P (1 + g_k a)^2. "mean_latent" maximizes J at the mean gain (2):
  # a* = -gamma P g_bar / (R + gamma P g_bar^2); "mean_return" maximizes mean_k J_k:
  # a* = -gamma P g_bar / (R + gamma P mean(g^2)); with a penalty the oracle is a grid search of mean - c std.
  gamma, r, p = 0.95, 0.5, 1.0
  model = _ensemble_stand_in(r=r, p=p)
  cfg = mppi.PlannerConfig(num_samples=512, num_prior_samples=0, iterations=12, num_elites=32,
                           inverse_temperature=50.0, init_std=1.0, min_std=1e-4, prior_std=0.0, discount=gamma,
                           horizon=1, warm_start="none", action_low=-2.0, action_high=2.0, ensemble_score=score,
                           ensemble_penalty=penalty)
  ctx = type("Ctx", (), {"z": jnp.ones((1,))})()
  chunk, _, _ = mppi.plan(cfg, model, {}, mppi.init_state(cfg, 1, jax.random.key(0)), ctx, jnp.zeros((2, 0)))
  grid = np.linspace(-1.0, 1.0, 200_001)
  j = -r * grid[None] ** 2 - gamma * p * (1.0 + np.array([[1.0], [3.0]]) * grid[None]) ** 2  # [K, grid]
  if score == "mean_latent":
    expected = -gamma * p * 2.0 / (r + gamma * p * 4.0)  # -0.4419
  elif penalty == 0.0:
    expected = -gamma * p * 2.0 / (r + gamma * p * 5.0)  # -0.3619
  else:
    expected = grid[np.argmax(j.mean(0) - penalty * j.std(0))]
  assert float(chunk[0, 0]) == pytest.approx(expected, abs=5e-3)


def test_ensemble_score_is_validated():
  with pytest.raises(ValueError, match="ensemble_score"):
    dataclasses.replace(BASE, ensemble_score="median")
  with pytest.raises(ValueError, match="ensemble_penalty"):
    dataclasses.replace(BASE, ensemble_penalty=-1.0)


def test_advantage_gate_applies_the_plan_only_for_a_clear_predicted_gain():
  """Hand case: score(a) = -sum_k (a_k - 0.5)^2 over h = 4 steps, pi = 0, so R(pi) = -1 and the search ends near
  a = 0.5 (R ~ 0): the predicted advantage is R(plan) - R(pi) ~ 1, reported with or without the gate. The gate
  emits the plan for a margin below the advantage and pi itself (also as the warm-start mean) for one above it."""
  score = lambda c: -jnp.sum(jnp.square(c - 0.5), axis=(1, 2))  # noqa: E731
  base = mppi.PlannerConfig(num_samples=64, num_prior_samples=4, iterations=4, num_elites=8, horizon=4,
                            init_std=0.5, prior_std=0.05, inverse_temperature=20.0, warm_start="policy")
  pi = jnp.zeros((4, 1))
  st = mppi.init_state(base, 1, jax.random.PRNGKey(3))
  run = lambda cfg: jax.jit(functools.partial(mppi.optimize, cfg, score))(pi, st)  # noqa: E731
  plan, _, info = run(base)
  expect = float(-jnp.sum(jnp.square(plan - 0.5)) + 1.0)
  assert 0.9 < expect <= 1.0
  assert float(info["planner/predicted_advantage"]) == pytest.approx(expect, abs=1e-5)
  assert float(info["planner/policy_return"]) == pytest.approx(-1.0)
  assert int(info["planner/gate_open"]) == 1
  low, _, info_low = run(dataclasses.replace(base, advantage_gate=True, gate_margin=0.5))
  np.testing.assert_array_equal(np.asarray(low), np.asarray(plan))
  assert int(info_low["planner/gate_open"]) == 1
  high, st_high, info_high = run(dataclasses.replace(base, advantage_gate=True, gate_margin=1.5))
  np.testing.assert_array_equal(np.asarray(high), np.asarray(pi))
  np.testing.assert_array_equal(np.asarray(st_high.mean), np.asarray(pi))
  assert int(info_high["planner/gate_open"]) == 0
  assert float(info_high["planner/predicted_advantage"]) == pytest.approx(expect, abs=1e-5)
  for bad in (-0.1, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="gate_margin"):
      dataclasses.replace(base, gate_margin=bad)
