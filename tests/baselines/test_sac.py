"""The SAC core of RLPD: the tanh-Gaussian density, the action box maps, an update that finds a bandit's optimum,
and RLPD's symmetric sampler at the configured share."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.baselines import online
from simdist_jax.baselines import sac
from simdist_jax.data import scaler as scaler_lib
from simdist_jax.data import windows
from simdist_jax.world_model import model as model_lib
from tests.world_model import tiny_config

DIMS = {"proprio": 1, "extero": 0, "extero_shape": (), "action": 1, "command": 0}


def _cfg(**kw):
  c = dict(hidden=(32, 32), num_critics=2, critic_subset=2, discount=0.0, tau=0.05, actor_lr=3e-3, critic_lr=3e-3,
           temperature_lr=3e-3, init_temperature=0.1, target_entropy=None, backup_entropy=True)
  c.update(kw)
  return sac.SACConfig.from_config(c)


def test_tanh_gaussian_log_prob_is_the_change_of_variables():
  mu, log_std = jnp.array([0.3, -1.2]), jnp.array([-0.5, 0.2])
  y, logp = sac.tanh_gaussian_sample(mu, log_std, jax.random.PRNGKey(0))
  u = jnp.arctanh(y)
  sd = jnp.exp(log_std)
  expected = jnp.sum(-0.5 * ((u - mu) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi) - jnp.log(1 - y ** 2))
  assert float(logp) == pytest.approx(float(expected), rel=1e-4)
  assert np.all(np.abs(np.asarray(y)) < 1)


def test_action_box_maps_invert_each_other():
  low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])
  y = jnp.array([-1.0, 0.5])
  np.testing.assert_allclose(sac.to_env(y, low, high), [-2.0, 0.75])
  np.testing.assert_allclose(sac.from_env(sac.to_env(y, low, high), low, high), y, atol=1e-6)
  np.testing.assert_allclose(sac.from_env(jnp.array([5.0, -1.0]), low, high), [1.0, -1.0])  # clipped into the box


def test_update_finds_the_optimum_of_a_bandit():
  # One state, reward -(a - 0.5)^2 with a in [-1, 1], discount 0: Q(s, a) = r(a), so the actor's tanh(mu) must
  # move to 0.5 (from wherever it starts) and the critic must fit r.
  spec = model_lib.make_spec(tiny_config(DIMS).model, DIMS)
  nets = sac.make_nets(spec, _cfg())
  state = sac.init_state(nets, jax.random.PRNGKey(0))
  scaler = model_lib.identity_scaler(DIMS)
  low, high = jnp.array([-1.0]), jnp.array([1.0])
  rng = np.random.default_rng(0)
  def batches(g, b=128):
    a = rng.uniform(-1, 1, size=(g, b, 1)).astype(np.float32)
    z = np.zeros((g, b, 0), np.float32)
    ones = np.ones((g, b, 1), np.float32)
    return {"proprio": ones, "extero": z, "command": z, "action": a, "reward": -(a[..., 0] - 0.5) ** 2,
            "next_proprio": ones, "next_extero": z, "next_command": z, "not_done": np.ones((g, b), np.float32)}
  for i in range(300):
    state, m = sac.update(nets, state, scaler, batches(4), low, high, jax.random.PRNGKey(i))
  obs = (jnp.ones((1, 1)), jnp.zeros((1, 0)), jnp.zeros((1, 0)))
  mu, _ = jax.vmap(nets.actor.apply, in_axes=(None, 0, 0, 0))({"params": state.actor}, *obs)
  assert float(jnp.tanh(mu[0, 0])) == pytest.approx(0.5, abs=0.1)
  q = sac._q(nets, state.critic, (jnp.ones((3, 1)), jnp.zeros((3, 0)), jnp.zeros((3, 0))),
             jnp.array([[-1.0], [0.5], [1.0]]))
  np.testing.assert_allclose(np.asarray(q).mean(0), [-2.25, 0.0, -0.25], atol=0.15)
  assert int(state.steps) == 1200 and float(m["critic/loss"]) < 0.05


def _replay(n, reward):
  z = np.zeros((n, 0), np.float32)
  return {"proprio": np.full((n, 1), 1.0, np.float32), "extero": z, "command": z, "action": np.zeros((n, 1)),
          "reward": np.full(n, reward, np.float32), "next_proprio": np.ones((n, 1)), "next_extero": z,
          "next_command": z, "not_done": np.ones(n, np.float32)}


def test_rlpd_batches_mix_sim_and_real_at_the_configured_share():
  m = 200
  arrays = {"proprio": np.zeros((m, 1), np.float32), "extero": np.zeros((m, 0), np.float32),
            "action": np.zeros((m, 1), np.float32), "command": np.zeros((m, 0), np.float32),
            "reward": np.full(m, -3.0, np.float32), "value": np.zeros(m, np.float32),
            "expert_flag": np.ones(m, np.uint8), "mask": np.ones(m, np.uint8)}
  ids = np.repeat(np.arange(10, dtype=np.int32), 20)
  ds = windows.WindowDataset(arrays, ids, 0, 1, scaler_lib.compute_stats(arrays, 1e-4), DIMS, 0.0,
                             jax.random.PRNGKey(0), 0, 0)
  replay = online.Replay()
  replay.add(_replay(30, 7.0))
  for share, n_sim in ((0.5, 5), (0.25, 2), (0.0, 0)):
    b = online.draw_batches(10, share, replay, ds, np.random.default_rng(0), jax.random.PRNGKey(0), 3)
    assert b["reward"].shape == (3, 10)
    r = np.asarray(b["reward"])
    assert (r[:, :10 - n_sim] == 7.0).all() and (r[:, 10 - n_sim:] == -3.0).all(), (share, r)
    assert (np.asarray(b["not_done"]) == 1.0).all()
  b = online.draw_batches(10, 0.5, None, ds, np.random.default_rng(0), jax.random.PRNGKey(0), 2)  # sim only
  assert (np.asarray(b["reward"]) == -3.0).all()
  with pytest.raises(ValueError, match="empty"):
    online.Replay().sample(np.random.default_rng(0), 3)
