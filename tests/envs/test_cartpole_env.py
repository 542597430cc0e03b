"""Env layer on CartPole: shapes, determinism, per-episode domains, auto-reset, bad actions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.envs import cartpole
from simdist_jax.envs.domain import Domain
from simdist_jax.envs.registry import make_domain
from simdist_jax.envs.wrappers import wrap_for_training


def test_state_and_obs_shapes_and_dtypes(cartpole_env):
  env, reset, step = cartpole_env
  s = reset(jax.random.PRNGKey(0))
  assert set(s.obs) == {"state", "privileged_state"}
  assert s.obs["state"].shape == (5,) and s.obs["state"].dtype == jnp.float32
  assert s.obs["privileged_state"].shape == (12,) and s.obs["privileged_state"].dtype == jnp.float32
  assert env.observation_size == {"state": (5,), "privileged_state": (12,)}
  assert env.action_size == 1
  s2 = step(s, jnp.zeros(1))
  assert s2.reward.shape == () and s2.done.shape == ()
  assert set(s2.info["domain"]) == set(cartpole.PARAM_NAMES)
  # hanging down at start (theta_0 = pi +- env.init_angle_range 0.3): cos(theta) <= -cos(0.3), reward near 0
  assert float(s.obs["privileged_state"][1]) < -0.95
  assert 0.0 <= float(s2.reward) < 0.03


def test_initial_states_are_randomized_within_the_configured_ranges(cartpole_cfg):
  """Evaluation seeds give distinct initial states (both backends share `episode_start`), spread over the
  configured x_0 / theta_0 ranges, and a task without ranges gives near-replicas."""
  from simdist_jax.envs.registry import make_real_env  # pylint: disable=import-outside-toplevel
  env = make_real_env(cartpole_cfg, "real")
  x, th = [], []
  for s in range(40):
    env.reset(jax.random.PRNGKey(50_000 + s))
    x.append(env.data.qpos[0])
    th.append(env.data.qpos[1])
  x, th = np.asarray(x), np.asarray(th)
  rx, ra = cartpole_cfg.env.init_cart_range, cartpole_cfg.env.init_angle_range
  assert (rx, ra) == (0.5, 0.3)
  tol = 4 * cartpole_cfg.env.init_noise
  assert np.all(np.abs(x) <= rx + tol) and np.all(np.abs(th - np.pi) <= ra + tol)
  assert x.std() > 0.2 and (th - np.pi).std() > 0.12  # U[-r, r] has std r / sqrt(3): 0.29 and 0.17
  assert len(set(np.round(x, 6))) == 40
  narrow = cartpole.CartPole(init_noise=0.01)
  q = np.stack([np.asarray(narrow.initial_state(jax.random.PRNGKey(s), None)[0]) for s in range(10)])
  assert q.std(0).max() < 0.03
  with pytest.raises(ValueError, match="init_cart_range"):
    cartpole.CartPole(init_cart_range=3.0)


def test_same_key_same_trajectory(cartpole_env):
  _, reset, step = cartpole_env
  def roll(key):
    s = reset(key)
    obs = []
    for i in range(20):
      s = step(s, jnp.array([np.sin(0.3 * i)], jnp.float32))
      obs.append(s.obs["state"])
    return np.stack(obs)
  a, b = roll(jax.random.PRNGKey(7)), roll(jax.random.PRNGKey(7))
  c = roll(jax.random.PRNGKey(8))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3


def test_resets_draw_different_domains_inside_ranges(cartpole_cfg, cartpole_env):
  _, reset, _ = cartpole_env
  dom = make_domain(cartpole_cfg, "sim")
  params = [reset(jax.random.PRNGKey(i)).info["domain"] for i in range(20)]
  for p in params:
    assert dom.contains(p)
  masses = np.array([float(p["pole_mass"]) for p in params])
  assert len(np.unique(masses)) == 20
  assert masses.min() < 0.095 and masses.max() > 0.135  # spread over (0.08, 0.15)


def test_domain_applied_to_model_fields(cartpole_env):
  env, reset, _ = cartpole_env
  s = reset(jax.random.PRNGKey(1))
  p = s.info["domain"]
  m = env.model_for(p)
  assert np.isclose(float(m.body_mass[2]), float(p["pole_mass"]))
  assert np.isclose(float(m.body_ipos[2, 2]), 0.5 * float(p["pole_length"]))
  assert np.isclose(float(m.body_inertia[2, 0]), float(p["pole_mass"]) * float(p["pole_length"]) ** 2 / 12,
                    rtol=1e-5)
  assert np.isclose(float(m.actuator_gainprm[0, 0]), float(p["motor_gain"]))
  assert np.isclose(float(m.dof_frictionloss[1]), float(p["hinge_friction"]))


def test_different_domains_give_different_trajectories(cartpole_env):
  env, reset, step = cartpole_env
  s = reset(jax.random.PRNGKey(3))
  light = dict(s.info["domain"], pole_mass=jnp.float32(0.08), motor_gain=jnp.float32(12.0))
  heavy = dict(s.info["domain"], pole_mass=jnp.float32(0.15), motor_gain=jnp.float32(8.0))
  outs = []
  for p in (light, heavy):
    st = s.replace(info=dict(s.info, domain=p))
    for _ in range(25):
      st = step(st, jnp.ones(1))
    outs.append(np.asarray(st.obs["privileged_state"][:5]))
  assert np.abs(outs[0] - outs[1]).max() > 0.05


def test_auto_reset_resamples_domain(cartpole_env):
  env, _, _ = cartpole_env
  w = wrap_for_training(env, episode_length=4)
  s = jax.jit(w.reset)(jax.random.split(jax.random.PRNGKey(0), 8))
  wstep = jax.jit(w.step)
  m0 = np.asarray(s.info["domain"]["pole_mass"])
  a = jnp.zeros((8, 1))
  for _ in range(3):
    s = wstep(s, a)
    np.testing.assert_array_equal(np.asarray(s.info["domain"]["pole_mass"]), m0)  # same episode
  s = wstep(s, a)  # 4th step: episodes end and auto-reset
  assert np.all(np.asarray(s.done) == 1)
  m1 = np.asarray(s.info["domain"]["pole_mass"])
  assert np.all(m1 != m0)
  # the new episode starts from a fresh initial state (pole hanging down again, within init_angle_range 0.3)
  assert np.all(np.asarray(s.obs["privileged_state"][:, 1]) < -0.95)
  s = wstep(s, a)
  assert np.all(np.asarray(s.info["steps"]) == 1)
  np.testing.assert_array_equal(np.asarray(s.info["domain"]["pole_mass"]), m1)


def test_bad_actions_are_rejected(cartpole_env):
  env, reset, step = cartpole_env
  s = reset(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="trailing shape"):
    env.step(s, jnp.zeros(2))
  with pytest.raises(TypeError, match="floating-point"):
    env.step(s, jnp.zeros(1, jnp.int32))
  with pytest.raises(ValueError, match="non-finite"):
    env.step(s, jnp.array([jnp.nan]))
  # under jit a NaN action cannot raise: the episode ends and the metric flags it
  s2 = step(s, jnp.array([jnp.inf]))
  assert float(s2.done) == 1.0 and float(s2.metrics["nonfinite_action"]) == 1.0
  assert np.all(np.isfinite(np.asarray(s2.obs["state"])))


def test_domain_validation():
  with pytest.raises(ValueError, match="missing parameters"):
    Domain.from_config("x", {"pole_mass": 1.0}, cartpole.PARAM_NAMES)
  with pytest.raises(ValueError, match="low 2.0 > high 1.0"):
    Domain("x", (("a", 2.0, 1.0),))
  bad = {n: (0.1, 0.2) for n in cartpole.PARAM_NAMES}
  bad["hinge_friction"] = 0.0
  with pytest.raises(ValueError, match="hinge_friction must be > 0"):
    cartpole.CartPole().validate_domain(Domain.from_config("x", bad, cartpole.PARAM_NAMES))


def test_swingup_reward_hand_values():
  r = cartpole.swingup_reward
  assert np.isclose(float(r(0.0, 1.0, 0.0, 0.0)), 1.0)        # upright, centred, still, no control
  assert np.isclose(float(r(0.0, -1.0, 0.0, 0.0)), 0.0)       # hanging down
  # full control costs 1/5: (4 + 0)/5
  assert np.isclose(float(r(0.0, 1.0, 0.0, 1.0)), 0.8)
  # x at the margin (2 m): centered = (1 + 0.1)/2
  assert np.isclose(float(r(2.0, 1.0, 0.0, 0.0)), 0.55, atol=1e-6)
  # theta_dot at the margin (5 rad/s): small_velocity = (1 + 0.1)/2
  assert np.isclose(float(r(0.0, 1.0, 5.0, 0.0)), 0.55, atol=1e-6)


def test_solver_caps_do_not_truncate_the_solve():
  """The MJCF caps the constraint solver at 4 iterations / 16 line-search steps (4x fewer MJX flops than the
  defaults 100 / 50, whose float32 line search rarely meets its tolerance and runs to the cap). The caps must not
  change the physics: with the hinge friction of the real world and random forces, MuJoCo C with the shipped
  options follows the default-option trajectory exactly for 500 steps (10 s). (8 line-search steps would not:
  ~1e-3 apart after 10 steps.)"""
  import mujoco

  def model(iterations=4, ls_iterations=16):
    m = cartpole.CartPole(solver_iterations=iterations, solver_ls_iterations=ls_iterations).mj_model()
    m.dof_frictionloss[1] = 0.03
    return m

  shipped, reference = model(), model(100, 50)
  assert (shipped.opt.iterations, shipped.opt.ls_iterations) == (4, 16)
  assert (reference.opt.iterations, reference.opt.ls_iterations) == (100, 50)
  default = cartpole.CartPole().mj_model().opt  # the constructor's defaults are the XML's
  assert (default.iterations, default.ls_iterations) == (4, 16)
  with pytest.raises(ValueError, match="solver_iterations"):
    cartpole.CartPole(solver_iterations=0)
  d1, d2 = mujoco.MjData(shipped), mujoco.MjData(reference)
  d1.qpos[1] = d2.qpos[1] = np.pi
  rng = np.random.default_rng(0)
  err = 0.0
  for _ in range(500):
    d1.ctrl[0] = d2.ctrl[0] = rng.uniform(-1.0, 1.0)
    mujoco.mj_step(shipped, d1)
    mujoco.mj_step(reference, d2)
    err = max(err, np.abs(d1.qpos - d2.qpos).max(), np.abs(d1.qvel - d2.qvel).max())
  assert err < 1e-9
  assert np.abs(d1.qvel).max() > 0.1  # the trajectory actually moved
