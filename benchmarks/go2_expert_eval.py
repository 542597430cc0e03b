"""Evaluates a trained Go2 expert in the MuJoCo C twin: flat-ground tracking and the shifted-world protocols.

  taskset -c 1 .venv/bin/python benchmarks/go2_expert_eval.py --workdir runs/go2_cpu/walk [--checkpoint -1]

The policy is the deterministic expert (tanh(mean)) of ladder checkpoint `--checkpoint` (default: the latest on
disk), loaded with `simdist_jax.experts.checkpoints.load_policy` and fed the privileged observation.

1. Flat tracking: flat sim ground, sim-nominal domain (`worlds.SIM_NOMINAL`: friction 0.8, no added mass, no
   obs noise), SimDist's walk-straight command at each `--speeds` value (vx = speed; vy, wz P-laws on the
   lateral and yaw errors, clipped to the config's cmd_vy / cmd_wz ranges), `--episodes` episodes of
   `--duration` s each. Reported per speed: mean forward speed (x displacement / time after `--settle` s),
   mean body-frame vx, mean tracking kernel exp(-|cmd_xy - v_xy|^2 / 0.25) (1 = perfect), |y| drift at the
   end, fall rate.
2. World protocols (`worlds.evaluate_protocol`): each of `--worlds` and its flat reference
   (`worlds.flat_reference`: the same course, speeds, trials and time limit on flat sim ground, SIM_NOMINAL).
   `--masked` adds a run of each world in which the expert gets a flat-ground height scan (every cell = the
   cell under the base) and the sim-nominal domain parameters, i.e. only the physics is shifted, not what the
   privileged observation tells the expert.

Prints markdown tables; `--out FILE.json` also writes every number. The protocols live in the package:
`simdist_jax.analysis.go2_tracking` (policy, masking, flat tracking) and `simdist_jax.envs.go2.worlds`.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time

import jax

from simdist_jax import config as config_lib
from simdist_jax.analysis.go2_tracking import flat_tracking, make_policy, masked
from simdist_jax.envs.go2 import worlds
from simdist_jax.experts import checkpoints as ckpt


def main() -> None:
  """Parses the command line, runs the study and prints its tables."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="run directory holding expert/ (config.json, ladder/)")
  p.add_argument("--checkpoint", type=int, default=-1, help="ladder index (default -1: the latest on disk)")
  p.add_argument("--speeds", type=float, nargs="*", default=[0.1, 0.3, 0.5, 0.7, 1.0])
  p.add_argument("--episodes", type=int, default=3, help="flat-tracking episodes per speed")
  p.add_argument("--duration", type=float, default=10.0, help="flat-tracking episode length [s]")
  p.add_argument("--settle", type=float, default=1.0, help="seconds ignored at the start of each episode")
  p.add_argument("--worlds", nargs="*", default=["slippery_slope", "foam"])
  p.add_argument("--trials", type=int, default=None, help="trials per speed (default: the protocol's 5)")
  p.add_argument("--masked", action="store_true",
                 help="also run each shifted world with a flat-ground scan and sim-nominal domain parameters")
  p.add_argument("--no-flat-ref", action="store_true", help="skip the flat reference of each world")
  p.add_argument("--max-steps", type=int, default=None, help="cap on control steps per protocol trial (smoke)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=None, help="write all numbers to this JSON file")
  a = p.parse_args()

  expert_dir = pathlib.Path(a.workdir) / "expert"
  cfg = config_lib.from_json((expert_dir / "config.json").read_text())
  its = ckpt.list_ladder(expert_dir)
  iteration = its[a.checkpoint]
  policy = make_policy(expert_dir, a.checkpoint, cfg)
  print(f"expert {expert_dir}, ladder iteration {iteration} (index {a.checkpoint} of {its}); MuJoCo C twin",
        flush=True)
  out = {"expert_dir": str(expert_dir), "iteration": iteration, "backend": "mujoco C twin (RealEnv)"}
  t0 = time.time()
  if a.speeds:
    out["flat_tracking"] = flat_tracking(policy, cfg, a.speeds, a.episodes, a.duration, a.settle, a.seed,
                                         log=functools.partial(print, flush=True))
  out["worlds"] = {}
  for name in a.worlds:
    runs = [] if a.no_flat_ref else [(worlds.flat_reference(name), policy, name + " flat ref")]
    runs.append((worlds.get_world(name), policy, name))
    if a.masked:
      runs.append((worlds.get_world(name), masked(policy, cfg), name + " masked"))
    for world, pol, label in runs:
      r = worlds.evaluate_protocol(pol, world, cfg, key=jax.random.PRNGKey(a.seed), trials_per_speed=a.trials,
                              max_steps=a.max_steps)
      out["worlds"][label] = {**r, "per_speed": {str(k): v for k, v in r["per_speed"].items()}}
      print(f"  {label}: progress {r['mean_progress_m']:.2f} m, success {r['success_rate']:.2f}, "
            f"falls {r['fall_rate']:.2f}", flush=True)
  out["wall_s"] = time.time() - t0

  if "flat_tracking" in out:
    print(f"\nFlat tracking (flat sim ground, sim nominal, {a.episodes} x {a.duration:g} s per speed, "
          f"first {a.settle:g} s ignored)\n")
    print("| cmd vx [m/s] | forward speed [m/s] | body vx [m/s] | tracking kernel | abs(y) at end [m] | "
          "fall rate |")
    print("|---|---|---|---|---|---|")
    for r in out["flat_tracking"]:
      print(f"| {r['cmd']:.2f} | {r['forward_speed']:.3f} | {r['vx_body']:.3f} | {r['kernel']:.2f} | "
            f"{r['abs_y_end']:.2f} | {r['fall_rate']:.2f} |")
  if out["worlds"]:
    print("\nWorld protocols (mean forward progress [m], clipped to the course)\n")
    print("| world | course [m] | per-speed progress [m] | mean progress [m] | success | falls |")
    print("|---|---|---|---|---|---|")
    for name, r in out["worlds"].items():
      course = worlds.get_world(name.split()[0]).course_length
      ps = ", ".join(f"{float(k):g}: {v:.2f}" for k, v in r["per_speed"].items())
      print(f"| {name} | {course:.2f} | {ps} | {r['mean_progress_m']:.2f} | {r['success_rate']:.2f} | "
            f"{r['fall_rate']:.2f} |")
  print(f"\nwall {out['wall_s']:.0f} s")
  if a.out:
    pathlib.Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
