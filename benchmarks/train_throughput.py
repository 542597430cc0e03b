"""Pretraining throughput (windows/s) of the paper-size Go2 world model (P=35, E=315 (21x15), A=12, C=3), batch 512.

Usage: python benchmarks/train_throughput.py [--batch 512] [--steps 5] [--preset paper]
Prints the device, the compile time and the steady-state windows/s of the jitted Eq. 2 train step (random data).
"""

import argparse
import time

import jax
import jax.numpy as jnp

from experiments.configs.sections import model as model_section
from simdist_jax.world_model import losses, train
from simdist_jax.world_model import model as model_lib

DIMS = {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3}


def main() -> None:
  """Runs the benchmark."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=512)
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--preset", default="paper")
  args = ap.parse_args()
  mcfg = model_section.get("go2", args.preset, DIMS)
  wm = model_lib.make_world_model(mcfg, DIMS)
  tx, schedule = train.make_optimizer(mcfg.lr, float(mcfg.grad_clip))
  step = train.make_train_step(losses.make_pretrain_loss(wm, mcfg), tx, schedule)
  v = jax.jit(wm.init)(jax.random.key(0))
  state = train.TrainState(v["params"], tx.init(v["params"]), jnp.zeros((), jnp.int32))
  L = wm.spec.history + wm.spec.horizon + 1
  k = jax.random.split(jax.random.key(1), 6)
  B = args.batch
  batch = {"proprio": jax.random.normal(k[0], (B, L, 35)), "extero": jax.random.normal(k[1], (B, L, 315)),
           "action": jax.random.normal(k[2], (B, L, 12)), "command": jax.random.normal(k[3], (B, L, 3)),
           "reward": jax.random.normal(k[4], (B, L)), "value": jax.random.normal(k[5], (B, L)),
           "expert_flag": jnp.ones((B, L))}
  seed = jax.random.key(2)
  t0 = time.perf_counter()
  state, m = step(state, v["scaler"], batch, seed)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, m = step(state, v["scaler"], batch, seed)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / args.steps
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), params "
        f"{model_lib.param_counts(v['params'])['total']:,}, batch {B}, preset {args.preset}")
  print(f"compile+first step {compile_s:.1f} s; {dt * 1e3:.0f} ms/step; {B / dt:.0f} windows/s "
        f"(loss {float(m['train/loss']):.3f})")


if __name__ == "__main__":
  main()
