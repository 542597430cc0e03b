"""Pretraining on the synthetic linear system: fit, checkpoint round trip, resume, mismatch and NaN errors.

One pretraining run (module fixture) is shared; later `pretrain` calls and the K-step chunk tests reuse its compiled
50-step chunk (same `StepOptions` and shapes).
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

  for a, b in zip(jax.tree.leaves(predict(variables)), jax.tree.leaves(predict(res.variables)), strict=False):
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
  """Wraps a dataset (only `sample`, no `sampler()`); the `bad_call`-th training batch gets a NaN reward."""

  def __init__(self, ds, bad_call):
    self._ds, self._bad, self._calls = ds, bad_call, 0
    self.dims, self.stats, self.sample_eval = ds.dims, ds.stats, ds.sample_eval

  def sample(self, key, batch_size):
    b = self._ds.sample(key, batch_size)
    self._calls += 1
    if self._calls == self._bad:
      b = dict(b, reward=b["reward"].at[0, H].set(jnp.nan))
    return b


@pytest.mark.slow  # compiles the host-drawn-batches scan (~70 s on a loaded 2-core box); the in-scan twin is default
def test_nan_loss_stops_with_clear_error(dataset, tmp_path):
  """A dataset without `sampler()` (batches drawn on the host, stacked per chunk): the NaN batch of step 5 stops
  pretraining with the state after 5 good steps saved and the batch's statistics in the message."""
  cfg = tiny_config(dataset.dims)
  workdir = str(tmp_path / "nan")
  with pytest.raises(train.NonFiniteLossError, match=r"(?s)at step 5 .*last good checkpoint: step 5.*"
                                                      r"reward\[32, 9\]: .*nonfinite=1"):
    train.pretrain(cfg, workdir, _NaNAfter(dataset, bad_call=6))
  variables, _, _ = ckpt_lib.load(workdir)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(variables["params"]))


def _leaf_paths(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _leaf_paths(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def _changed(v):
  if isinstance(v, bool):
    return not v
  if isinstance(v, (int, float)):
    return v + 1
  if isinstance(v, str):
    return v + "_x"
  return tuple(v) + (1,)


def test_step_options_see_every_model_option():
  """The compiled functions are keyed on `StepOptions` (a jit static argument); an option the loss reads but the key
  dropped would be silently ignored. Every leaf of `config.model` outside the loop-only keys changes the options,
  the loop-only keys do not (a resume with more steps reuses the compiled chunk), and the options rebuild the
  config that the world model and the losses are made from."""
  dims = {"proprio": 3, "extero": 0, "extero_shape": (), "action": 2, "command": 1}
  base = tiny_config(dims).model
  opts0 = train.StepOptions.from_config(base, dims)
  hash(opts0)
  leaves = dict(_leaf_paths(base.to_dict()))
  assert len(leaves) > 30 and train.LOOP_KEYS <= set(leaves)
  for path, value in leaves.items():
    changed = tiny_config(dims).model
    node = changed
    *parents, leaf = path.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = _changed(value)
    opts = train.StepOptions.from_config(changed, dims)
    assert (opts == opts0) == (path in train.LOOP_KEYS), path
  for name, value in (("heads_stop_gradient", not base.heads_stop_gradient), ("dynamics_residual", True),
                      ("grad_clip", 0.5), ("dropout_attn", 0.3)):
    assert train.StepOptions.from_config(tiny_config(dims, **{name: value}).model, dims) != opts0, name
  assert train.StepOptions.from_config(base, dict(dims, proprio=4)) != opts0
  rebuilt = opts0.model_cfg().to_dict()
  assert dict(_leaf_paths(rebuilt)) == {k: (tuple(v) if isinstance(v, (list, tuple)) else v)
                                        for k, v in leaves.items() if k not in train.LOOP_KEYS}
  assert opts0.dims_dict() == dims


def test_guarded_scan_keeps_the_last_finite_state():
  """Hand-worked: x counts up by 1 per step; the 'loss' of step i is losses[i]; the step at index 3 is NaN, so the
  state after the scan is 3 (steps 0..2 applied), the later finite step 4 is discarded too."""
  losses = jnp.array([1.0, 2.0, 3.0, jnp.nan, 5.0])

  def step(x, loss):
    return x + 1.0, {"loss": loss, "gnorm": jnp.float32(1.0)}

  x, m = train.guarded_scan(step, jnp.float32(0.0), losses, 5, ("loss", "gnorm"))
  assert float(x) == 3.0
  np.testing.assert_array_equal(np.asarray(m["finite"]), [True, True, True, False, True])
  assert train.first_nonfinite(m["finite"]) == 3 and train.first_nonfinite(np.ones(4, bool)) is None
  x, _ = train.guarded_scan(step, jnp.float32(0.0), losses.at[3].set(4.0), 5, ("loss", "gnorm"))
  assert float(x) == 5.0


def test_next_boundary():
  assert train.next_boundary(0, 600, 50, 300, 300) == 50
  assert train.next_boundary(290, 600, 50, 300, 300) == 300
  assert train.next_boundary(47, 600, 50, 0) == 50  # resumed off a boundary: a short chunk first
  assert train.next_boundary(590, 600, 50, 300) == 600 and train.next_boundary(599, 620, 1000) == 620


def _init_state(opts, dataset):
  wm, tx = train.make_world_model(opts), train.optimizer(opts)
  v = wm.with_scaler(train.init_params(opts, jax.random.key(0)), dataset.stats)
  return train.TrainState(v["params"], tx.init(v["params"]), jnp.zeros((), jnp.int32)), v["scaler"]


def test_chunk_equals_single_steps(run, dataset):
  """K = 50 steps in one scan (batches drawn inside it) == 50 single-step jit calls on the host-drawn batches:
  the same loss sequence and the same params to float tolerance. The attention key biases are excluded: their
  exact gradient is 0 (softmax is shift invariant), so Adam turns rounding noise into +-lr steps in any
  implementation."""
  cfg, _, _ = run  # compiled the K = 50 chunk of these options already
  opts = train.StepOptions.from_config(cfg.model, dataset.dims)
  state0, scaler = _init_state(opts, dataset)
  key_data, key_loss = jax.random.split(jax.random.key(3))
  fn, arrays = dataset.sampler()
  state, m = train.train_chunk(opts, state0, scaler, arrays, key_data, key_loss, num_steps=50, batch_size=32,
                               sample_fn=fn)
  single, losses = state0, []
  for s in range(50):
    single, ms = train.train_step(opts, single, scaler, dataset.sample(jax.random.fold_in(key_data, s), 32), key_loss)
    losses.append(float(ms["train/loss"]))
  assert int(state.step) == int(single.step) == 50 and bool(np.all(m["finite"]))
  np.testing.assert_allclose(np.asarray(m["train/loss"]), losses, rtol=1e-4)
  assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])  # it trained
  flat_a = jax.tree_util.tree_flatten_with_path(state.params)[0]
  flat_b = jax.tree.leaves(single.params)
  checked = 0
  for (path, a), b in zip(flat_a, flat_b, strict=False):
    if jax.tree_util.keystr(path).endswith("['key']['bias']"):
      continue
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, err_msg=jax.tree_util.keystr(path))
    checked += 1
  assert checked > 40


