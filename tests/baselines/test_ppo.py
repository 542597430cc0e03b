"""PPO finetuning of the expert: GAE and the clipped surrogate on hand-worked numbers, the adaptive-KL rule, an
update that makes the better action of a one-step problem more likely, and the agent's round 0 being exactly the
saved expert (its frozen normalizer applied)."""

import types

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.baselines import ppo
from simdist_jax.envs.registry import make_task
from simdist_jax.experts import checkpoints as ckpt
from simdist_jax.experts import ppo as expert_ppo
from tests.conftest import CARTPOLE


def _cfg(**kw):
  c = dict(learning_rate=3e-3, learning_rate_schedule="NONE", desired_kl=0.01, entropy_cost=0.0, discounting=0.99,
           gae_lambda=0.95, clipping_epsilon=0.2, clipping_epsilon_value=0.0, vf_loss_coefficient=0.5,
           max_grad_norm=1.0, num_minibatches=4, num_updates_per_batch=4, normalize_advantage=True)
  c.update(kw)
  return ppo.PPOConfig.from_config(c)


def test_gae_separates_termination_from_truncation():
  # Two episodes: steps 0-1 end in a failure at step 1 (no bootstrap), step 2 is a one-step episode cut by the
  # time limit (bootstraps from V of its true next state, 10). gamma 0.9, lambda 0.5.
  #   delta = r + gamma not_done V' - V = [1 + 0.9 * 1 - 0.5, 2 + 0 - 1, 3 + 0.9 * 10 - 2] = [1.4, 1, 10]
  #   A_2 = 10; A_1 = 1 (its episode ends: nothing of step 2 flows back); A_0 = 1.4 + 0.9 * 0.5 * 1 = 1.85
  adv, target = ppo.gae(reward=jnp.array([1.0, 2.0, 3.0]), value=jnp.array([0.5, 1.0, 2.0]),
                        next_value=jnp.array([1.0, 4.0, 10.0]), not_done=jnp.array([1.0, 0.0, 1.0]),
                        last=jnp.array([0.0, 1.0, 1.0]), discount=0.9, lam=0.5)
  np.testing.assert_allclose(adv, [1.85, 1.0, 10.0], rtol=1e-6)
  np.testing.assert_allclose(target, [2.35, 2.0, 12.0], rtol=1e-6)
  # The same steps in one episode cut at step 2 (step 1 not a failure): everything bootstraps and flows back.
  #   delta_1 = 2 + 0.9 * 4 - 1 = 4.6; A_1 = 4.6 + 0.45 * 10 = 9.1; A_0 = 1.4 + 0.45 * 9.1 = 5.495
  adv, _ = ppo.gae(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 1.0, 2.0]), jnp.array([1.0, 4.0, 10.0]),
                   jnp.ones(3), jnp.array([0.0, 0.0, 1.0]), 0.9, 0.5)
  np.testing.assert_allclose(adv, [5.495, 9.1, 10.0], rtol=1e-6)


def test_clipped_surrogate_on_hand_numbers():
  ratio = jnp.array([1.1, 1.5, 0.5, 1.5, 0.5, 0.9])
  adv = jnp.array([2.0, 2.0, 2.0, -2.0, -2.0, -2.0])
  obj = ppo.clipped_surrogate(ratio, adv, 0.2)
  # inside the range: rho A; A > 0: capped at (1 + eps) A above, unclipped (pessimistic) below; A < 0: unclipped
  # above, (1 - eps) A below
  np.testing.assert_allclose(obj, [2.2, 2.4, 1.0, -3.0, -1.6, -1.8], rtol=1e-6)
  grad = jax.grad(lambda r: jnp.sum(ppo.clipped_surrogate(r, adv, 0.2)))(ratio)
  np.testing.assert_allclose(grad, [2.0, 0.0, 2.0, -2.0, 0.0, -2.0])  # no gradient where the clip is active


def test_adaptive_kl_rule_is_braxs():
  lr = jnp.float32(1e-3)
  assert float(ppo.adaptive_kl_lr(lr, jnp.float32(0.03), 0.01)) == pytest.approx(1e-3 / 1.5)
  assert float(ppo.adaptive_kl_lr(lr, jnp.float32(0.001), 0.01)) == pytest.approx(1.5e-3)
  assert float(ppo.adaptive_kl_lr(lr, jnp.float32(0.01), 0.01)) == pytest.approx(1e-3)
  assert float(ppo.adaptive_kl_lr(lr, jnp.float32(0.0), 0.01)) == pytest.approx(1e-3)  # KL 0: unchanged
  assert float(ppo.adaptive_kl_lr(jnp.float32(1e-2), jnp.float32(1e-4), 0.01)) == pytest.approx(1e-2)  # bound


