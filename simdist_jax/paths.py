"""Run-directory layout. Every stage writes under `<workdir>/<stage>/` and a `config.json` beside its artifacts.

<workdir>/
  config.json          the resolved config of the run
  expert/              PPO checkpoint ladder, critic, expert_eval.json, expert_ladder.png, metrics.jsonl
  data/                dataset shards + manifest.json + scaler
  world_model/         pretraining checkpoints, metrics.jsonl, TensorBoard events
  refine/              sim on-policy refinement (refine.rounds > 0): sim planner episodes, the refined model
  adapt/               real episodes, per-round finetuned models, adapt_results.json
  report/              report.md and figures
"""

import pathlib


def stage_dir(workdir, stage: str) -> pathlib.Path:
  """Directory of `stage` in `workdir`: `<workdir>/<stage>`."""
  return pathlib.Path(workdir) / stage


def expert_dir(workdir) -> pathlib.Path:
  """Directory of the expert stage: `<workdir>/expert`."""
  return stage_dir(workdir, "expert")


def data_dir(workdir) -> pathlib.Path:
  """Directory of the data stage: `<workdir>/data`."""
  return stage_dir(workdir, "data")


def model_dir(workdir) -> pathlib.Path:
  """Directory of the world-model stage: `<workdir>/world_model`."""
  return stage_dir(workdir, "world_model")


def refine_dir(workdir) -> pathlib.Path:
  """Directory of the sim refinement stage: `<workdir>/refine`."""
  return stage_dir(workdir, "refine")


def planning_model_dir(cfg, workdir) -> pathlib.Path:
  """The world model the planner is deployed with (adapt's round 0, the `finetune` command's start): the sim
  refinement's `<workdir>/refine/model` when `refine.rounds` > 0, else the pretrained `<workdir>/world_model`."""
  return refine_dir(workdir) / "model" if int(cfg.refine.rounds) > 0 else model_dir(workdir)


def adapt_dir(workdir) -> pathlib.Path:
  """Directory of the adaptation stage: `<workdir>/adapt`."""
  return stage_dir(workdir, "adapt")


def report_dir(workdir) -> pathlib.Path:
  """Directory of the report stage: `<workdir>/report`."""
  return stage_dir(workdir, "report")


def default_workdir(cfg) -> pathlib.Path:
  """Default run directory of a config: `runs/<task>_<preset>`."""
  return pathlib.Path("runs") / f"{cfg.task}_{cfg.preset}"
