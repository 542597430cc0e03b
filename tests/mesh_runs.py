"""Runs for the multi-device tests (`tests/test_mesh.py`), each in a fresh process started with
`XLA_FLAGS=--xla_force_host_platform_device_count=4` (the device count is fixed when JAX starts).

  python -m tests.mesh_runs WHAT OUT_DIR MESH [MESH ...]

prints one JSON line {str(mesh): figures} for every mesh value (`run.mesh`: 0/1 one device, n devices, -1 all):
- `pretrain`: 20 tiny pretraining steps on the synthetic system (global batch 32): the train loss at steps 5, 10,
  15, 20 (`metrics.jsonl`), the final eval loss and a checksum of the final params.
- `finetune`: 20 dynamics-only finetuning steps (global batch 32) of the same initial model: every step-mean
  metric, the held-out latent loss before/after and a checksum of the finetuned dynamics.
- `generate`: the toy-env dataset of `tests.data` (40 envs, 3 shards of 100 steps; 4 devices take 10 envs each):
  the manifest's statistics and the shards' sha256.
- `validate`: the `run.mesh` errors of `config.load_config` for a few values (strings, "" when accepted).
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import numpy as np

H = T = 4


def _cfg(dims: dict, mesh: int, **model):
  from tests.world_model import tiny_config  # pylint: disable=import-outside-toplevel
  cfg = tiny_config(dims, **model)
  cfg.run.mesh = mesh
  return cfg


def _checksum(tree) -> float:
  return float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(tree)))


def pretrain(out: pathlib.Path, mesh: int) -> dict:
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  ds = train.SyntheticDataset(H, T)
  cfg = _cfg(ds.dims, mesh, num_steps=20, log_every=5, eval_every=20, checkpoint_every=20, eval_batches=2)
  wd = out / f"pretrain_mesh{mesh}"
  res = train.pretrain(cfg, str(wd), ds)
  lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
  curve = {str(x["step"]): x["train/loss"] for x in lines if "train/loss" in x}
  devices = {d.id for x in jax.tree.leaves(res.variables) for d in x.devices()}
  return {"curve": curve, "eval_loss": res.metrics["eval/loss"], "params": _checksum(res.variables["params"]),
          "result_devices": sorted(devices)}


def finetune(out: pathlib.Path, mesh: int) -> dict:
  del out
  from simdist_jax.world_model import finetune as ft  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import model as model_lib  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  real = train.SyntheticDataset(H, T, gain=0.5, seed=1)
  cfg = _cfg(real.dims, mesh, log_every=10)
  cfg.model.finetune.batch_size = 32
  wm = model_lib.make_world_model(cfg.model, real.dims)
  variables = wm.with_scaler(jax.jit(wm.init)(jax.random.key(0)), real.stats)
  new, metrics = ft.finetune_variables(cfg, variables, real, 20, jax.random.key(3))
  return {"metrics": metrics, "dynamics": _checksum(new["params"]["dynamics"]),
          "frozen_equal": all(np.array_equal(a, b) for k in new["params"] if k != "dynamics"
                              for a, b in zip(jax.tree.leaves(new["params"][k]),
                                              jax.tree.leaves(variables["params"][k]), strict=True))}


def generate(out: pathlib.Path, mesh: int) -> dict:
  from simdist_jax import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from simdist_jax.data.generate import generate as gen  # pylint: disable=import-outside-toplevel
  from tests.data import ToyEnv, gen_config, make_critic, make_ladder  # pylint: disable=import-outside-toplevel
  d = out / f"generate_mesh{mesh}"
  man = gen(ToyEnv(), make_ladder(), make_critic(), gen_config(), d, seed=0, config_record={"tag": "toy"},
            log=lambda s: None, mesh=mesh_lib.make_mesh(mesh_lib.resolve_size(mesh, jax.device_count())))
  from simdist_jax.data.generate import make_generator, shard_state  # pylint: disable=import-outside-toplevel
  m = mesh_lib.make_mesh(mesh_lib.resolve_size(mesh, jax.device_count()))
  init_fn, chunk_fn = make_generator(ToyEnv(), make_ladder(), make_critic(), gen_config(shard_steps=10,
                                                                                        num_steps=10), m)
  gs, steps = chunk_fn(shard_state(init_fn(jax.random.PRNGKey(0)), m))
  placement = {"steps_reward": [list(x.data.shape) for x in steps["reward"].addressable_shards],
               "carry_policy_id": [list(x.data.shape) for x in gs.policy_id.addressable_shards]}
  keep = ("transitions", "episodes", "expert_flag_share", "noised_share", "scaler", "bytes_on_disk")
  return {**{k: man[k] for k in keep}, "sha256": [s["sha256"] for s in man["shards"]], "shards": placement}


def validate(out: pathlib.Path, mesh: int) -> str:
  del out
  from simdist_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from tests.conftest import CARTPOLE  # pylint: disable=import-outside-toplevel
  try:
    config_lib.load_config(f"{CARTPOLE}:small", [f"run.mesh={mesh}"])
  except config_lib.ConfigError as e:
    return str(e)
  return ""


def main(argv: list[str]) -> None:
  what, out, meshes = argv[0], pathlib.Path(argv[1]), [int(m) for m in argv[2:]]
  assert jax.device_count() == 4, jax.devices()
  fn = {"pretrain": pretrain, "finetune": finetune, "generate": generate, "validate": validate}[what]
  res = {str(m): fn(out, m) for m in meshes}
  sys.stdout.flush()
  print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
