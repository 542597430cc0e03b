"""Success of the scripted Peg Insertion controller on the Narrow and Wide grids, per world (MuJoCo C twin).

Usage: python benchmarks/peg_scripted.py [--config experiments/configs/peg_insertion.py:small] [--steps 75]
Prints, for each world (the sim domain with a fresh DR draw per trial, and every shifted world of
simdist_jax/envs/manipulation/worlds.py) and each grid, the share of grid points from which the controller seated the
peg within `--steps` control steps and the mean steps to success, for the full controller (aligns the orientation)
and its translation-only variant (rot_gain 0): a proxy for how the shift punishes a controller that learned in sim
that the orientation can be ignored. One trial per grid point (key = the point's index).
"""

import argparse
import dataclasses
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax.envs import registry
from simdist_jax.envs.manipulation import peg, worlds
from simdist_jax.envs.real import RealEnv


def run_grid(env, task, fn, grid: str, steps: int) -> tuple[float, float]:
  """(success share, mean steps to success over the successes) from every point of `grid`."""
  hits = []
  for i, cond in enumerate(task.initial_conditions(grid)):
    obs = env.reset(jax.random.PRNGKey(i), condition=cond)
    for t in range(steps):
      obs, _, _, info = env.step(fn(obs["state"]))
      if task.success(info["metrics"]):
        hits.append(t + 1)
        break
  n = len(task.initial_conditions(grid))
  return len(hits) / n, float(np.mean(hits)) if hits else float("nan")


def main():
  """Prints the table."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="experiments/configs/peg_insertion.py:small")
  ap.add_argument("--steps", type=int, default=75)
  args = ap.parse_args()
  cfg = config_lib.load_config(args.config)
  task = registry.make_task(cfg)
  sim = registry.make_domain(cfg, "sim", task)
  doms = {"sim (DR)": sim, **{n: w.real_domain() for n, w in worlds.WORLDS.items()}}
  ctrls = {"scripted": peg.scripted_insertion(task.cfg),
           "translation-only": peg.scripted_insertion(task.cfg, rot_gain=0.0)}
  task_free = peg.PegInsertion(dataclasses.replace(task.cfg, world=None))  # any world's values as the twin's domain
  print(f"{'world':<22}{'controller':<18}{'grid':<8}{'success':>9}{'steps':>8}")
  for wname, dom in doms.items():
    env = RealEnv(task_free, dom, sim_domain=sim)
    for cname, fn in ctrls.items():
      for grid in ("narrow", "wide"):
        t0 = time.perf_counter()
        share, mean_steps = run_grid(env, task_free, fn, grid, args.steps)
        print(f"{wname:<22}{cname:<18}{grid:<8}{share:>9.2f}{mean_steps:>8.1f}   ({time.perf_counter() - t0:.0f} s)",
              flush=True)


if __name__ == "__main__":
  main()
