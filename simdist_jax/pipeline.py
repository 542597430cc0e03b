"""The `run` stage (expert -> data -> pretrain -> adapt -> report) and the glue stages `pretrain`/`finetune`.

Each stage is skipped when its artifacts are complete, so rerunning the same command after an interruption
continues where it stopped; a run directory made by a different config is refused (`prepare_run_dir`).
"""

from __future__ import annotations

import json
import pathlib
import time

import jax

from simdist_jax import config as config_lib
from simdist_jax import paths


def _log(msg: str) -> None:
  print(f"[run] {msg}", flush=True)


# ---- world model stages ------------------------------------------------------------------------------------
# What a pretrained model depends on (its directory refuses a config that differs in any of these).
_PRETRAIN_SECTIONS = ("task", "env", "domain.sim", "expert", "data", "model", "run")

def pretrain_is_complete(cfg, workdir) -> bool:
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


def pretrain_stage(cfg, workdir):
  """`simdist-jax pretrain`: trains (or resumes) the world model on `<workdir>/data/`."""
  from simdist_jax.data import windows  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  config_lib.prepare_run_dir(paths.model_dir(workdir), cfg, sections=_PRETRAIN_SECTIONS)
  if pretrain_is_complete(cfg, workdir):
    _log(f"pretrain: complete in {paths.model_dir(workdir)}; skipping")
    return None
  dataset = windows.load_from_config(cfg, workdir)
  return train.pretrain(cfg, str(paths.model_dir(workdir)), dataset)


def finetune_stage(cfg, workdir):
  """`simdist-jax finetune`: dynamics-only finetuning of `<workdir>/world_model` on every recorded real
  episode under `<workdir>/adapt/rounds/*/episodes` (held-out episodes excluded) -> `<workdir>/finetuned/`."""
  from simdist_jax.adapt import recorder as rec  # pylint: disable=import-outside-toplevel
  from simdist_jax.envs.registry import make_task  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import finetune as ft  # pylint: disable=import-outside-toplevel
  dims = make_task(cfg).dims
  variables, _, _ = ckpt_lib.load_checked(str(paths.model_dir(workdir)), cfg.model, dims)
  episodes = []
  for d in sorted((paths.adapt_dir(workdir) / "rounds").glob("round_*/episodes")):
    episodes.extend(rec.load_episodes(d, dims)[0])
  if not episodes:
    raise FileNotFoundError(f"no real episodes under {paths.adapt_dir(workdir) / 'rounds'}; run `adapt` first")
  stats = {k: dict(v) for k, v in variables["scaler"].items()}
  ds = rec.aggregate(episodes, H=int(cfg.model.history), T=int(cfg.model.horizon), stats=stats,
                     eval_fraction=0.1, key=jax.random.PRNGKey(int(cfg.run.seed)))
  return ft.finetune(cfg, str(paths.model_dir(workdir)), ds, str(pathlib.Path(workdir) / "finetuned"))


# ---- the whole pipeline ------------------------------------------------------------------------------------
def _stages():
  from simdist_jax.adapt import loop  # pylint: disable=import-outside-toplevel
  from simdist_jax.analysis import report  # pylint: disable=import-outside-toplevel
  from simdist_jax.data import generate, report as data_report  # pylint: disable=import-outside-toplevel
  from simdist_jax.experts import evaluate, ppo  # pylint: disable=import-outside-toplevel

  return [
      ("expert", ppo.is_complete, ppo.run_stage),
      ("expert-eval", evaluate.is_complete, evaluate.run_stage),
      # generate itself confirms a complete dataset (and refuses one made by another config) or resumes.
      ("generate", lambda c, wd: False, generate.run_stage),
      ("data-report", lambda c, wd: (paths.data_dir(wd) / "data_report.json").exists(), data_report.run_stage),
      ("pretrain", pretrain_is_complete, pretrain_stage),
      ("adapt", loop.is_complete, loop.run_stage),
      ("report", lambda c, wd: False, report.run_stage),
  ]


def run_stage(cfg, workdir) -> dict:
  """Runs every stage in order, skipping the complete ones; returns {stage: seconds}."""
  workdir = pathlib.Path(workdir)
  config_lib.write_run_config(workdir, cfg)
  stages = _stages()
  times = {}
  t_all = time.perf_counter()
  for i, (name, done, fn) in enumerate(stages, 1):
    if done(cfg, workdir):
      _log(f"[{i}/{len(stages)}] {name}: complete, skipped")
      continue
    _log(f"[{i}/{len(stages)}] {name}: running")
    t0 = time.perf_counter()
    fn(cfg, workdir)
    times[name] = time.perf_counter() - t0
    _log(f"[{i}/{len(stages)}] {name}: done in {times[name]:.0f}s (total {time.perf_counter() - t_all:.0f}s)")
  config_lib.atomic_write_text(workdir / "run_times.json", json.dumps(times, indent=2))
  _log(f"finished in {time.perf_counter() - t_all:.0f}s; report: {paths.report_dir(workdir) / 'report.md'}")
  return times
