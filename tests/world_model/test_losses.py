"""Eq. 2 / Eq. 3 losses: BC mask by hand, window alignment, oracle check of each term against the public model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.world_model import finetune as ft
from simdist_jax.world_model import losses
from simdist_jax.world_model import model as model_lib
from tests.world_model import tiny_config

DIMS = {"proprio": 3, "extero": 0, "extero_shape": (), "action": 2, "command": 1}


def test_bc_mask_zero_after_first_non_expert_step():
  flags = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0])
  np.testing.assert_array_equal(losses.bc_mask(flags), [1, 1, 0, 0, 0])
  pred = jnp.zeros((5, 2))
  target = jnp.arange(1.0, 11.0).reshape(5, 2)  # rows (1,2) (3,4) (5,6) (7,8) (9,10)
  # Only rows 0 and 1 count; the mean still divides by all 10 entries: (1 + 4 + 9 + 16) / 10 = 3.0.
  assert float(losses.masked_bc_loss(pred, target, flags)) == pytest.approx(3.0)
  assert float(losses.masked_bc_loss(pred, target, jnp.zeros(5))) == 0.0


def test_split_window_alignment():
  H, T = 3, 2
  L = H + T + 1
  step = jnp.arange(L, dtype=jnp.float32)  # each entry holds its window index
  w = {"proprio": jnp.stack([step] * 3, -1), "extero": jnp.zeros((L, 0)), "action": jnp.stack([step] * 2, -1),
       "command": step[:, None], "reward": step, "value": step, "expert_flag": jnp.ones(L)}
  s = losses.split_window(w, H, T)
  np.testing.assert_array_equal(s.proprio_hist[:, 0], [0, 1, 2])
  np.testing.assert_array_equal(s.action_hist[:, 0], [0, 1, 2])
  assert float(s.proprio_t[0]) == 3.0
  np.testing.assert_array_equal(s.actions[:, 0], [3, 4])  # a_t, a_{t+1}
  np.testing.assert_array_equal(s.commands[:, 0], [3, 4, 5])  # c_t..c_{t+T}
  np.testing.assert_array_equal(s.proprio_next[:, 0], [4, 5])  # latent targets from o_{t+1..t+T}
  np.testing.assert_array_equal(s.reward, [3, 4])  # r_t..r_{t+T-1}
  np.testing.assert_array_equal(s.value, [4, 5])  # V(s_{t+1})..V(s_{t+T})
  with pytest.raises(ValueError, match="H \\+ T \\+ 1"):
    losses.split_window({k: v[:-1] for k, v in w.items()}, H, T)


def _setup(**overrides):
  cfg = tiny_config(DIMS, **overrides)
  wm = model_lib.make_world_model(cfg.model, DIMS)
  v = wm.init(jax.random.key(0))
  stats = jax.tree.map(np.asarray, model_lib.identity_scaler(DIMS))
  stats["reward"] = {"mean": np.float32(1.0), "std": np.float32(2.0)}
  stats["proprio"] = {"mean": np.array([0.5, 0.0, -1.0], np.float32), "std": np.array([1.0, 2.0, 0.5], np.float32)}
  v = wm.with_scaler(v, stats)
  B, L = 4, wm.spec.history + wm.spec.horizon + 1
  k = jax.random.split(jax.random.key(3), 5)
  batch = {"proprio": jax.random.normal(k[0], (B, L, 3)), "extero": jnp.zeros((B, L, 0)),
           "action": jax.random.normal(k[1], (B, L, 2)), "command": jax.random.normal(k[2], (B, L, 1)),
           "reward": jax.random.normal(k[3], (B, L)), "value": jax.random.normal(k[4], (B, L)),
           "expert_flag": jnp.ones((B, L)).at[0, 5].set(0.0)}
  return cfg, wm, v, batch


def test_pretrain_loss_matches_public_functions():
  cfg, wm, v, batch = _setup()
  loss_fn = losses.make_pretrain_loss(wm, cfg.model)
  total, m = jax.jit(lambda p, s, b, k: loss_fn(p, s, b, k, False))(v["params"], v["scaler"], batch, jax.random.key(0))
  H, T = wm.spec.history, wm.spec.horizon
  sc = v["scaler"]

  def oracle(win):  # the same terms through the public raw-unit API
    w = losses.split_window(win, H, T)
    ctx = wm.context(v, w.proprio_hist, w.action_hist, w.proprio_t, w.extero_t)
    z_hat = wm.predict_latents(v, ctx, w.actions)
    z_tgt = jax.vmap(lambda p, e: wm.encode(v, p, e))(w.proprio_next, w.extero_next)
    r, val = wm.predict_returns(v, ctx, z_hat, w.actions, w.commands)
    a = wm.policy_chunk(v, ctx, w.commands)
    return jnp.stack([
      jnp.mean((z_hat - z_tgt) ** 2),
      jnp.mean((model_lib.scale(sc, "reward", r) - model_lib.scale(sc, "reward", w.reward)) ** 2),
      jnp.mean((model_lib.scale(sc, "value", val) - model_lib.scale(sc, "value", w.value)) ** 2),
      losses.masked_bc_loss(model_lib.scale(sc, "action", a), model_lib.scale(sc, "action", w.actions),
                            w.expert_flag)])

  ref = jnp.mean(jax.jit(jax.vmap(oracle))(batch), axis=0)
  for i, name in enumerate(["latent", "reward", "value", "action"]):
    assert float(m[f"train/loss/{name}"]) == pytest.approx(float(ref[i]), rel=1e-4, abs=1e-6), name
  assert float(total) == pytest.approx(float(ref[0] + ref[1] + ref[2] + 4.0 * ref[3]), rel=1e-5)
  assert float(m["train/bc_mask_frac"]) < 1.0  # window 0 has a non-expert step in its future


def test_finetune_loss_is_latent_term_and_grads_only_trainable():
  cfg, wm, v, batch = _setup()
  pre = losses.make_pretrain_loss(wm, cfg.model)
  fl = losses.make_finetune_loss(wm, cfg.model)
  trainable, frozen = ft.split_params(v["params"])
  key = jax.random.key(0)
  lat, m = fl(trainable, frozen, v["scaler"], batch, key, False)
  _, mp = pre(v["params"], v["scaler"], batch, key, False)
  assert float(lat) == pytest.approx(float(mp["train/loss/latent"]), rel=1e-5)
  assert set(m) == {"finetune/loss", "finetune/loss/latent"}
  grads = jax.grad(lambda tr: fl(tr, frozen, v["scaler"], batch, key, False)[0])(trainable)
  assert set(grads) == {"dynamics"}
  assert float(model_lib.param_count(grads)) > 0 and float(jnp.abs(jax.tree.leaves(grads)[0]).sum()) > 0


def test_finetune_head_consistency_matches_public_functions_and_trains_only_dynamics():
  """The term lambda * [(R(z_hat) - R(E(o)))^2 + (V(z_hat) - V(E(o)))^2] in scaled units, through the public raw-unit API;
  lambda = 0 is Eq. 3 exactly; the gradient still reaches only the dynamics."""
  cfg, wm, v, batch = _setup()
  cfg.model.finetune.head_consistency = 0.5
  fl = losses.make_finetune_loss(wm, cfg.model)
  trainable, frozen = ft.split_params(v["params"])
  key = jax.random.key(0)
  total, m = fl(trainable, frozen, v["scaler"], batch, key, False)
  H, T, sc = wm.spec.history, wm.spec.horizon, v["scaler"]

  def oracle(win):
    w = losses.split_window(win, H, T)
    ctx = wm.context(v, w.proprio_hist, w.action_hist, w.proprio_t, w.extero_t)
    z_hat = wm.predict_latents(v, ctx, w.actions)
    z_tgt = jax.vmap(lambda p, e: wm.encode(v, p, e))(w.proprio_next, w.extero_next)
    r_m, v_m = wm.predict_returns(v, ctx, z_hat, w.actions, w.commands)
    r_t, v_t = wm.predict_returns(v, ctx, z_tgt, w.actions, w.commands)
    r_s = lambda r: model_lib.scale(sc, "reward", r)  # noqa: E731
    v_s = lambda x: model_lib.scale(sc, "value", x)  # noqa: E731
    return jnp.stack([jnp.mean((z_hat - z_tgt) ** 2),
                      jnp.mean((r_s(r_m) - r_s(r_t)) ** 2) + jnp.mean((v_s(v_m) - v_s(v_t)) ** 2)])

  ref = jnp.mean(jax.vmap(oracle)(batch), axis=0)
  assert float(ref[1]) > 1e-4  # an untrained model: the heads differ on z_hat and E(o)
  assert float(m["finetune/loss/latent"]) == pytest.approx(float(ref[0]), rel=1e-4)
  assert float(m["finetune/loss/heads"]) == pytest.approx(float(ref[1]), rel=1e-4)
  assert float(total) == pytest.approx(float(ref[0] + 0.5 * ref[1]), rel=1e-4)
  grads = jax.grad(lambda tr: fl(tr, frozen, v["scaler"], batch, key, False)[0])(trainable)
  assert set(grads) == {"dynamics"}
  g0 = jax.grad(lambda tr: losses.make_finetune_loss(wm, tiny_config(DIMS).model)(tr, frozen, v["scaler"], batch,
                                                                                     key, False)[0])(trainable)
  diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), grads, g0)
  assert max(jax.tree.leaves(diff)) > 0  # the heads term moves the dynamics' gradient


@pytest.mark.parametrize("heads_sg", [False, True])
def test_heads_stop_gradient_keeps_reward_value_losses_out_of_the_dynamics(heads_sg):
  """With `heads_stop_gradient` the reward/value losses give the dynamics zero gradient (it learns only the latent
  term); without it they reach the dynamics (the paper). The losses' values are the same either way, and the
  encoder gets reward-loss gradient in both cases (through z_t)."""
  cfg, wm, v, batch = _setup(heads_stop_gradient=heads_sg)
  loss_fn = losses.make_pretrain_loss(wm, cfg.model)
  key = jax.random.key(0)

  def term(params, name):
    return loss_fn(params, v["scaler"], batch, key, False)[1][f"train/loss/{name}"]

  for name in ("reward", "value"):
    g = jax.grad(term)(v["params"], name)
    dyn = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g["dynamics"]))
    head = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g[name]))
    assert head > 0.0, name
    assert (dyn == 0.0) if heads_sg else (dyn > 0.0), (name, dyn)
  enc = jax.grad(term)(v["params"], "reward")["encoder"]
  assert sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(enc)) > 0.0
  _, m_ref = losses.make_pretrain_loss(wm, tiny_config(DIMS).model)(v["params"], v["scaler"], batch, key, False)
  _, m = loss_fn(v["params"], v["scaler"], batch, key, False)
  for k in m_ref:
    assert float(m[k]) == pytest.approx(float(m_ref[k]), rel=1e-6), k