def _dataset_with_nan(key, episode):
  ds = train.SyntheticDataset(H, T)
  ds._train = dict(ds._train, **{key: ds._train[key].at[episode].set(jnp.nan)})  # noqa: SLF001
  return ds


def _first_bad_step(ds, key_data, batch_size, key):
  for s in range(200):
    if not bool(jnp.all(jnp.isfinite(ds.sample(jax.random.fold_in(key_data, s), batch_size)[key]))):
      return s
  raise AssertionError("no NaN batch in 200 steps")


def test_nan_inside_the_scan_stops_at_that_step(dataset, tmp_path):
  """Batches drawn inside the scan: an episode with NaN rewards first enters a batch at a step s > 0 (found on the
  host with the same keys); pretraining stops there, saves the state after s good steps and reports the batch."""
  cfg = tiny_config(dataset.dims)
  ds = _dataset_with_nan("reward", episode=5)
  key_data = jax.random.split(jax.random.key(int(cfg.run.seed)), 4)[1]  # pretrain's data stream
  s = _first_bad_step(ds, key_data, 32, "reward")
  assert 0 < s < 50
  workdir = str(tmp_path / "nan_scan")
  with pytest.raises(train.NonFiniteLossError, match=rf"(?s)at step {s} .*last good checkpoint: step {s} .*"
                                                      r"reward\[32, 9\]: .*nonfinite=[1-9]"):
    train.pretrain(cfg, workdir, ds)
  assert ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == s
  variables, _, _ = ckpt_lib.load(workdir)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(variables["params"]))


def test_samplers_equal_sample():
  """`sampler()` (used inside the scan) draws exactly `sample(key, B)`, for real-data, mixed and synthetic sets."""
  from simdist_jax.data import windows
  rng = np.random.default_rng(0)
  eps = [{"proprio": rng.normal(size=(n, 3)), "extero": np.zeros((n, 0)), "action": rng.normal(size=(n, 2)),
          "command": rng.normal(size=(n, 1))} for n in (20, 31, 25)]
  real = windows.from_episodes(eps, H, T, None, 0.0, jax.random.key(0))
  other = windows.from_episodes(eps[:2], H, T, real.stats, 0.0, jax.random.key(1))
  for ds in (real, windows.MixedDataset(real, other, 0.25), train.SyntheticDataset(H, T)):
    fn, arrays = ds.sampler()
    hash(fn)
    for i in range(3):
      key = jax.random.key(i)
      want = ds.sample(key, 8)
      got = jax.jit(fn, static_argnums=2)(arrays, key, 8)
      assert set(got) == set(want)
      for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)
