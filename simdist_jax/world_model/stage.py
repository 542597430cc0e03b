"""The world-model stages: `simdist-jax pretrain` (`run_stage`, Eq. 2) and `simdist-jax finetune` (Eq. 3).

Their config records and fingerprints are kept by the stage table (`simdist_jax.stages`), which calls these.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax

from simdist_jax import paths


def is_complete(cfg: Any, workdir: Any) -> bool:
  """True when `<workdir>/world_model/checkpoints` holds a checkpoint at step >= `model.num_steps`."""
  from simdist_jax.world_model import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  d = paths.model_dir(workdir) / "checkpoints"
  if not d.exists():
    return False
  ck = ckpt_lib.Checkpointer(str(d), create=False)
  try:
    step = ck.latest_step()
  finally:
    ck.close()
  return step is not None and int(step) >= int(cfg.model.num_steps)


def run_stage(cfg: Any, workdir: Any):
  """`simdist-jax pretrain`: trains (or resumes) the world model on `<workdir>/data/` in `<workdir>/world_model/`."""
  from simdist_jax.data import windows  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  if is_complete(cfg, workdir):
    print(f"[world_model] pretrain: complete in {paths.model_dir(workdir)}; skipping", flush=True)
    return None
  dataset = windows.load_from_config(cfg, workdir)
  return train.pretrain(cfg, str(paths.model_dir(workdir)), dataset)


def finetune_stage(cfg: Any, workdir: Any):
  """`simdist-jax finetune`: dynamics-only finetuning of the deployed model (`paths.planning_model_dir`:
  `<workdir>/world_model`, or `<workdir>/refine/model` after a sim refinement) on every recorded real
  episode under `<workdir>/adapt/rounds/*/episodes` (held-out episodes excluded) -> `<workdir>/finetuned/`."""
  from simdist_jax.adapt import recorder as rec  # pylint: disable=import-outside-toplevel
  from simdist_jax.envs.registry import make_task  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import finetune as ft  # pylint: disable=import-outside-toplevel
  dims = make_task(cfg).dims
  variables, _, _ = ckpt_lib.load_checked(str(paths.planning_model_dir(cfg, workdir)), cfg.model, dims)
  episodes = []
  for d in sorted((paths.adapt_dir(workdir) / "rounds").glob("round_*/episodes")):
    episodes.extend(rec.load_episodes(d, dims)[0])
  if not episodes:
    raise FileNotFoundError(f"no real episodes under {paths.adapt_dir(workdir) / 'rounds'}; run `adapt` first")
  stats = {k: dict(v) for k, v in variables["scaler"].items()}
  ds = rec.aggregate(episodes, H=int(cfg.model.history), T=int(cfg.model.horizon), stats=stats,
                     eval_fraction=0.1, key=jax.random.PRNGKey(int(cfg.run.seed)))
  return ft.finetune(cfg, str(paths.planning_model_dir(cfg, workdir)), ds, str(pathlib.Path(workdir) / "finetuned"))
