"""Dynamics-only finetuning (Eq. 3): frozen leaves bit-identical, dynamics changed, optimizer state only for the
trainable tree, held-out latent loss drops on a shifted system, directory-chained rounds count steps up."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import finetune as ft
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import train
from tests.world_model import tiny_config

H = T = 4


@pytest.fixture(scope="module")
def setup():
  real = train.SyntheticDataset(H, T, gain=0.5, seed=1)  # "real" system: halved actuator gain
  cfg = tiny_config(real.dims)
  wm = model_lib.make_world_model(cfg.model, real.dims)
  variables = wm.with_scaler(jax.jit(wm.init)(jax.random.key(0)), real.stats)
  return cfg, real, variables


def test_split_merge_round_trip():
  params = {k: {"w": jnp.ones(2) * i} for i, k in enumerate(model_lib.PARAM_KEYS)}
  tr, fr = ft.split_params(params)
  assert set(tr) == {"dynamics"} and set(fr) == set(model_lib.PARAM_KEYS) - {"dynamics"}
  assert ft.merge_params(tr, fr) == params
  assert set(ft.split_params(params, "dynamics+encoder")[0]) == {"dynamics", "encoder"}
  assert ft.split_params(params, "all")[1] == {}
  with pytest.raises(ValueError, match="finetune.train"):
    ft.split_params(params, "policy")


def test_finetune_freezes_everything_but_dynamics(setup):
  cfg, real, variables = setup
  new, metrics = ft.finetune_variables(cfg, variables, real, 50, jax.random.key(0))
  for name in model_lib.PARAM_KEYS:
    old_leaves, new_leaves = jax.tree.leaves(variables["params"][name]), jax.tree.leaves(new["params"][name])
    if name == "dynamics":
      assert all(not np.array_equal(a, b) for a, b in zip(old_leaves, new_leaves, strict=False))  # every dynamics leaf moved
    else:
      for a, b in zip(old_leaves, new_leaves, strict=False):
        np.testing.assert_array_equal(a, b)  # bitwise identical
  for a, b in zip(jax.tree.leaves(variables["scaler"]), jax.tree.leaves(new["scaler"]), strict=False):
    np.testing.assert_array_equal(a, b)
  # Eq. 3 on the shifted system: the held-out latent loss goes down.
  assert metrics["finetune/eval/loss/latent_after"] < 0.8 * metrics["finetune/eval/loss/latent_before"], metrics
  assert metrics["finetune/nonfinite"] == 0.0


def test_chunk_equals_single_steps(setup):
  """50 finetuning steps in one scan (batches drawn inside) == 50 single-step jit calls on host-drawn batches."""
  cfg, real, variables = setup
  opts = train.StepOptions.from_config(cfg.model, real.dims)
  tr, fr = ft.split_params(variables["params"])
  state0 = ft.FinetuneState(tr, ft.optimizer(opts).init(tr), jnp.zeros((), jnp.int32))
  key_data, key_loss = jax.random.split(jax.random.key(5))
  fn, arrays = real.sampler()
  state, m = ft.finetune_chunk(opts, state0, fr, variables["scaler"], arrays, key_data, key_loss, num_steps=50,
                               batch_size=32, sample_fn=fn)
  single, losses = state0, []
  for s in range(50):
    batch = real.sample(jax.random.fold_in(key_data, s), 32)
    single, ms = ft.finetune_step(opts, single, fr, variables["scaler"], batch, key_loss)
    losses.append(float(ms["finetune/loss"]))
  np.testing.assert_allclose(np.asarray(m["finetune/loss"]), losses, rtol=1e-4)
  assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])  # it trained
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(state.trainable)[0], jax.tree.leaves(single.trainable), strict=False):
    if not jax.tree_util.keystr(path).endswith("['key']['bias']"):  # exact gradient 0: Adam-amplified rounding
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, err_msg=jax.tree_util.keystr(path))


def test_nan_keeps_the_input_variables(setup, capsys):
  """An episode of NaN observations first enters a batch at step s > 0 (found on the host with the same keys):
  finetuning stops there, returns the input variables bitwise, flags `finetune/nonfinite` and names the step and
  the caller's label in a warning."""
  cfg, _, variables = setup
  bad = train.SyntheticDataset(H, T, gain=0.5, seed=1)
  bad._train = dict(bad._train, proprio=bad._train["proprio"].at[7].set(jnp.nan))  # noqa: SLF001
  key = jax.random.key(0)
  key_data = jax.random.split(key, 3)[0]  # finetune_variables' data stream
  s = next(i for i in range(200)
           if not bool(jnp.all(jnp.isfinite(bad.sample(jax.random.fold_in(key_data, i), 32)["proprio"]))))
  assert 0 < s < 50
  new, metrics = ft.finetune_variables(cfg, variables, bad, 50, key, label="round 2")
  assert metrics["finetune/nonfinite"] == 1.0 and metrics["finetune/nonfinite_step"] == s, metrics
  assert not np.isfinite(metrics["finetune/loss"])
  assert jax.tree.structure(new) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(variables), strict=False):
    np.testing.assert_array_equal(a, b)  # bitwise the input
  out = capsys.readouterr().out
  assert f"at step {s}/50 (round 2): keeping the input variables unchanged" in out, out


