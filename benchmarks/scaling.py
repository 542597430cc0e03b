"""Data-parallel scaling (`run.mesh`): pretraining windows/s and generation transitions/s vs device count.

Usage: python benchmarks/scaling.py [--devices 1,2,4] [--preset small] [--batch 128] [--k 20] [--steps 60]
                                    [--env cartpole|toy] [--num_envs 256] [--shard_steps 50] [--shards 3]
                                    [--repeats 2] [--real-devices] [--json FILE]

Each device count n runs in its own process, started with `XLA_FLAGS=--xla_force_host_platform_device_count=n`
and `JAX_PLATFORMS=cpu` (simulated CPU devices; `--real-devices` keeps the platform and takes the first n of its
devices instead), and times, after a warm-up call that compiles:
- pretraining: `train.train_chunk` on the data-parallel mesh of n devices (params replicated, the global batch
  `--batch` split n ways, the same jitted K-step scan as `pretrain`) on random CartPole-dims windows at the model
  `--preset` (`train_throughput.random_windows`); windows/s = batch x steps / wall time.
- generation: one `generate.make_generator` chunk call (`--shard_steps` steps of `--num_envs` envs, split n ways)
  plus the host gather of its outputs, `--shards` times; transitions/s = envs x steps / wall time. `--env
  cartpole` is the MJX env with a stand-in ladder (`benchmarks/standins.py`), `--env toy` the point mass.
Printed side by side: rate, speed-up over one device and efficiency = speed-up / n. Simulated devices share the
host's cores (one device already uses them all through XLA's thread pool), so on a CPU this measures the overhead
of the sharded program, not a gain; on real accelerators use `--real-devices`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parent), str(_HERE)]  # this checkout's simdist_jax and experiments/, and the benchmarks


def worker(args: argparse.Namespace) -> dict:
  """The figures of one device count (this process's devices)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from experiments.configs.sections import model as model_section  # pylint: disable=import-outside-toplevel
  from simdist_jax import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  import train_throughput  # pylint: disable=import-outside-toplevel

  n = args.worker
  assert jax.device_count() >= n, (jax.device_count(), n)
  mesh = mesh_lib.make_mesh(n)
  res = {"devices": n, "device_kind": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform}

  # Pretraining.
  dims = train_throughput.DIMS["cartpole"]
  mcfg = model_section.get("cartpole", args.preset, dims)
  B, K = args.batch or int(mcfg.batch_size), args.k
  chunks = max(1, -(-args.steps // K))
  ds = train_throughput.random_windows(dims, int(mcfg.history), int(mcfg.horizon))
  opts = train.StepOptions.from_config(mcfg, dims)
  wm, tx = train.make_world_model(opts), train.optimizer(opts)
  v = wm.with_scaler(train.init_params(opts, jax.random.key(0)), ds.stats)
  sample_fn, arrays = ds.sampler()
  state0 = train.TrainState(v["params"], tx.init(v["params"]), jnp.zeros((), jnp.int32))
  state0, scaler, arrays = mesh_lib.replicate((state0, v["scaler"], arrays), mesh)
  key_data, key_loss = mesh_lib.replicate(tuple(jax.random.split(jax.random.key(1))), mesh)

  def train_run(num_chunks: int) -> None:
    state = state0
    for _ in range(num_chunks):
      state, m = train.train_chunk(opts, state, scaler, arrays, key_data, key_loss, num_steps=K, batch_size=B,
                                   sample_fn=sample_fn, mesh=mesh)
      jax.device_get(m)  # the host sync of every chunk, as in `pretrain`

  t0 = time.perf_counter()
  train_run(1)
  res["pretrain_compile_s"] = time.perf_counter() - t0
  best = min(_timed(lambda: train_run(chunks)) for _ in range(args.repeats))
  res.update({"pretrain_batch": B, "pretrain_k": K, "pretrain_steps": chunks * K,
              "pretrain_windows_per_s": B * chunks * K / best})

  # Generation.
  from simdist_jax.data import generate as gen_lib  # pylint: disable=import-outside-toplevel
  import standins  # pylint: disable=import-outside-toplevel
  if args.env == "toy":
    env, episode_length = standins.PointMassEnv(), 250
  else:
    from simdist_jax.config import load_config  # pylint: disable=import-outside-toplevel
    from simdist_jax.envs.registry import make_env  # pylint: disable=import-outside-toplevel
    cfg = load_config(str(_HERE.parent / "experiments" / "configs" / f"{args.env}.py") + ":small")
    env, episode_length = make_env(cfg, "sim"), int(cfg.env.episode_length)
  tdims = env.task.dims
  ladder, critic = standins.stand_in(12, tdims["privileged"], tdims["action"])
  gcfg = gen_lib.GenConfig(num_envs=args.num_envs, num_steps=args.shard_steps, shard_steps=args.shard_steps,
                           episode_length=episode_length)
  init_fn, chunk_fn = gen_lib.make_generator(env, ladder, critic, gcfg, mesh)
  gs = gen_lib.shard_state(init_fn(jax.random.PRNGKey(0)), mesh)  # a raw key, as `generate` passes

  def gen_run(calls: int) -> None:
    nonlocal gs
    for _ in range(calls):
      gs, steps = chunk_fn(gs)
      jax.device_get(steps)  # the per-shard host gather of `generate`

  t0 = time.perf_counter()
  gen_run(1)
  res["generate_compile_s"] = time.perf_counter() - t0
  best = min(_timed(lambda: gen_run(args.shards)) for _ in range(args.repeats))
  res.update({"generate_env": args.env, "generate_num_envs": args.num_envs,
              "generate_transitions_per_s": args.num_envs * args.shard_steps * args.shards / best})
  return res


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def main() -> None:
  """Runs one worker process per device count and prints the table."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--devices", default="1,2,4")
  ap.add_argument("--preset", default="small", choices=("tiny", "small", "paper"), help="CartPole model preset")
  ap.add_argument("--batch", type=int, default=0, help="global windows per step (default: the preset's)")
  ap.add_argument("--k", type=int, default=20, help="steps per jit call")
  ap.add_argument("--steps", type=int, default=60, help="timed steps per run (rounded up to a multiple of K)")
  ap.add_argument("--env", default="cartpole", choices=("cartpole", "toy"))
  ap.add_argument("--num_envs", type=int, default=256)
  ap.add_argument("--shard_steps", type=int, default=50)
  ap.add_argument("--shards", type=int, default=3, help="timed chunk calls per run")
  ap.add_argument("--repeats", type=int, default=2, help="timed runs per figure (the best is kept)")
  ap.add_argument("--real-devices", action="store_true", help="use the platform's own devices, not simulated CPUs")
  ap.add_argument("--json", default=None)
  ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    print("RESULT " + json.dumps(worker(args)), flush=True)
    return

  rows = []
  for n in [int(x) for x in args.devices.split(",")]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_HERE.parent)] + (
      [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    if not args.real_devices:
      env["JAX_PLATFORMS"] = "cpu"
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
    cmd = [sys.executable, __file__, "--worker", str(n), "--preset", args.preset, "--batch", str(args.batch),
           "--k", str(args.k), "--steps", str(args.steps), "--env", args.env, "--num_envs", str(args.num_envs),
           "--shard_steps", str(args.shard_steps), "--shards", str(args.shards), "--repeats", str(args.repeats)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
      raise SystemExit(f"{n} devices: worker failed\n{out.stderr[-3000:]}")
    row = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    row["wall_s"] = time.perf_counter() - t0
    rows.append(row)
    print(f"  {n} device(s) done in {row['wall_s']:.0f} s", flush=True)

  base = rows[0]
  for r in rows:
    for what in ("pretrain_windows_per_s", "generate_transitions_per_s"):
      r[what.split("_")[0] + "_speed_up"] = r[what] / base[what] * base["devices"]
      r[what.split("_")[0] + "_efficiency"] = r[what.split("_")[0] + "_speed_up"] / r["devices"]
  sim = "simulated CPU devices" if not args.real_devices else f"{base['platform']} devices"
  print(f"\n{base['device_kind']} ({sim}, {os.cpu_count()} host cores); pretraining: CartPole dims, model "
        f"{args.preset}, global batch {base['pretrain_batch']}, K {base['pretrain_k']}; generation: {args.env}, "
        f"{args.num_envs} envs x {args.shard_steps} steps per call")
  print(f"{'devices':>7} | {'pretrain win/s':>14} {'speed-up':>8} {'eff.':>5} | {'generate tr/s':>13} "
        f"{'speed-up':>8} {'eff.':>5} | compile s (train/gen)")
  for r in rows:
    print(f"{r['devices']:>7} | {r['pretrain_windows_per_s']:>14,.0f} {r['pretrain_speed_up']:>8.2f} "
          f"{r['pretrain_efficiency']:>5.2f} | {r['generate_transitions_per_s']:>13,.0f} "
          f"{r['generate_speed_up']:>8.2f} {r['generate_efficiency']:>5.2f} | "
          f"{r['pretrain_compile_s']:.1f}/{r['generate_compile_s']:.1f}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
