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

Prints markdown tables; `--out FILE.json` also writes every number.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from simdist_jax import config as config_lib  # noqa: E402
from simdist_jax.envs.domain import Domain  # noqa: E402
from simdist_jax.envs.go2 import worlds as W  # noqa: E402
from simdist_jax.envs.go2.task import PARAM_NAMES  # noqa: E402
from simdist_jax.experts import checkpoints as ckpt  # noqa: E402


def make_policy(expert_dir: pathlib.Path, k: int, cfg):
  params, apply_fn = ckpt.load_policy(expert_dir, k, cfg)
  act = jax.jit(lambda obs: apply_fn(params, obs))

  def policy(obs: dict) -> np.ndarray:
    return np.asarray(act(jnp.asarray(obs["privileged_state"])))

  return policy


# privileged_state layout (task.py): proprio 35 | command 3 | last action 12 | foot forces 4 | foot heights 4 |
# domain 7 | height scan 315 (21 x 15, row-major, rows x = -0.5..1.5 m ahead: the cell under the base is 5 * 15 + 7).
_DOMAIN = slice(58, 65)
_SCAN = slice(65, 380)
_SCAN_UNDER_BASE = 5 * 15 + 7


def masked(policy, cfg):
  """`policy` fed a flat-ground scan (every cell = the cell under the base) and the sim-nominal domain
  parameters: the expert is not told about the shift (physics-only shift)."""
  sim = Domain.from_config("sim", dict(cfg.domain.sim), PARAM_NAMES)
  nominal = np.asarray(sim.normalize({k: jnp.float32(v) for k, v in W.SIM_NOMINAL.items()}), np.float32)

  def fn(obs: dict) -> np.ndarray:
    priv = np.array(obs["privileged_state"], np.float32)
    scan = priv[_SCAN]
    priv[_SCAN] = scan[_SCAN_UNDER_BASE]
    priv[_DOMAIN] = nominal
    return policy({**obs, "privileged_state": priv})

  return fn


def flat_tracking(policy, cfg, speeds, episodes: int, duration_s: float, settle_s: float, seed: int) -> list:
  world = W.flat_reference("foam")  # flat sim ground + SIM_NOMINAL (protocol fields unused here)
  rows = []
  for v in speeds:
    env = W.make_world_env(world, cfg, v)
    n_steps = int(round(duration_s / env.dt))
    n_settle = int(round(settle_s / env.dt))
    per_ep = []
    for e in range(episodes):
      obs = env.reset(jax.random.fold_in(jax.random.PRNGKey(seed), 1000 * e + int(round(100 * v))))
      fell, x_settle, t_settle, vx_body, kernel = False, None, None, [], []
      for t in range(1, n_steps + 1):
        obs, _, _, info = env.step(policy(obs))
        if t == n_settle:
          x_settle, t_settle = float(env.data.qpos[0]), float(env.data.time)
        if t > n_settle:
          priv = obs["privileged_state"]
          v_xy, cmd_xy = priv[0:2], priv[35:37]
          vx_body.append(float(v_xy[0]))
          kernel.append(float(np.exp(-np.sum((cmd_xy - v_xy) ** 2) / 0.25)))
        if info["failed"]:
          fell = True
          break
      if x_settle is None or fell:
        fwd = float("nan")
      else:
        fwd = (float(env.data.qpos[0]) - x_settle) / (float(env.data.time) - t_settle)
      per_ep.append({"fell": fell, "forward_speed": fwd, "steps": t,
                     "vx_body": float(np.mean(vx_body)) if vx_body else float("nan"),
                     "kernel": float(np.mean(kernel)) if kernel else float("nan"),
                     "y_end": float(env.data.qpos[1])})
    ok = [p for p in per_ep if not p["fell"]]
    mean = lambda key: float(np.mean([p[key] for p in ok])) if ok else float("nan")  # noqa: E731
    rows.append({"cmd": v, "forward_speed": mean("forward_speed"), "vx_body": mean("vx_body"),
                 "kernel": mean("kernel"), "abs_y_end": float(np.mean([abs(p["y_end"]) for p in per_ep])),
                 "fall_rate": float(np.mean([p["fell"] for p in per_ep])), "episodes": per_ep})
    print(f"  flat v={v:.2f}: fwd {rows[-1]['forward_speed']:.3f} m/s, falls {rows[-1]['fall_rate']:.2f}",
          flush=True)
  return rows


def main() -> None:
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
    out["flat_tracking"] = flat_tracking(policy, cfg, a.speeds, a.episodes, a.duration, a.settle, a.seed)
  out["worlds"] = {}
  for name in a.worlds:
    runs = [] if a.no_flat_ref else [(W.flat_reference(name), policy, name + " flat ref")]
    runs.append((W.get_world(name), policy, name))
    if a.masked:
      runs.append((W.get_world(name), masked(policy, cfg), name + " masked"))
    for world, pol, label in runs:
      r = W.evaluate_protocol(pol, world, cfg, key=jax.random.PRNGKey(a.seed), trials_per_speed=a.trials,
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
      course = W.get_world(name.split()[0]).course_length
      ps = ", ".join(f"{float(k):g}: {v:.2f}" for k, v in r["per_speed"].items())
      print(f"| {name} | {course:.2f} | {ps} | {r['mean_progress_m']:.2f} | {r['success_rate']:.2f} | "
            f"{r['fall_rate']:.2f} |")
  print(f"\nwall {out['wall_s']:.0f} s")
  if a.out:
    pathlib.Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
