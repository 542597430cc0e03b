"""`model.compute_dtype = "bfloat16"`: mixed precision with float32 master weights.

The same parameters give the float32 model's predictions to bfloat16 resolution; every output, gradient and optimizer
leaf stays float32; and pretraining from the same initial state on the same batches follows the float32 loss curve
to a stated tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import train
from tests.world_model import tiny_config
from tests.world_model.test_model import DIMS, _inputs

H = T = 4


def _models():
  wm32 = model_lib.make_world_model(tiny_config(DIMS).model, DIMS)
  wm16 = model_lib.make_world_model(tiny_config(DIMS, compute_dtype="bfloat16").model, DIMS)
  return wm32, wm16


def test_same_params_same_predictions_to_bf16_resolution():
  wm32, wm16 = _models()
  v = wm32.init(jax.random.key(0))
  x = _inputs(wm32, jax.random.key(1))
  outs = []
  for wm in (wm32, wm16):
    ctx = wm.context(v, x["proprio_hist"], x["action_hist"], x["proprio_t"], x["extero_t"])
    z_hat = wm.predict_latents(v, ctx, x["actions"])
    r, val = wm.predict_returns(v, ctx, z_hat, x["actions"], x["commands"])
    outs.append((ctx.z, z_hat, r, val, wm.policy_chunk(v, ctx, x["commands"])))
  for name, a32, a16 in zip(("z", "z_hat", "reward", "value", "policy"), *outs, strict=True):
    assert a16.dtype == jnp.float32, name  # outputs come back in float32
    scale = float(jnp.max(jnp.abs(a32))) + 1e-6
    err = float(jnp.max(jnp.abs(a16 - a32))) / scale
    # bfloat16 keeps 8 mantissa bits (relative step 2^-8 = 0.4 %); a few layers of rounding stay within ~5 %.
    assert 0.0 < err < 0.05, (name, err)  # > 0: the bf16 path really computes in bf16


def _run(dtype: str, steps: int, dataset):
  cfg = tiny_config(dataset.dims, compute_dtype=dtype).model
  opts = train.StepOptions.from_config(cfg, dataset.dims)
  wm, tx = train.make_world_model(opts), train.optimizer(opts)
  v = wm.with_scaler(train.init_params(opts, jax.random.key(0)), dataset.stats)
  state = train.TrainState(v["params"], tx.init(v["params"]), jnp.zeros((), jnp.int32))
  losses = []
  for i in range(steps):
    batch = dataset.sample(jax.random.key(100 + i), 32)
    state, m = train.train_step(opts, state, v["scaler"], batch, jax.random.key(7))
    losses.append(float(m["train/loss"]))
  return state, np.asarray(losses)


@pytest.mark.slow  # two train-step compiles and 120 steps: ~55 s on the 2-core CPU
def test_bf16_training_follows_the_float32_loss_curve():
  dataset = train.SyntheticDataset(H, T)
  s32, l32 = _run("float32", 60, dataset)
  s16, l16 = _run("bfloat16", 60, dataset)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s16.params))  # master weights stay float32
  assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(s16.opt_state))
  assert l32[-10:].mean() < 0.5 * l32[:5].mean()  # the float32 run learns at all
  rel = np.abs(l16 - l32) / l32
  # Tolerance: 5 % of the loss at every step over 60 Adam steps from the same init on the same batches.
  assert rel.max() < 0.05, (rel.max(), int(rel.argmax()))
  assert rel.max() > 0.0  # two distinct computations


def test_unknown_compute_dtype_names_the_key():
  with pytest.raises(ValueError, match="model.compute_dtype must be one of"):
    model_lib.make_world_model(tiny_config(DIMS, compute_dtype="float16").model, DIMS)
