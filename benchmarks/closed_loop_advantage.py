"""Does the planner beat its policy head over the closed loop, from the states it visits? (`analysis.continuation`)

At every `--every`-th control step of episodes driven by the planner (or the head: `--drive head`) in the MuJoCo C
twin of `--world`, the twin and both controllers are saved and the episode is continued for `--length` steps by the
planner, by the head, and by the head for `--switch` steps (default: the planner's h, one chunk, what a closed
advantage gate applies) and then the planner; everything is restored and the driving episode goes on. Printed: each
arm's mean return over the continuations and each arm minus the planner, paired over the states. The one-chunk
comparison of benchmarks/advantage_calibration.py next to this one separates a one-chunk advantage from a
closed-loop one. The planner plans ungated (the search's own plans), whatever `planner.advantage_gate` says.

  python benchmarks/closed_loop_advantage.py --workdir runs/f4 --world real --episodes 4 --every 25 --length 100 \
      --out runs/closed_loop_f4.json

Episode seeds default to the instrument seeds of benchmarks/advantage_calibration.py (S*100000+70000+i).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.analysis import continuation
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Parses the flags, probes the episodes, prints the table, writes `--out`."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="run directory (config.json, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default <workdir>/world_model)")
  ap.add_argument("--world", default="real", choices=("sim", "real"))
  ap.add_argument("--drive", action="append", default=[], choices=("planner", "head"),
                  help="which controller drives the probed episodes (repeatable; default planner)")
  ap.add_argument("--episodes", type=int, default=4)
  ap.add_argument("--every", type=int, default=25, help="probe every N-th control step")
  ap.add_argument("--length", type=int, default=100, help="control steps of every continuation")
  ap.add_argument("--switch", type=int, default=None, help="head steps of the 'switch' arm (default: planner h)")
  ap.add_argument("--seed-base", type=int, default=None, help="episode seeds seed-base + i (default S*100000+70000)")
  ap.add_argument("--out", default=None, help="JSON of every probed state and the summary")
  args = ap.parse_args()
  if min(args.episodes, args.every, args.length) < 1:
    raise SystemExit("closed_loop_advantage: --episodes, --every and --length must be >= 1")

  wd = pathlib.Path(args.workdir)
  cfg_file = wd / "config.json"
  if not cfg_file.exists():
    raise SystemExit(f"closed_loop_advantage: {cfg_file} not found (a run directory holds config.json)")
  cfg = config_lib.from_json(cfg_file.read_text())
  task = make_task(cfg)
  variables, _, dims = ckpt_lib.load_checked(args.model or str(paths.model_dir(wd)), cfg.model, task.dims)
  wm = model_lib.make_world_model(cfg.model, dims)
  pcfg = dataclasses.replace(mppi.PlannerConfig.from_config(cfg.planner, model_horizon=wm.spec.horizon),
                             advantage_gate=False)
  switch = pcfg.horizon if args.switch is None else args.switch
  if not 0 <= switch <= args.length:
    raise SystemExit(f"closed_loop_advantage: --switch must be in [0, --length], got {switch}")
  env = make_real_env(cfg, args.world)
  seed = int(cfg.run.seed)
  base = args.seed_base if args.seed_base is not None else seed * 100_000 + 70_000
  seeds = [base + i for i in range(args.episodes)]
  out: dict = {"workdir": str(wd), "model": args.model, "world": args.world, "seeds": seeds,
               "every": args.every, "length": args.length, "switch": switch}
  for drive in args.drive or ["planner"]:
    planner = evaluation.model_controller(pcfg, wm, variables, dims, key=jax.random.PRNGKey(0))
    head = evaluation.model_controller(pcfg, wm, variables, dims, key=jax.random.PRNGKey(0), policy_only=True)
    probe = continuation.ContinuationProbe(planner, head, env, args.every, args.length, switch, drive)
    t0, returns = time.perf_counter(), []
    for i, s in enumerate(seeds):
      returns.append(evaluation.run_episode(env, probe, jax.random.PRNGKey(s))["return"])
      eta = (time.perf_counter() - t0) / (i + 1) * (len(seeds) - i - 1)
      print(f"[{drive}] episode {i + 1}/{len(seeds)}: return {returns[-1]:.1f}, {len(probe.rows)} states "
            f"(ETA {eta:.0f}s)", flush=True)
    summ = continuation.summarize(probe.rows)
    out[drive] = {"returns": returns, "rows": probe.rows, "summary": summ}
    print(f"\n[{drive}-driven, {args.world}] {summ['n_states']} states, continuations of {args.length} steps "
          f"(switch after {switch}):")
    for arm in continuation.ARMS:
      line = (f"  {arm:8s} return {summ[f'{arm}/return_mean']:7.2f}  success {summ[f'{arm}/success_mean']:.2f}  "
              f"failures {summ[f'{arm}/failures']}")
      key = f"{arm}_minus_planner/return"
      if f"{key}/diff" in summ:
        line += (f"  minus planner {summ[f'{key}/diff']:+.2f} [{summ[f'{key}/lo']:+.2f}, {summ[f'{key}/hi']:+.2f}]")
      print(line, flush=True)
    if args.out:
      config_lib.atomic_write_text(args.out, json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
