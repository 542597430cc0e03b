"""Oracle ceilings: the batched MJX rollout from a restored C-twin state is the twin's own future, and the oracle
planner with the true simulator does what the true objective asks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.adapt import evaluation
from simdist_jax.analysis import oracle
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_real_env, make_task
from simdist_jax.planner import mppi


@pytest.fixture(scope="module")
def envs(cartpole_cfg):
  task = make_task(cartpole_cfg)
  real = make_real_env(cartpole_cfg, "real")
  mjx_env = MjxEnv(task, make_domain(cartpole_cfg, "real", task), sim_domain=make_domain(cartpole_cfg, "sim", task))
  return real, mjx_env


def test_rollout_from_a_restored_twin_state_is_the_twins_future(envs):
  """Mid-episode, the MJX rollout of 3 chunks from `snapshot_state(get_state())` matches the C twin stepping the
  same chunks from the same state (rewards and noise-free state), and leaves the twin where it was."""
  real, mjx_env = envs
  real.reset(jax.random.PRNGKey(3))
  rng = np.random.default_rng(0)
  for a in rng.uniform(-1, 1, size=(30, 1)).astype(np.float32):
    real.step(a)
  snap = real.get_state()
  chunks = rng.uniform(-1, 1, size=(3, 10, 1)).astype(np.float32)
  start = jax.jit(oracle.snapshot_state, static_argnums=0)(mjx_env, snap["params"], snap["qpos"], snap["qvel"],
                                                           snap["task_info"], snap["rng"])
  roll = jax.jit(jax.vmap(lambda c: oracle.rollout(mjx_env, start, c)))(jnp.asarray(chunks))
  for i, chunk in enumerate(chunks):
    real.set_state(snap)
    rewards, priv = [], []
    for a in chunk:
      o, r, _, _ = real.step(a)
      rewards.append(r)
      priv.append(o["privileged_state"])
    np.testing.assert_allclose(np.asarray(roll.rewards[i]), rewards, atol=2e-4)
    np.testing.assert_allclose(np.asarray(roll.priv[i]), np.stack(priv), atol=2e-3)
  real.set_state(snap)
  np.testing.assert_array_equal(real.get_state()["qpos"], snap["qpos"])


def test_ve_scorer_masks_the_domain_parameters_to_sim_nominal(envs):
  """The `ve` scorer feeds the critic the sim-nominal parameters (normalized 0), never the real ones (which lie
  far outside the critic's [-1, 1] training range)."""
  real, mjx_env = envs
  real.reset(jax.random.PRNGKey(1))
  snap = real.get_state()
  start = oracle.snapshot_state(mjx_env, snap["params"], snap["qpos"], snap["qvel"], snap["task_info"],
                                snap["rng"])
  acts = jnp.zeros((4, 1))
  k = len(mjx_env.task.param_names)
  own = oracle.rollout(mjx_env, start, acts)
  masked = oracle.rollout(mjx_env, start, acts, mjx_env.sim_domain.nominal(), mjx_env.sim_domain)
  assert np.abs(np.asarray(own.priv[:, -k:])).max() > 1.5  # the real params, normalized over the sim ranges
  np.testing.assert_allclose(np.asarray(masked.priv[:, -k:]), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(masked.priv[:, :-k]), np.asarray(own.priv[:, :-k]), atol=1e-6)


class _ConstantPolicyModel:
  """The smallest world-model stand-in the oracle needs: a zero policy chunk and a latent = the observation."""

  class spec:  # noqa: N801
    history, horizon = 2, 40

  def context(self, variables, ph, ah, p, e):
    return p

  def policy_chunk(self, variables, ctx, commands):
    return jnp.zeros((40, 1))

  def encode(self, variables, p, e):
    return p


@pytest.mark.slow
def test_true_scorer_oracle_balances_the_pole_from_upright(envs, cartpole_cfg):
  """From the upright state, MPPI over the TRUE simulator with the true reward (scorer `true`, h = 40 steps = 0.8 s)
  keeps the pole up in the real world; the zero-action reference from the same state lets it fall. (With h = 10,
  0.2 s, the true reward alone does not hold it: the control cost of a push outweighs the small loss of uprightness
  within 0.2 s, so the planner needs the value bootstrap at the model's T = 10; docs/results.md.)"""
  real, mjx_env = envs
  cfg = mppi.PlannerConfig(num_samples=64, num_prior_samples=4, iterations=3, num_elites=8, horizon=40,
                           inverse_temperature=1.0, weighting="spread", init_std=0.6, min_std=0.05,
                           warm_start="shift", action_low=-1.0, action_high=1.0)
  ctrl = oracle.OracleController(cfg, _ConstantPolicyModel(), None, real, mjx_env, "true", jax.random.PRNGKey(0))

  def upright_episode(controller, steps=60):
    real.reset(jax.random.PRNGKey(5))
    real.data.qpos[:] = [0.0, 0.05]
    real.data.qvel[:] = 0.0
    controller.reset(jax.random.PRNGKey(0))
    ups = []  # per step: cos(theta) > 0.9
    obs = {"state": np.asarray(real.task.clean_state(real.task.physics(real.data)))}
    for _ in range(steps):
      a = controller(obs["state"][:5], np.zeros(0, np.float32), None)
      obs, _, _, info = real.step(a)
      ups.append(real.task.success(info["metrics"]))
    return np.asarray(ups, float)

  ups = upright_episode(ctrl)
  assert ups.mean() >= 0.95 and ups[-20:].all()  # balanced (a short dip at most while it catches the pole)
  zero = upright_episode(evaluation.FunctionController(real.task.reference_controllers()["zero_action"]))
  assert not zero[-10:].any()  # from the same state, doing nothing lets the pole fall
  with pytest.raises(ValueError, match="scorer"):
    oracle.make_oracle_act(cfg, _ConstantPolicyModel(), mjx_env, "nope")
  with pytest.raises(ValueError, match="critic_apply"):
    oracle.make_oracle_act(dataclasses.replace(cfg), _ConstantPolicyModel(), mjx_env, "ve")