def test_update_makes_the_better_action_more_likely():
  # One state, one-step episodes (each a failure: no bootstrap), reward 1 when the pre-tanh sample is > 0: the
  # PPO update must raise P(u > 0) = Phi(loc / scale); the frozen normalizer stays as it was.
  nets = ppo.Nets(2, 1, (16,), (16,), "tanh", "tanh_normal", _cfg())
  state = ppo.random_state(nets, jax.random.PRNGKey(0))
  state = state._replace(obs_mean=jnp.array([0.5, -1.0]), obs_std=jnp.array([2.0, 0.5]))
  bn = ppo.brax_networks(nets)
  dist = bn.parametric_action_distribution
  obs = jnp.tile(jnp.array([[1.0, 0.0]]), (256, 1))

  def p_better(st):
    d = dist.create_dist(bn.policy_network.apply(ppo._stats(st), st.policy, obs[:1]))
    return float(norm.cdf(d.loc[0, 0] / d.scale[0, 0]))

  before = p_better(state)
  for i in range(3):  # three rounds of fresh on-policy samples
    raw = dist.sample_no_postprocessing(bn.policy_network.apply(ppo._stats(state), state.policy, obs),
                                        jax.random.PRNGKey(100 + i))
    data = {"privileged_state": obs, "next_privileged_state": obs, "raw_action": raw,
            "reward": (raw[:, 0] > 0).astype(jnp.float32), "not_done": jnp.zeros(256), "last": jnp.ones(256)}
    state, m = ppo.update(nets, state, data, jax.random.PRNGKey(i))
    assert all(np.isfinite(v) for v in m.values())
  after = p_better(state)
  assert after > before + 0.1, (before, after)
  assert 0.0 < m["ppo/kl"] and m["ppo/clip_frac"] >= 0.0 and int(state.steps) == 3 * 4 * 4
  np.testing.assert_array_equal(state.obs_mean, [0.5, -1.0])
  np.testing.assert_array_equal(state.obs_std, [2.0, 0.5])


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory):
  """A saved CartPole expert (random networks, a non-trivial normalizer) in a fresh workdir."""
  cfg = config_lib.load_config(CARTPOLE + ":small", ["expert.policy_hidden=[16, 16]", "expert.value_hidden=[16]"])
  wd = tmp_path_factory.mktemp("ppo_run")
  dims = make_task(cfg).dims
  s, a = int(dims["privileged"]), int(dims["action"])
  nets = ppo.make_nets(cfg.expert, s, a, ppo.PPOConfig.from_config(cfg.baselines.ppo, cfg.expert))
  rand = ppo.random_state(nets, jax.random.PRNGKey(7))
  rng = np.random.default_rng(0)
  mean = rng.normal(size=s).astype(np.float32)
  std = rng.uniform(0.2, 3.0, size=s).astype(np.float32)
  normalizer = types.SimpleNamespace(mean={ckpt.OBS_KEY: mean}, std={ckpt.OBS_KEY: std})
  sched = expert_ppo.Schedule.from_config(cfg.expert)
  ed = paths.expert_dir(wd)
  bdims = {"privileged": s, "action": a}
  expert_ppo.save_actor(ed, cfg, bdims, sched, sched.num_iterations, (normalizer, rand.policy, rand.value))
  expert_ppo.save_critic(ed, cfg, bdims, sched, sched.num_iterations, (normalizer, rand.policy, rand.value))
  obs = (rng.normal(size=(8, s)) * 2).astype(np.float32)
  return cfg, wd, obs, mean, std


def test_agent_init_is_the_expert_with_its_frozen_normalizer(expert_run):
  cfg, wd, obs, mean, std = expert_run
  agent = ppo.PPOAgent(cfg, wd)
  state, row = agent.init(jax.random.PRNGKey(0), lambda m: None)
  assert row == {"ppo/expert_iteration": int(cfg.expert.num_iterations)}
  np.testing.assert_array_equal(state.obs_mean, mean)
  np.testing.assert_array_equal(state.obs_std, std)
  params, apply_fn = ckpt.load_policy(paths.expert_dir(wd), -1, cfg)
  want = np.stack([np.asarray(jax.jit(apply_fn)(params, o)) for o in obs])  # as expert-eval acts in the twin
  ctrl = agent.controller(state, True)
  ctrl.reset(jax.random.PRNGKey(1))
  got = np.stack([ctrl({"state": np.zeros(5, np.float32), "privileged_state": o}) for o in obs])
  np.testing.assert_array_equal(got, want)
  unnormalized = ppo.PPOController(agent.nets, state._replace(obs_mean=jnp.zeros_like(state.obs_mean),
                                                              obs_std=jnp.ones_like(state.obs_std)), True)
  assert not np.allclose([unnormalized({"privileged_state": o}) for o in obs], want, atol=1e-3)
  v_params, v_apply = ckpt.load_critic(paths.expert_dir(wd), cfg)
  bn = ppo.brax_networks(agent.nets)
  np.testing.assert_allclose(bn.value_network.apply(ppo._stats(state), state.value, obs),
                             jax.vmap(v_apply, in_axes=(None, 0))(v_params, obs), rtol=1e-6, atol=1e-6)
  # Collection: samples of the same policy, reproducible from the episode key, the pre-tanh sample handed on.
  samp = agent.controller(state, False)
  samp.reset(jax.random.PRNGKey(3))
  a1 = samp({"privileged_state": obs[0]})
  raw = samp.transition_extras()["raw_action"]
  np.testing.assert_allclose(a1, np.tanh(raw), atol=1e-6)
  samp.reset(jax.random.PRNGKey(3))
  np.testing.assert_array_equal(samp({"privileged_state": obs[0]}), a1)
  assert ctrl.transition_extras() == {}
  # Saved states read back into the template (resume).
  back = flax.serialization.from_bytes(agent.template(jax.random.PRNGKey(9)), flax.serialization.to_bytes(state))
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(x, y)
