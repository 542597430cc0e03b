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
import json
import pathlib

import jax

from simdist_jax import config as config_lib
from simdist_jax.adapt import evaluation
from simdist_jax.analysis import continuation
from simdist_jax.analysis import run_dir
from simdist_jax.envs.registry import make_real_env


def main() -> None:
  """Parses the flags, probes the episodes, prints the table, writes `--out`."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  run_dir.add_probe_args(ap, every=25)
  ap.add_argument("--world", default="real", choices=("sim", "real"))
  ap.add_argument("--drive", action="append", default=[], choices=("planner", "head"),
                  help="which controller drives the probed episodes (repeatable; default planner)")
  ap.add_argument("--length", type=int, default=100, help="control steps of every continuation")
  ap.add_argument("--switch", type=int, default=None, help="head steps of the 'switch' arm (default: planner h)")
  args = ap.parse_args()
  if min(args.episodes, args.every, args.length) < 1:
    raise SystemExit("closed_loop_advantage: --episodes, --every and --length must be >= 1")

  wd = pathlib.Path(args.workdir)
  run = run_dir.load(wd, args.model)
  cfg, _, variables, dims, wm, pcfg = run
  switch = pcfg.horizon if args.switch is None else args.switch
  if not 0 <= switch <= args.length:
    raise SystemExit(f"closed_loop_advantage: --switch must be in [0, --length], got {switch}")
  env = make_real_env(cfg, args.world)
  seeds = run_dir.probe_seeds(run, args.seed_base, args.episodes)
  out: dict = {"workdir": str(wd), "model": args.model, "world": args.world, "seeds": seeds,
               "every": args.every, "length": args.length, "switch": switch}
  for drive in args.drive or ["planner"]:
    planner = evaluation.model_controller(pcfg, wm, variables, dims, key=jax.random.PRNGKey(0))
    head = evaluation.model_controller(pcfg, wm, variables, dims, key=jax.random.PRNGKey(0), policy_only=True)
    probe = continuation.ContinuationProbe(planner, head, env, args.every, args.length, switch, drive)
    returns = run_dir.run_probed(env, probe, seeds, drive)
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
