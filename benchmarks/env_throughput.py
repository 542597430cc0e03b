"""Env steps/s of the MJX env at several batch sizes and of the MuJoCo C twin, side by side in one run.

Usage: python benchmarks/env_throughput.py [--config experiments/configs/cartpole.py:small]
       [--batches 1,64,512,2048] [--steps 200] [--no-c] [--json FILE]
Prints a table with the device name. Compile time is excluded (one warm-up call per batch size).
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's simdist_jax

import jax  # noqa: E402
import numpy as np  # noqa: E402

from simdist_jax import config as config_lib  # noqa: E402
from simdist_jax.envs.registry import make_env, make_real_env  # noqa: E402
from simdist_jax.envs.wrappers import wrap_for_training  # noqa: E402


def mjx_steps_per_s(cfg, batch: int, steps: int) -> tuple[float, float]:
  """(env steps/s, compile s) of `steps` random-action MJX steps at `batch` envs in one lax.scan."""
  env = wrap_for_training(make_env(cfg, "sim"), episode_length=cfg.env.episode_length)

  @jax.jit
  def run(state, key):
    def body(s, k):
      a = jax.random.uniform(k, (batch, env.action_size), minval=-1, maxval=1)
      return env.step(s, a), None
    state, _ = jax.lax.scan(body, state, jax.random.split(key, steps))
    return state

  state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
  t0 = time.perf_counter()
  state = jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
  return batch * steps / (time.perf_counter() - t0), compile_s


def c_steps_per_s(cfg, steps: int) -> float:
  """Control steps/s of the MuJoCo C twin with random actions."""
  env = make_real_env(cfg)
  env.reset(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  acts = rng.uniform(-1, 1, (steps, env.action_size)).astype(np.float32)
  env.step(acts[0])  # warm-up (jit of the task functions)
  t0 = time.perf_counter()
  for a in acts:
    _, _, done, _ = env.step(a)
    if done:
      env.reset(jax.random.PRNGKey(1))
  return steps / (time.perf_counter() - t0)


def main():
  """Prints MJX and C-twin throughput side by side."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="experiments/configs/cartpole.py:small")
  ap.add_argument("--batches", default="1,64,512,2048")
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--no-c", action="store_true", help="skip the MuJoCo C twin")
  ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
  args = ap.parse_args()
  cfg = config_lib.load_config(args.config)
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind}; jax {jax.__version__}; task {cfg.task}")
  print(f"{'backend':<14}{'batch':>8}{'env steps/s':>16}{'compile s':>12}")
  res = {"device": dev.device_kind, "task": cfg.task, "steps": args.steps, "mjx": {}}
  for b in [int(x) for x in args.batches.split(",")]:
    sps, comp = mjx_steps_per_s(cfg, b, args.steps)
    res["mjx"][str(b)] = {"env_steps_per_s": sps, "compile_s": comp}
    print(f"{'mjx':<14}{b:>8}{sps:>16,.0f}{comp:>12.1f}", flush=True)
  if not args.no_c:
    res["c_twin_steps_per_s"] = c_steps_per_s(cfg, args.steps * 5)
    print(f"{'mujoco C twin':<14}{1:>8}{res['c_twin_steps_per_s']:>16,.0f}{'-':>12}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
  main()
