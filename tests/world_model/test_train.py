"""Pretraining on the synthetic linear system: fit, checkpoint round trip, resume, mismatch and NaN errors.

One pretraining run (module fixture) is shared; later `pretrain` calls reuse its compiled step.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import train
from tests.world_model import tiny_config

H = T = 4


@pytest.fixture(scope="module")
def dataset():
  return train.SyntheticDataset(H, T)


@pytest.fixture(scope="module")
def run(tmp_path_factory, dataset):
  cfg = tiny_config(dataset.dims)
  workdir = str(tmp_path_factory.mktemp("wm_run"))
  return cfg, workdir, train.pretrain(cfg, workdir, dataset)


def test_fits_synthetic_system(run):
  cfg, workdir, res = run
  assert res.step == cfg.model.num_steps == 600
  m = res.metrics
  # z-scored targets: an untrained model scores ~1 on reward/value; the linear expert is exactly learnable.
  assert m["eval/loss/reward"] < 0.25 and m["eval/loss/value"] < 0.2, m
  assert m["eval/loss/action"] < 0.03 and m["eval/loss/latent"] < 0.4, m
  lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
  first = next(x for x in lines if "train/loss" in x)
  assert first["train/loss"] > 2.0 * lines[-1]["eval/loss"] if "eval/loss" in lines[-1] else True
  assert os.path.exists(os.path.join(workdir, "config.json")) and os.path.isdir(os.path.join(workdir, "tb"))


def test_checkpoint_round_trip_identical_predictions(run, dataset):
  cfg, workdir, res = run
  variables, model_cfg, dims = ckpt_lib.load(workdir)  # from the directory alone
  assert dims == dataset.dims and model_cfg.latent_dim == cfg.model.latent_dim
  wm = model_lib.make_world_model(model_cfg, dims)
  w = {k: v[0] for k, v in dataset.sample_eval(jax.random.key(0), 1).items()}

  @jax.jit
  def predict(v):
    ctx = wm.context(v, w["proprio"][:H], w["action"][:H], w["proprio"][H], w["extero"][H])
    z_hat = wm.predict_latents(v, ctx, w["action"][H:H + T])
    return z_hat, wm.predict_returns(v, ctx, z_hat, w["action"][H:H + T], w["command"][H:]), \
      wm.policy_chunk(v, ctx, w["command"][H:])

  for a, b in zip(jax.tree.leaves(predict(variables)), jax.tree.leaves(predict(res.variables))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # two extra pretrain calls + checkpoint I/O (~2 min on a loaded 2-core box)
def test_resume_continues_step_count(run, dataset, tmp_path):
  cfg, workdir, res = run
  resumed_dir = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed_dir)
  cfg2 = tiny_config(dataset.dims, num_steps=620)
  res2 = train.pretrain(cfg2, resumed_dir, dataset)
  assert res2.step == 620
  assert ckpt_lib.Checkpointer(os.path.join(resumed_dir, "checkpoints")).latest_step() == 620
  steps = [json.loads(x)["step"] for x in open(os.path.join(resumed_dir, "metrics.jsonl"))]
  assert steps[-1] == 620 and all(s > 600 for s in steps[steps.index(600) + 2:])
  # Resuming a finished run is a no-op that returns the saved weights.
  res3 = train.pretrain(cfg2, resumed_dir, dataset)
  assert res3.step == 620
  leaves = jax.tree.leaves(res3.variables["params"])
  np.testing.assert_array_equal(leaves[0], jax.tree.leaves(res2.variables["params"])[0])


def test_mismatched_checkpoint_clear_error(run, dataset):
  _, workdir, _ = run
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="model.latent_dim: .* has 16, requested 8"):
    train.pretrain(tiny_config(dataset.dims, latent_dim=8), workdir, dataset)
  other_dims = dict(dataset.dims, proprio=35, extero=315, extero_shape=(21, 15), action=12, command=3)
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="dims.proprio: .* has 4, requested 35"):
    ckpt_lib.load_checked(workdir, tiny_config(other_dims).model, other_dims)


class _NaNAfter:
  """Wraps a dataset; the `bad_call`-th training batch gets a NaN reward."""

  def __init__(self, ds, bad_call):
    self._ds, self._bad, self._calls = ds, bad_call, 0
    self.dims, self.stats, self.sample_eval = ds.dims, ds.stats, ds.sample_eval

  def sample(self, key, batch_size):
    b = self._ds.sample(key, batch_size)
    self._calls += 1
    if self._calls == self._bad:
      b = dict(b, reward=b["reward"].at[0, H].set(jnp.nan))
    return b


def test_nan_loss_stops_with_clear_error(dataset, tmp_path):
  cfg = tiny_config(dataset.dims)
  workdir = str(tmp_path / "nan")
  with pytest.raises(train.NonFiniteLossError, match=r"(?s)at step 5 .*last good checkpoint: step 5.*"
                                                      r"reward\[32, 9\]: .*nonfinite=1"):
    train.pretrain(cfg, workdir, _NaNAfter(dataset, bad_call=6))
  variables, _, _ = ckpt_lib.load(workdir)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(variables["params"]))


def test_compiled_step_key_sees_every_loss_option():
  """The compiled-step cache is keyed on a filtered copy of the model config; an option the loss reads but the key
  drops would be silently ignored (the train step would be built without it). Each option must change the key."""
  dims = {"proprio": 3, "extero": 0, "extero_shape": (), "action": 2, "command": 1}
  base = tiny_config(dims).model
  key0 = train.static_key(base, dims, train._STEP_FIELDS)  # noqa: SLF001
  for name, value in (("heads_stop_gradient", not base.heads_stop_gradient), ("dynamics_residual", True),
                      ("grad_clip", 0.5), ("dropout_attn", 0.3)):
    changed = tiny_config(dims, **{name: value}).model
    assert train.static_key(changed, dims, train._STEP_FIELDS) != key0, name  # noqa: SLF001
