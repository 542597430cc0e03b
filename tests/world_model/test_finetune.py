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
      assert all(not np.array_equal(a, b) for a, b in zip(old_leaves, new_leaves))  # every dynamics leaf moved
    else:
      for a, b in zip(old_leaves, new_leaves):
        np.testing.assert_array_equal(a, b)  # bitwise identical
  for a, b in zip(jax.tree.leaves(variables["scaler"]), jax.tree.leaves(new["scaler"])):
    np.testing.assert_array_equal(a, b)
  # Eq. 3 on the shifted system: the held-out latent loss goes down.
  assert metrics["finetune/eval/loss/latent_after"] < 0.8 * metrics["finetune/eval/loss/latent_before"], metrics


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
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(out2)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(jax.tree.leaves(out1["params"]["dynamics"])[0],
                            jax.tree.leaves(out2["params"]["dynamics"])[0])
  assert os.path.exists(tmp_path / "r2" / "metrics.jsonl")
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="model.horizon"):
    ft.finetune(tiny_config(real.dims, horizon=5), str(tmp_path / "r1"), real, str(tmp_path / "bad"), 5)
