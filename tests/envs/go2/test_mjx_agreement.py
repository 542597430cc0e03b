"""MJX env vs the MuJoCo C twin on the same key and actions (slow: the MJX step compiles in ~1-2 min on CPU).

Tolerance reached (flat ground, random actions sigma 0.5, DR domain, 25 control steps = 0.5 s, CPU float32
MJX vs float64 C): with PRNGKey(0) qpos <= 3.5e-5, qvel <= 1e-3, reward <= 2e-6; with PRNGKey(3) (used here)
qpos agrees to <= 1.7e-4 for 13 steps, then a contact switch resolves differently and qpos differs by up to
4.2e-2 (qvel 2.4, reward 3.9e-3) by 0.5 s: contact switching amplifies float32/float64 round-off. The test prints
the per-step maxima and asserts the bounds below.
The fast C-only counterpart is test_task.py::test_real_env_reset_applies_episode_domain_and_obs_layout.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.config import load_config
from simdist_jax.envs import registry
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.real import RealEnv


@pytest.mark.slow
def test_mjx_matches_mujoco_c_on_a_short_rollout():
  cfg = load_config("experiments/configs/go2.py:small")
  task = registry.make_task(cfg)
  sim = registry.make_domain(cfg, "sim", task)
  env = MjxEnv(task, sim)
  step = jax.jit(env.step)
  key = jax.random.PRNGKey(3)
  state = jax.jit(env.reset)(key)
  twin = RealEnv(task, sim, sim_domain=sim)
  twin.reset(key)
  np.testing.assert_allclose(np.asarray(state.pipeline_state.qpos), twin.data.qpos, atol=1e-6)
  rng = np.random.default_rng(0)
  dq, dv, dr = [], [], []
  for _ in range(25):
    a = (0.5 * rng.normal(size=12)).astype(np.float32)
    state = step(state, jnp.asarray(a))
    _, r, _, _ = twin.step(a)
    dq.append(np.abs(np.asarray(state.pipeline_state.qpos) - twin.data.qpos).max())
    dv.append(np.abs(np.asarray(state.pipeline_state.qvel) - twin.data.qvel).max())
    dr.append(abs(float(state.reward) - r))
    assert not bool(state.done)
  print(f"max |dqpos| per step: {np.round(dq, 6).tolist()}\nmax |dqvel|: {max(dv):.2e}, max |dr|: {max(dr):.2e}")
  assert max(dq[:12]) < 1e-3, dq       # first 0.24 s: float32 vs float64 round-off (measured <= 7e-5)
  assert max(dq) < 0.1, dq             # 0.5 s: after a contact switch (measured 4.2e-2)
  assert max(dv) < 5.0, dv             # measured 2.4
  assert max(dr) < 1e-2, dr            # measured 3.9e-3
