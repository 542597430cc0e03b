"""Go2 MJX env throughput: control steps/s (4 physics substeps each, with height scan and privileged obs).

Usage:
  python benchmarks/go2_env_throughput.py                    # batches 1, 16, 64 (CPU default)
  python benchmarks/go2_env_throughput.py --batches 1 256 4096 --steps 50 --terrain boxes
  python benchmarks/go2_env_throughput.py --batches 32 --terrain flat grid   # plane vs the tile-grid hfield
Prints the device, the one-off jit compile time and, per terrain and batch size, env steps/s (= batch x
control steps / wall time of a jitted `lax.scan` over `--steps` steps, after a warm-up call).
"""

from __future__ import annotations

import argparse
import time

import jax

from simdist_jax.config import load_config
from simdist_jax.envs import registry
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.go2 import terrain as terrain_lib


def main() -> None:
  """Prints Go2 env throughput."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
  p.add_argument("--steps", type=int, default=20, help="control steps per timed call")
  p.add_argument("--terrain", nargs="+", default=["flat"],
                 help="one or more of: grid (the per-episode tile grid), flat, slope, stairs, boxes, rough")
  p.add_argument("--difficulty", type=float, default=0.4, help="panel terrains only")
  args = p.parse_args()
  for terrain in args.terrain:
    _bench(terrain, args)


def _bench(terrain: str, args) -> None:
  cfg = load_config("experiments/configs/go2.py:small",
                    [f"env.terrain={terrain}", f"env.terrain_difficulty={args.difficulty}"])
  task = registry.make_task(cfg)
  env = MjxEnv(task, registry.make_domain(cfg, "sim", task))
  dev = jax.devices()[0]
  ter = task.terrain
  what = (f"hfield {ter.shape[0]} x {ter.shape[1]}, {len(ter.spawns)} tiles"
          if isinstance(ter, terrain_lib.HeightField) else f"{len(ter.panels)} panels")
  print(f"device: {dev.platform} {dev.device_kind}; terrain {terrain} ({what}); {env.n_substeps} substeps/step",
        flush=True)

  reset = jax.jit(jax.vmap(env.reset))

  @jax.jit
  def rollout(state, key):
    def body(s, k):
      a = 0.3 * jax.random.normal(k, (s.obs["state"].shape[0], env.action_size))
      s = jax.vmap(env.step)(s, a)
      return s, s.reward.sum()
    return jax.lax.scan(body, state, jax.random.split(key, args.steps))

  for b in args.batches:
    keys = jax.random.split(jax.random.PRNGKey(0), b)
    t0 = time.perf_counter()
    state = jax.block_until_ready(reset(keys))
    state, _ = jax.block_until_ready(rollout(state, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, r = jax.block_until_ready(rollout(state, jax.random.PRNGKey(2)))
    dt = time.perf_counter() - t0
    print(f"batch {b:5d}: {b * args.steps / dt:10.1f} env steps/s ({b * args.steps * env.n_substeps / dt:10.1f}"
          f" physics steps/s); first call incl. compile {compile_s:.1f} s; obs {state.obs['state'].shape[1:]}"
          f" + priv {state.obs['privileged_state'].shape[1:]}", flush=True)


if __name__ == "__main__":
  main()
