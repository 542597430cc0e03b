"""The MuJoCo C twin matches the MJX env for the same domain, initial key and actions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.envs.registry import make_real_env


def _actions(n):
  return (0.8 * np.sin(0.15 * np.arange(n)))[:, None].astype(np.float32)


@pytest.mark.parametrize("seed", [0, 5])
def test_mjx_and_mujoco_c_agree(cartpole_cfg, cartpole_env, seed):
  env, reset, step = cartpole_env
  from simdist_jax.envs.real import RealEnv
  real = RealEnv(env.task, env.domain, sim_domain=env.sim_domain)  # same (sim) domain in both
  key = jax.random.PRNGKey(seed)
  s = reset(key)
  obs = real.reset(key)
  for k in s.info["domain"]:
    assert np.isclose(float(s.info["domain"][k]), float(real.params[k]))
  np.testing.assert_allclose(np.asarray(s.obs["privileged_state"]), obs["privileged_state"], atol=1e-6)
  errs, rerrs = [], []
  for a in _actions(100):
    s = step(s, jnp.asarray(a))
    obs, r, done, info = real.step(a)
    errs.append(np.abs(np.asarray(s.obs["privileged_state"]) - obs["privileged_state"]).max())
    rerrs.append(abs(float(s.reward) - r))
    assert not done
  # float32 (MJX) vs float64 (C): 100 control steps (2 s) agree to 1e-3 in every state entry.
  assert max(errs) < 1e-3, max(errs)
  assert max(rerrs) < 1e-3
  # and observation noise is the same draw (same key stream)
  np.testing.assert_allclose(np.asarray(s.obs["state"]), obs["state"], atol=1e-3)


def test_real_domain_is_shifted_and_fixed(cartpole_cfg):
  real = make_real_env(cartpole_cfg)
  real.reset(jax.random.PRNGKey(0))
  p0 = {k: float(v) for k, v in real.params.items()}
  real.reset(jax.random.PRNGKey(1))
  assert p0 == {k: float(v) for k, v in real.params.items()}  # fixed values
  sim = cartpole_cfg.domain.sim
  outside = [k for k, v in p0.items() if not (sim[k][0] <= v <= sim[k][1])]
  assert {"pole_mass", "motor_gain", "hinge_friction"} <= set(outside)
  assert np.isclose(real.model.body_mass[2], cartpole_cfg.domain.real.pole_mass)


def test_real_env_bad_input(cartpole_cfg):
  real = make_real_env(cartpole_cfg)
  with pytest.raises(RuntimeError, match="before reset"):
    real.step(np.zeros(1, np.float32))
  real.reset(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="non-finite"):
    real.step(np.array([np.nan], np.float32))
  with pytest.raises(ValueError, match="trailing shape"):
    real.step(np.zeros(3, np.float32))


def test_real_env_truncates_at_episode_length(cartpole_cfg):
  real = make_real_env(cartpole_cfg)
  real.episode_length = 5
  real.reset(jax.random.PRNGKey(0))
  dones = [real.step(np.zeros(1, np.float32))[2] for _ in range(5)]
  assert dones == [False, False, False, False, True]


def test_real_env_state_snapshot_replays_exactly(cartpole_cfg):
  from simdist_jax.envs.registry import make_real_env
  env = make_real_env(cartpole_cfg, "real")
  env.reset(jax.random.PRNGKey(3))
  for _ in range(5):
    env.step(np.array([0.7]))
  snap = env.get_state()
  actions = [np.array([a]) for a in (-0.4, 1.0, 0.2)]
  first = [env.step(a) for a in actions]
  env.step(np.array([-1.0]))  # wander off, then come back
  env.set_state(snap)
  second = [env.step(a) for a in actions]
  for (o1, r1, d1, i1), (o2, r2, d2, i2) in zip(first, second, strict=False):
    np.testing.assert_array_equal(o1["state"], o2["state"])  # same noise draw, same physics
    np.testing.assert_array_equal(o1["privileged_state"], o2["privileged_state"])
    assert r1 == r2 and d1 == d2 and i1["t"] == i2["t"]
