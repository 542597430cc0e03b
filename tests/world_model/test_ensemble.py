"""Dynamics ensemble (`model.dynamics_ensemble`): members, their mean, per-member losses, finetuning, checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.world_model import finetune as ft
from simdist_jax.world_model import losses
from simdist_jax.world_model import model as model_lib
from tests.world_model import tiny_config

DIMS = {"proprio": 3, "extero": 0, "extero_shape": (), "action": 2, "command": 1}


def _setup(k_members):
  """(cfg, wm, variables, ctx, actions, batch) for a K-member tiny model; every model call is jitted (eager flax
  compiles each primitive separately, which dominates a CPU test's time)."""
  cfg = tiny_config(DIMS, dynamics_ensemble=k_members)
  wm = model_lib.make_world_model(cfg.model, DIMS)
  v = jax.jit(wm.init)(jax.random.key(0))
  s = wm.spec
  k = jax.random.split(jax.random.key(1), 5)
  ctx = jax.jit(wm.context)(v, jax.random.normal(k[0], (s.history, 3)), jax.random.normal(k[1], (s.history, 2)),
                            jax.random.normal(k[2], (3,)), jnp.zeros((0,)))
  acts = jax.random.normal(k[3], (s.horizon, 2))
  B, L = 4, s.history + s.horizon + 1
  kb = jax.random.split(k[4], 5)
  batch = {"proprio": jax.random.normal(kb[0], (B, L, 3)), "extero": jnp.zeros((B, L, 0)),
           "action": jax.random.normal(kb[1], (B, L, 2)), "command": jax.random.normal(kb[2], (B, L, 1)),
           "reward": jax.random.normal(kb[3], (B, L)), "value": jax.random.normal(kb[4], (B, L)),
           "expert_flag": jnp.ones((B, L))}
  return cfg, wm, v, ctx, acts, batch


@pytest.fixture(scope="module")
def ens3():
  return _setup(3)


@pytest.mark.slow
def test_single_decoder_keeps_its_parameter_paths(ens3):
  _, wm, v, ctx, acts, _ = _setup(1)
  assert "decoder" in v["params"]["dynamics"] and not any(k.startswith("member_") for k in v["params"]["dynamics"])
  members = jax.jit(wm.predict_member_latents)(v, ctx, acts)
  assert members.shape == (1, wm.spec.horizon, wm.spec.latent_dim)
  np.testing.assert_array_equal(members[0], jax.jit(wm.predict_latents)(v, ctx, acts))
  # The ensemble's dynamics subtree is three single decoders: 3x the K = 1 model's size.
  assert model_lib.param_count(ens3[2]["params"]["dynamics"]) == 3 * model_lib.param_count(v["params"]["dynamics"])


@pytest.mark.slow
def test_members_are_distinct_and_the_prediction_is_their_mean(ens3):
  _, wm, v, ctx, acts, _ = ens3
  assert sorted(v["params"]["dynamics"]) == ["member_0", "member_1", "member_2"]
  leaves = [jax.tree.leaves(v["params"]["dynamics"][f"member_{i}"]) for i in range(3)]
  random_init = [(a, b) for a, b in zip(leaves[0], leaves[1], strict=True) if np.std(a) > 0]  # not the ones/zeros of LN, biases
  assert random_init and all(not np.allclose(a, b) for a, b in random_init)  # each member draws its own init
  members = jax.jit(wm.predict_member_latents)(v, ctx, acts)
  assert members.shape == (3, wm.spec.horizon, wm.spec.latent_dim)
  assert float(jnp.max(jnp.abs(members[0] - members[1]))) > 1e-3
  np.testing.assert_allclose(jax.jit(wm.predict_latents)(v, ctx, acts), members.mean(0), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_latent_loss_is_the_mean_of_the_members_own_losses(ens3):
  cfg, wm, v, _, _, batch = ens3
  loss_fn = jax.jit(losses.make_pretrain_loss(wm, cfg.model), static_argnames=("train", "prefix"))
  _, m = loss_fn(v["params"], v["scaler"], batch, jax.random.key(2), train=False)
  # Oracle: each member alone (a K = 1 model holding that member's decoder) on the same batch.
  cfg1 = tiny_config(DIMS, dynamics_ensemble=1)
  wm1 = model_lib.make_world_model(cfg1.model, DIMS)
  loss1 = jax.jit(losses.make_pretrain_loss(wm1, cfg1.model), static_argnames=("train", "prefix"))
  per_member = []
  for i in range(3):
    p = {**v["params"], "dynamics": v["params"]["dynamics"][f"member_{i}"]}
    per_member.append(float(loss1(p, v["scaler"], batch, jax.random.key(2), train=False)[1]["train/loss/latent"]))
  assert float(m["train/loss/latent"]) == pytest.approx(np.mean(per_member), rel=1e-5)
  assert np.std(per_member) > 0  # distinct members, so the mean is not one member's loss
  # Finetuning loss (Eq. 3) likewise.
  trainable, frozen = ft.split_params(v["params"], "dynamics")
  ft_loss = jax.jit(losses.make_finetune_loss(wm, cfg.model), static_argnames=("train", "prefix"))
  _, mf = ft_loss(trainable, frozen, v["scaler"], batch, jax.random.key(2), train=False)
  assert float(mf["finetune/loss/latent"]) == pytest.approx(np.mean(per_member), rel=1e-5)


@pytest.mark.slow
def test_finetuning_trains_every_member_and_nothing_else(ens3):
  cfg, wm, v, _, _, batch = ens3
  trainable, frozen = ft.split_params(v["params"], "dynamics")
  assert set(trainable) == {"dynamics"} and set(trainable["dynamics"]) == {"member_0", "member_1", "member_2"}
  ft_loss = losses.make_finetune_loss(wm, cfg.model)
  grads = jax.jit(jax.grad(lambda t: ft_loss(t, frozen, v["scaler"], batch, jax.random.key(0), train=False)[0]))(trainable)
  for i in range(3):
    norm = sum(float(jnp.sum(jnp.square(g))) for g in jax.tree.leaves(grads["dynamics"][f"member_{i}"]))
    assert norm > 0, f"member_{i} gets no gradient"


def test_invalid_ensemble_size_is_named():
  cfg = tiny_config(DIMS, dynamics_ensemble=0)
  with pytest.raises(ValueError, match="dynamics_ensemble"):
    model_lib.make_spec(cfg.model, DIMS)
