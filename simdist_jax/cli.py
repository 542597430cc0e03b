"""`simdist-jax <stage> --config=experiments/configs/<task>.py:<preset> [--config.key=value ...] [--workdir=DIR]`.

One subcommand per pipeline stage. Each stage is a function `run_stage(cfg, workdir)` in its package; the CLI
only parses, freezes the config, prepares the run directory (writing `config.json`) and calls it. Stages whose
module is not part of this installation are simply absent from the list.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pathlib
import sys

from simdist_jax import config as config_lib
from simdist_jax import paths

# stage name -> (module, function, help)
_STAGES = {
    "env": ("simdist_jax.envs.inspect", "run_stage", "describe the task and roll out random actions in both backends"),
    "expert": ("simdist_jax.experts.ppo", "run_stage", "train the privileged PPO expert and its checkpoint ladder"),
    "expert-eval": ("simdist_jax.experts.evaluate", "run_stage", "evaluate every checkpoint in sim and real"),
    "generate": ("simdist_jax.data.generate", "run_stage", "generate the mixed-quality dataset (Algorithm 2)"),
    "data-report": ("simdist_jax.data.report", "run_stage", "summarize a generated dataset"),
    "pretrain": ("simdist_jax.pipeline", "pretrain_stage", "pretrain the world model (Eq. 2)"),
    "finetune": ("simdist_jax.pipeline", "finetune_stage", "dynamics-only finetuning (Eq. 3)"),
    "adapt": ("simdist_jax.adapt.loop", "run_stage", "adaptation rounds in the shifted real world"),
    "report": ("simdist_jax.analysis.report", "run_stage", "write report.md for a run directory"),
    "run": ("simdist_jax.pipeline", "run_stage", "the whole pipeline, skipping completed stages"),
}


def available_stages() -> dict:
  out = {}
  for name, (mod, fn, help_) in _STAGES.items():
    try:
      found = importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
      found = False
    if found:
      out[name] = (mod, fn, help_)
  return out


def _parser(stages: dict) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="simdist-jax", description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="stage", metavar="STAGE")
  for name, (_, _, help_) in stages.items():
    s = sub.add_parser(name, help=help_)
    if name == "report":
      s.add_argument("run_dir", help="run directory (holds config.json and the stage outputs)")
      continue
    s.add_argument("--config", required=True, help="path/to/task.py:preset (preset: small|paper)")
    s.add_argument("--workdir", default=None, help="run directory (default runs/<task>_<preset>)")
  return p


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  stages = available_stages()
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  args = _parser(stages).parse_args(rest)
  if args.stage is None:
    _parser(stages).print_help()
    return 2
  mod_name, fn_name, _ = stages[args.stage]
  if args.stage == "report":
    run_dir = pathlib.Path(args.run_dir).absolute()
    if not (run_dir / "config.json").exists():
      print(f"simdist-jax: {run_dir} is not a run directory (no config.json)", file=sys.stderr)
      return 2
    cfg = config_lib.from_json((run_dir / "config.json").read_text())
    getattr(importlib.import_module(mod_name), fn_name)(cfg, run_dir)
    return 0
  try:
    cfg = config_lib.load_config(args.config, overrides)
  except config_lib.ConfigError as e:
    print(f"simdist-jax: config error: {e}", file=sys.stderr)
    return 2
  workdir = (pathlib.Path(args.workdir) if args.workdir else paths.default_workdir(cfg)).absolute()
  fn = getattr(importlib.import_module(mod_name), fn_name)
  try:
    config_lib.write_run_config(workdir, cfg)
    fn(cfg, workdir)
  except config_lib.ConfigError as e:
    print(f"simdist-jax: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
