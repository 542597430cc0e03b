"""World-model architecture: parameter counts, shapes, causality, one-pass vs prefixes, scaler units, ablations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.world_model import model as model_lib
from tests.world_model import QUADRUPED_DIMS, tiny_config

DIMS = {"proprio": 5, "extero": 30, "extero_shape": (6, 5), "action": 3, "command": 2}  # exercises the CNN path


def _inputs(wm, key):
  s = wm.spec
  k = jax.random.split(key, 6)
  return dict(
    proprio_hist=jax.random.normal(k[0], (s.history, s.proprio)),
    action_hist=jax.random.normal(k[1], (s.history, s.action)),
    proprio_t=jax.random.normal(k[2], (s.proprio,)),
    extero_t=jax.random.normal(k[3], (s.extero,)),
    actions=jax.random.normal(k[4], (s.horizon, s.action)),
    commands=jax.random.normal(k[5], (s.horizon + 1, s.command)),
  )


def _build(dims=DIMS, **overrides):
  cfg = tiny_config(dims, **overrides)
  wm = model_lib.make_world_model(cfg.model, dims)
  return wm, wm.init(jax.random.key(0)), _inputs(wm, jax.random.key(1))


def test_paper_quadruped_param_counts():
  # Digest (official checkpoint metadata): total ~668k; encoder 149k (incl. history tokenizer), dynamics 133.5k,
  # reward 50k, value 50k, policy 267k (transformer cores), embeddings + read-outs ~18k.
  from experiments.configs.sections import model as model_section
  wm = model_lib.make_world_model(model_section.get("go2", "paper", QUADRUPED_DIMS), QUADRUPED_DIMS)
  params = jax.eval_shape(wm.init, jax.random.key(0))["params"]
  counts = model_lib.param_counts(params)
  assert set(params) == set(model_lib.PARAM_KEYS)
  assert counts["total"] == pytest.approx(668_000, rel=0.01)
  # Cores match the digest to 0.5 %.
  assert counts["dynamics"] == pytest.approx(133_500, rel=0.005)
  assert model_lib.param_count(params["reward"]["transformer"]) == pytest.approx(50_000, rel=0.005)
  assert model_lib.param_count(params["value"]["transformer"]) == pytest.approx(50_000, rel=0.005)
  assert model_lib.param_count(params["policy"]["decoder"]) == pytest.approx(267_000, rel=0.005)
  assert counts["encoder"] + counts["history"] - 2432 == pytest.approx(149_000, rel=0.005)  # minus future-act emb
  # Whole subtrees (embeddings included) within 15 % of the digest's module figures.
  for name, ref in {"encoder": 149_000, "dynamics": 134_000, "reward": 50_000, "value": 50_000,
                    "policy": 267_000}.items():
    assert counts[name] == pytest.approx(ref, rel=0.15), (name, counts[name])


def test_shapes_and_param_keys():
  wm, v, x = _build()
  s = wm.spec
  assert set(v["params"]) == set(model_lib.PARAM_KEYS)

  @jax.jit
  def run(v, x):
    ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
    z_hat = wm.predict_latents(v, ctx, x["actions"])
    r, val = wm.predict_returns(v, ctx, z_hat, x["actions"], x["commands"])
    return ctx, wm.encode(v, x["proprio_t"], x["extero_t"]), z_hat, r, val, wm.policy_chunk(v, ctx, x["commands"])

  ctx, z, z_hat, r, val, a = run(v, x)
  assert ctx.tokens.shape == (2 * s.history + 1, s.latent_dim) and ctx.z.shape == (s.latent_dim,)
  np.testing.assert_allclose(ctx.z, z, atol=1e-6)
  assert z_hat.shape == (s.horizon, s.latent_dim)
  assert r.shape == (s.horizon,) and val.shape == (s.horizon,)
  assert a.shape == (s.horizon, s.action)
  assert all(bool(jnp.all(jnp.isfinite(t))) for t in (z_hat, r, val, a))
  with pytest.raises(ValueError, match="single example"):
    wm.encode(v, x["proprio_t"][None], x["extero_t"])


@pytest.mark.parametrize("dynamics", ["chunked", "autoregressive_mlp"])
def test_causality(dynamics):
  wm, v, x = _build(dynamics=dynamics)
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  predict = jax.jit(wm.predict_latents)
  base = predict(v, ctx, x["actions"])
  for j in range(wm.spec.horizon):
    z = predict(v, ctx, x["actions"].at[j].add(3.0))
    np.testing.assert_allclose(z[:j], base[:j], rtol=0, atol=1e-6)  # z_hat_{t+k+1}, k < j: unchanged
    assert float(jnp.abs(z[j] - base[j]).max()) > 1e-3  # a_{t+j} does reach z_hat_{t+j+1}


@pytest.mark.parametrize("dynamics", ["chunked", "autoregressive_mlp"])
def test_one_pass_equals_prefix_calls(dynamics):
  wm, v, x = _build(dynamics=dynamics)
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  one_pass = wm.predict_latents(v, ctx, x["actions"])  # un-jitted; the prefix calls below are jitted
  predict = jax.jit(wm.predict_latents)
  T = wm.spec.horizon
  for k in range(T):  # T separate calls, each seeing only the prefix a_t..a_{t+k} (rest is other noise)
    pad = jax.random.normal(jax.random.key(10 + k), (T - k - 1, wm.spec.action))
    prefix_call = predict(v, ctx, jnp.concatenate([x["actions"][:k + 1], pad]))
    np.testing.assert_allclose(prefix_call[k], one_pass[k], rtol=0, atol=1e-5)


def test_autoregressive_uses_scan_not_unrolled():
  wm, v, x = _build(dynamics="autoregressive_mlp")
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  jaxpr = str(jax.make_jaxpr(wm.predict_latents)(v, ctx, x["actions"]))
  assert "scan" in jaxpr and jaxpr.count("dot_general") < 3 * wm.spec.horizon


def test_mlp_heads_are_per_step():
  wm, v, x = _build(heads="mlp")
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  z_hat = wm.predict_latents(v, ctx, x["actions"])
  r0, v0 = wm.predict_returns(v, ctx, z_hat, x["actions"], x["commands"])
  r1, v1 = wm.predict_returns(v, ctx, z_hat.at[2].add(1.0), x["actions"], x["commands"])
  changed = np.nonzero(np.abs(np.asarray(r1 - r0)) > 1e-6)[0].tolist()
  assert changed == [3]  # z_hat[2] = z_{t+3} feeds r_{t+3} only
  assert np.nonzero(np.abs(np.asarray(v1 - v0)) > 1e-6)[0].tolist() == [2]  # and V_{t+3} only


def test_scaler_outputs_in_raw_units():
  wm, v, x = _build()
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  z_hat = wm.predict_latents(v, ctx, x["actions"])
  r_id, v_id = wm.predict_returns(v, ctx, z_hat, x["actions"], x["commands"])
  a_id = wm.policy_chunk(v, ctx, x["commands"])
  stats = jax.tree.map(np.asarray, model_lib.identity_scaler(DIMS))
  stats["reward"] = {"mean": np.float32(10.0), "std": np.float32(2.0)}
  stats["value"] = {"mean": np.float32(-5.0), "std": np.float32(0.0)}  # floored at 1e-4
  stats["action"] = {"mean": np.full(3, 1.0, np.float32), "std": np.full(3, 3.0, np.float32)}
  vs = wm.with_scaler(v, stats)
  ctx_s = wm.context(vs, x["proprio_hist"], x["action_hist"] * 3.0 + 1.0, x["proprio_t"], x["extero_t"])
  np.testing.assert_allclose(ctx_s.tokens, ctx.tokens, atol=1e-5)  # same z-scored inputs -> same context
  r, val = wm.predict_returns(vs, ctx_s, z_hat, x["actions"] * 3.0 + 1.0, x["commands"])  # same scaled actions
  np.testing.assert_allclose(r, 2.0 * r_id + 10.0, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(val, 1e-4 * v_id - 5.0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(wm.policy_chunk(vs, ctx_s, x["commands"]), 3.0 * a_id + 1.0, rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match="proprio"):
    bad = dict(stats, proprio={"mean": np.zeros(4), "std": np.ones(4)})
    wm.with_scaler(v, bad)


def test_dropout_only_in_training_path():
  wm, v, x = _build(dropout_attn=0.5)
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  a = x["actions"]
  det1, det2 = wm.predict_latents(v, ctx, a), wm.predict_latents(v, ctx, a)
  np.testing.assert_array_equal(det1, det2)
  tr1 = wm.apply(v["params"], "latents", ctx.tokens, ctx.z, a, train=True, rng=jax.random.key(1))
  tr2 = wm.apply(v["params"], "latents", ctx.tokens, ctx.z, a, train=True, rng=jax.random.key(2))
  assert float(jnp.abs(tr1 - tr2).max()) > 1e-4


def test_residual_dynamics_starts_at_persistence_and_stays_causal():
  wm, v, x = _build(dynamics_residual=True)
  ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
  z_hat = wm.predict_latents(v, ctx, x["actions"])
  # zero-initialised read-out: the untrained model predicts z_hat_{t+k} = z_t for every k
  np.testing.assert_array_equal(np.asarray(z_hat), np.broadcast_to(np.asarray(ctx.z), z_hat.shape))
  assert "delta" in v["params"]["dynamics"]  # the read-out belongs to the finetuned dynamics tree
  # once the read-out is non-zero, a_{t+j} reaches z_hat_{t+j+1} and nothing before it
  kernel = v["params"]["dynamics"]["delta"]["kernel"]
  v["params"]["dynamics"]["delta"]["kernel"] = jax.random.normal(jax.random.key(2), kernel.shape)
  base = wm.predict_latents(v, ctx, x["actions"])
  z = wm.predict_latents(v, ctx, x["actions"].at[2].add(3.0))
  np.testing.assert_allclose(z[:2], base[:2], rtol=0, atol=1e-6)
  assert float(jnp.abs(z[2] - base[2]).max()) > 1e-3
