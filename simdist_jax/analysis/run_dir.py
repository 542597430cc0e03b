"""A finished run directory loaded for the instruments (benchmarks/advantage_calibration.py,
benchmarks/closed_loop_advantage.py): its config, task, world model and the planner it deploys, ungated.

`add_probe_args(ap, every)` adds the flags those scripts share; `load(workdir, model)` does the loading and names the
missing file; `run_probed(env, probe, seeds, label)` runs the probed episodes with progress and an ETA.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time
from typing import Any, NamedTuple, Sequence

import jax

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.envs.registry import make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


class Run(NamedTuple):
  """What `load` returns."""

  cfg: Any            # the run's config (ml_collections, from <workdir>/config.json)
  task: Any
  variables: Any      # world-model parameters (of `--model` when given)
  dims: dict
  wm: Any             # the world model
  pcfg: mppi.PlannerConfig  # the run's planner with `advantage_gate` off: the search's own plans


def add_probe_args(ap: argparse.ArgumentParser, every: int) -> None:
  """--workdir, --model, --episodes, --every (default `every`), --seed-base, --out."""
  ap.add_argument("--workdir", required=True, help="run directory (config.json, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default <workdir>/world_model)")
  ap.add_argument("--episodes", type=int, default=4)
  ap.add_argument("--every", type=int, default=every, help="probe every N-th control step")
  ap.add_argument("--seed-base", type=int, default=None, help="episode seeds seed-base + i (default S*100000+70000)")
  ap.add_argument("--out", default=None, help="JSON of every probed state and the summary")


def load(workdir: str | pathlib.Path, model: str | None = None) -> Run:
  """Loads `<workdir>/config.json` and the world model (`model`, default `<workdir>/world_model`)."""
  wd = pathlib.Path(workdir)
  cfg_file = wd / "config.json"
  if not cfg_file.exists():
    raise FileNotFoundError(f"{cfg_file} not found: a run directory holds its config.json")
  cfg = config_lib.from_json(cfg_file.read_text())
  task = make_task(cfg)
  variables, _, dims = ckpt_lib.load_checked(model or str(paths.model_dir(wd)), cfg.model, task.dims)
  wm = model_lib.make_world_model(cfg.model, dims)
  pcfg = dataclasses.replace(mppi.PlannerConfig.from_config(cfg.planner, model_horizon=wm.spec.horizon),
                             advantage_gate=False)
  return Run(cfg, task, variables, dims, wm, pcfg)


def probe_seeds(run: Run, seed_base: int | None, episodes: int) -> list[int]:
  """Episode seeds seed_base + i (default the instrument seeds S*100000+70000+i, disjoint from every evaluation)."""
  base = seed_base if seed_base is not None else int(run.cfg.run.seed) * 100_000 + 70_000
  return [base + i for i in range(int(episodes))]


def run_probed(env: Any, probe: Any, seeds: Sequence[int], label: str) -> list[float]:
  """One episode per seed with `probe` as the controller (its `rows` grow); prints a progress line with an ETA per
  episode; returns the episodes' returns."""
  t0, returns = time.perf_counter(), []
  for i, s in enumerate(seeds):
    returns.append(evaluation.run_episode(env, probe, jax.random.PRNGKey(int(s)))["return"])
    eta = (time.perf_counter() - t0) / (i + 1) * (len(seeds) - i - 1)
    print(f"[{label}] episode {i + 1}/{len(seeds)}: return {returns[-1]:.1f}, {len(probe.rows)} states "
          f"(ETA {eta:.0f}s)", flush=True)
  return returns
