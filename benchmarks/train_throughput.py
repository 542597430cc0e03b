"""Pretraining throughput (windows/s): one Adam step per jit call vs K steps per jit call, side by side.

Usage: python benchmarks/train_throughput.py [--task cartpole|go2] [--preset small|paper|tiny] [--batch B]
                                            [--k K] [--steps N] [--repeats R] [--modes before,after]
                                            [--compute-dtype float32|bfloat16] [--fast-init] [--json FILE]

"before" is the old loop: the host draws a batch (`dataset.sample`, one jit call), runs one jitted step
(`train.train_step`) and reads the loss back (a host sync per step). "after" is what `pretrain` does now: one
`train.train_chunk` call runs K steps in a `lax.scan`, drawing the batches inside it, and the host reads the K
metrics back once. Both train the task's model at `--preset` on the same random windows (task dims, `from_episodes`
windows, so the gather is the real one) from the same initial state; compile time is excluded and reported apart.
Each mode is timed `--repeats` times, alternating, and the best run is reported (robust to a shared machine).
`--compute-dtype bfloat16` times the mixed-precision model (`model.compute_dtype`, float32 master weights); run it
beside a float32 run of the same sizes to compare (benchmarks/gpu_suite.sh does).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/ (config files) is not installed
from experiments.configs.sections import model as model_section  # noqa: E402
from simdist_jax.data import windows  # noqa: E402
from simdist_jax.world_model import model as model_lib  # noqa: E402
from simdist_jax.world_model import train  # noqa: E402

DIMS = {
  "cartpole": {"proprio": 5, "extero": 0, "extero_shape": (), "action": 1, "command": 0},
  "go2": {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3},
}


def random_windows(dims: dict, H: int, T: int, num_episodes: int = 64, length: int = 200) -> windows.WindowDataset:
  """Random episodes with the task's dims as a `WindowDataset` (real-data layout, front-padded)."""
  rng = np.random.default_rng(0)
  eps = [{k: rng.normal(size=(length, int(dims[k]))).astype(np.float32)
          for k in ("proprio", "extero", "action", "command")} for _ in range(num_episodes)]
  return windows.from_episodes(eps, H, T, None, 0.0, jax.random.key(0),
                               extero_shape=tuple(dims["extero_shape"]) or None)


def main() -> None:
  """Runs the benchmark and prints one table."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--task", default="cartpole", choices=sorted(DIMS))
  ap.add_argument("--preset", default="small", choices=("small", "paper", "tiny"))
  ap.add_argument("--batch", type=int, default=0, help="windows per step (default: the preset's model.batch_size)")
  ap.add_argument("--k", type=int, default=0, help="steps per jit call (default: the preset's model.log_every)")
  ap.add_argument("--steps", type=int, default=200, help="timed steps per run (rounded up to a multiple of K)")
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--modes", default="before,after", help="comma-separated subset of before,after")
  ap.add_argument("--compute-dtype", default="float32", choices=sorted(model_lib.COMPUTE_DTYPES),
                  help="model.compute_dtype of the timed model (default float32)")
  ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
  ap.add_argument("--fast-init", action="store_true",
                  help="random weights drawn with numpy instead of the compiled initializer (dry runs)")
  args = ap.parse_args()
  modes = [m for m in ("before", "after") if m in args.modes.split(",")]
  if not modes:
    ap.error("--modes needs before and/or after")
  dims = DIMS[args.task]
  mcfg = model_section.get(args.task, args.preset, dims)
  mcfg.compute_dtype = args.compute_dtype
  B = args.batch or int(mcfg.batch_size)
  K = args.k or int(mcfg.log_every)
  n_chunks = max(1, -(-args.steps // K))
  N = n_chunks * K
  ds = random_windows(dims, int(mcfg.history), int(mcfg.horizon))
  opts = train.StepOptions.from_config(mcfg, dims)
  wm, tx = train.make_world_model(opts), train.optimizer(opts)
  if args.fast_init:
    from standins import random_params  # pylint: disable=import-outside-toplevel
    v = wm.with_scaler(random_params(functools.partial(train.init_params, opts), jax.random.key(0)), ds.stats)
  else:
    v = wm.with_scaler(train.init_params(opts, jax.random.key(0)), ds.stats)
  state0 = train.TrainState(v["params"], tx.init(v["params"]), jnp.zeros((), jnp.int32))
  scaler = v["scaler"]
  key_data, key_loss = jax.random.split(jax.random.key(1))
  sample_fn, arrays = ds.sampler()

  def before(state: train.TrainState, steps: int) -> train.TrainState:
    for s in range(steps):
      batch = ds.sample(jax.random.fold_in(key_data, s), B)
      state, m = train.train_step(opts, state, scaler, batch, key_loss)
      float(m["train/loss"])  # the per-step host sync of the old loop
    return state

  def after(state: train.TrainState, chunks: int) -> train.TrainState:
    for _ in range(chunks):
      state, m = train.train_chunk(opts, state, scaler, arrays, key_data, key_loss, num_steps=K, batch_size=B,
                                   sample_fn=sample_fn)
      jax.device_get(m)  # one host sync per chunk
    return state

  run = {"before": lambda: before(state0, N), "after": lambda: after(state0, n_chunks)}
  warm = {"before": lambda: before(state0, 1), "after": lambda: after(state0, 1)}
  compile_s = {}
  for m in modes:
    t0 = time.perf_counter()
    jax.block_until_ready(warm[m]())
    compile_s[m] = time.perf_counter() - t0
  best = {m: float("inf") for m in modes}
  for _ in range(args.repeats):
    for m in modes:
      t0 = time.perf_counter()
      jax.block_until_ready(run[m]())
      best[m] = min(best[m], time.perf_counter() - t0)

  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); task {args.task}, preset {args.preset}, "
        f"params {model_lib.param_counts(v['params'])['total']:,}, batch {B}, K {K}, {N} timed steps, best of "
        f"{args.repeats}, compute {args.compute_dtype}")
  print(f"{'mode':<34}{'compile+1st s':>14}{'ms/step':>10}{'windows/s':>12}")
  labels = {"before": "before: 1 step per jit call", "after": f"after: {K} steps per jit call"}
  res = {"device": jax.devices()[0].device_kind, "task": args.task, "preset": args.preset,
         "params": int(model_lib.param_counts(v["params"])["total"]), "batch": B, "k": K, "timed_steps": N,
         "H": int(mcfg.history), "T": int(mcfg.horizon), "compute_dtype": args.compute_dtype}
  for m in modes:
    dt = best[m] / N
    print(f"{labels[m]:<34}{compile_s[m]:>14.1f}{dt * 1e3:>10.2f}{B / dt:>12.0f}")
    res.update({f"{m}_windows_per_s": B / dt, f"{m}_ms_per_step": dt * 1e3, f"{m}_compile_s": compile_s[m]})
  if len(modes) == 2:
    res["speed_up"] = best["before"] / best["after"]
    print(f"speed-up: {res['speed_up']:.2f}x")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
  main()