class _HostOnly:
  """A dataset without `sampler()`: batches are drawn on the host and stacked; the `bad_call`-th gets a NaN."""

  def __init__(self, ds, bad_call=None):
    self._ds, self._bad, self._calls = ds, bad_call, 0
    self.dims, self.stats = ds.dims, ds.stats

  def sample(self, key, batch_size):
    b = self._ds.sample(key, batch_size)
    self._calls += 1
    if self._calls == self._bad:
      b = dict(b, proprio=b["proprio"].at[0, 0, 0].set(jnp.inf))
    return b


@pytest.mark.slow  # one more compile of the 50-step scan (host-drawn batches)
def test_host_drawn_batches_match_and_guard(setup):
  """Without `sampler()` the same batches are drawn on the host (same result as sampling in the scan), and a NaN
  batch from such a dataset also returns the input variables."""
  cfg, real, variables = setup
  want, m_want = ft.finetune_variables(cfg, variables, real, 50, jax.random.key(1))
  got, m_got = ft.finetune_variables(cfg, variables, _HostOnly(real), 50, jax.random.key(1))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=False):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
  np.testing.assert_allclose(m_got["finetune/loss"], m_want["finetune/loss"], rtol=1e-4)
  new, m = ft.finetune_variables(cfg, variables, _HostOnly(real, bad_call=12), 50, jax.random.key(1))
  assert m["finetune/nonfinite"] == 1.0 and m["finetune/nonfinite_step"] == 11
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(variables), strict=False):
    np.testing.assert_array_equal(a, b)


def test_optimizer_state_only_for_trainable(setup):
  cfg, _, variables = setup
  tx, _ = train.make_optimizer(cfg.model.finetune.lr)
  tr, _ = ft.split_params(variables["params"])
  opt_state = tx.init(tr)
  n_opt = sum(x.size for x in jax.tree.leaves(opt_state) if x.ndim > 0)
  assert n_opt == 2 * model_lib.param_count(variables["params"]["dynamics"])  # Adam mu + nu of dynamics only


@pytest.mark.slow  # three finetune() calls with checkpoint I/O (~2 min on a loaded 2-core box)
def test_finetune_rounds_from_directories(setup, tmp_path):
  cfg, real, variables = setup
  src = ckpt_lib.Checkpointer(str(tmp_path / "pre" / "checkpoints"))
  src.save(100, variables, cfg.model, real.dims)
  src.close()
  out1 = ft.finetune(cfg, str(tmp_path / "pre"), real, str(tmp_path / "r1"), num_steps=5)
  out2 = ft.finetune(cfg, str(tmp_path / "r1"), real, str(tmp_path / "r2"), num_steps=5)
  assert ckpt_lib.Checkpointer(str(tmp_path / "r2" / "checkpoints")).latest_step() == 110
  loaded, _, _ = ckpt_lib.load(str(tmp_path / "r2"))
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(out2), strict=False):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(jax.tree.leaves(out1["params"]["dynamics"])[0],
                            jax.tree.leaves(out2["params"]["dynamics"])[0])
  assert os.path.exists(tmp_path / "r2" / "metrics.jsonl")
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="model.horizon"):
    ft.finetune(tiny_config(real.dims, horizon=5), str(tmp_path / "r1"), real, str(tmp_path / "bad"), 5)
