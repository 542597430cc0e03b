"""Closed-loop return of planner settings (and the policy head alone) with a trained world model, side by side.

Each `--set` is one planner variant: comma-separated `planner` config overrides applied on top of the run's config
(e.g. `--set "init_std=0.3,num_samples=64,iterations=2"`). `--set policy` runs the policy head alone (no search).
Every variant runs the same episode seeds in the MuJoCo C twin of the chosen domain.

  python benchmarks/planner_eval.py --workdir runs/cartpole_small --domain sim --seeds 1000,1001 \
      --set policy --set "init_std=0.05" --set "init_std=0.3,num_samples=64,iterations=2"
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt.evaluation import policy_only_config, run_episode
from simdist_jax.envs.registry import make_real_env
from simdist_jax.planner import mppi
from simdist_jax.planner.controller import Controller
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Runs every planner variant on the same seeds and prints their returns side by side."""
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="run directory (config.json, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default: <workdir>/world_model)")
  ap.add_argument("--domain", default="sim", choices=("sim", "real"))
  ap.add_argument("--seeds", default="1000,1001,1002")
  ap.add_argument("--real", default="", help="overrides of the real domain 'k=v,k=v' (e.g. 'motor_gain=7.0')")
  ap.add_argument("--set", action="append", default=[], dest="variants",
                  help="planner overrides 'k=v,k=v' ('policy' = the policy head alone); repeatable")
  args = ap.parse_args()

  workdir = pathlib.Path(args.workdir)
  real = [f"domain.real.{kv.strip()}" for kv in args.real.split(",") if kv.strip()]
  base = config_lib.apply_overrides(config_lib.from_json((workdir / "config.json").read_text()), real)
  variables, _, dims = ckpt_lib.load(args.model or str(paths.model_dir(workdir)))
  wm = model_lib.make_world_model(base.model, dims)
  env = make_real_env(base, args.domain)
  seeds = [int(s) for s in args.seeds.split(",")]
  print(f"model {args.model or paths.model_dir(workdir)}, {args.domain} domain "
        f"{dict(base.domain[args.domain]) if args.domain == 'real' else ''}, seeds {seeds}", flush=True)
  for variant in args.variants or ["policy"]:
    overrides = [] if variant == "policy" else [f"planner.{kv.strip()}" for kv in variant.split(",") if kv.strip()]
    pcfg = mppi.PlannerConfig.from_config(config_lib.apply_overrides(base, overrides).planner,
                                          model_horizon=wm.spec.horizon)
    if variant == "policy":   # the loop's own policy-head controller (one definition, adapt.evaluation)
      pcfg = policy_only_config(pcfg)
    ctrl = Controller(pcfg, wm, variables, dims, history=wm.spec.history, key=jax.random.PRNGKey(0),
                      model_horizon=wm.spec.horizon)
    t0 = time.perf_counter()
    rets = [run_episode(env, ctrl, jax.random.PRNGKey(s))["return"] for s in seeds]
    lat = ctrl.latency_summary(skip_first=5)
    print(f"{variant or '(run config)':60s} return {np.mean(rets):7.1f} +- {np.std(rets):5.1f}  "
          f"{[round(r, 1) for r in rets]}  p50 {lat.get('latency/p50_ms', 0):.1f} ms  "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
  main()
