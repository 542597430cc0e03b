"""Data pipeline throughput: generation transitions/s and sampler windows/s, side by side with the device.

  .venv/bin/python benchmarks/data_throughput.py [--config experiments/configs/cartpole.py:small]
      [--num_envs 128] [--shard_steps 100] [--shards 3] [--batch 256] [--expert_dir DIR] [--out DIR]
      [--env task|toy] [--json FILE]

Uses the task's MJX env (`--env toy`: the point-mass stand-in of `benchmarks/standins.py`, no MuJoCo compile, for
dry runs of the plumbing; its rate says nothing about physics). With `--expert_dir` the real ladder/critic are loaded (`simdist_jax.experts.ppo`);
otherwise a stand-in ladder of random linear policies and a linear critic with the same call signatures is used
(the policy cost is negligible next to the physics). Generation time excludes compilation (the first shard is timed
separately); the sampler is timed after a warm-up call. Also prints bytes/transition and float16 errors.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parent), str(_HERE)]  # this checkout's simdist_jax and experiments/, and standins.py

import jax  # noqa: E402

from simdist_jax.config import load_config  # noqa: E402
from simdist_jax.data import generate as gen_lib  # noqa: E402
from simdist_jax.data import storage, windows  # noqa: E402
from standins import PointMassEnv, StandInLadder, stand_in  # noqa: E402,F401  (re-exported)


def main(argv=None) -> dict:
  """Times dataset generation and prints transitions/s; returns the figures."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default=str(_HERE.parent / "experiments" / "configs" / "cartpole.py") + ":small")
  ap.add_argument("--num_envs", type=int, default=128)
  ap.add_argument("--shard_steps", type=int, default=100)
  ap.add_argument("--shards", type=int, default=3)
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--H", type=int, default=None)
  ap.add_argument("--T", type=int, default=None)
  ap.add_argument("--expert_dir", default=None)
  ap.add_argument("--out", default=None, help="dataset directory (default: a temp dir)")
  ap.add_argument("--env", default="task", choices=("task", "toy"),
                  help="task: the config's MJX env; toy: the point-mass stand-in (dry runs)")
  ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
  args = ap.parse_args(argv)

  overrides = [f"data.num_envs={args.num_envs}", f"data.shard_steps={args.shard_steps}",
               f"data.num_steps={args.shard_steps * args.shards}"]
  cfg = load_config(args.config, overrides)
  if args.env == "task":
    from simdist_jax.envs.registry import make_env  # pylint: disable=import-outside-toplevel  (MuJoCo: slow import)
    env = make_env(cfg, "sim")
  else:
    env = PointMassEnv()
  dims = env.task.dims
  if args.expert_dir:
    load_ladder, load_critic = gen_lib.expert_loaders()
    ladder, critic = load_ladder(args.expert_dir), load_critic(args.expert_dir)
  else:
    ladder, critic = stand_in(12, dims["privileged"], dims["action"])
  gcfg = gen_lib.GenConfig.from_config(cfg)
  out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="simdist_bench_data_"))
  device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"

  generator = gen_lib.make_generator(env, ladder, critic, gcfg)
  times = []
  t_last = [time.perf_counter()]

  def log(msg: str) -> None:
    if "written" in msg:
      now = time.perf_counter()
      times.append(now - t_last[0])
      t_last[0] = now

  t0 = time.perf_counter()
  man = gen_lib.generate(env, ladder, critic, gcfg, out, int(cfg.run.seed), {"bench": True}, log=log,
                         generator=generator)
  total = time.perf_counter() - t0
  per_shard = gcfg.num_envs * gcfg.shard_steps
  steady = times[1:] or times
  gen_rate = per_shard * len(steady) / sum(steady)

  H = args.H if args.H is not None else int(cfg.model.history)
  T = args.T if args.T is not None else int(cfg.model.horizon)
  try:
    ds = windows.load_dataset(out, H, T, int(cfg.data.window_start_margin), int(cfg.data.window_end_margin),
                              float(cfg.data.eval_fraction), 0, front_pad=bool(cfg.data.get("front_pad", False)))
  except ValueError as e:  # e.g. no episode long enough for a window (short runs, falling stand-in policies)
    ds, samp_rate, samp_error = None, float("nan"), str(e)
  if ds is not None:
    jax.block_until_ready(ds.sample(jax.random.PRNGKey(0), args.batch))
    n_iter = 50
    t1 = time.perf_counter()
    for i in range(n_iter):
      b = ds.sample(jax.random.PRNGKey(i + 1), args.batch)
    jax.block_until_ready(b)
    samp_rate, samp_error = n_iter * args.batch / (time.perf_counter() - t1), None

  go2 = storage.layout({"proprio": 35, "extero": 315, "action": 12, "command": 3},
                       {k: "float16" for k in storage.OBS_KEYS}, 12)
  res = {"device": device, "task": cfg.task if args.env == "task" else "toy", "num_envs": gcfg.num_envs,
         "shard_steps": gcfg.shard_steps, "shards": gcfg.num_shards, "first_shard_s_incl_compile": times[0],
         "total_s": total, "sampler_error": samp_error,
         "generation_transitions_per_s": gen_rate, "sampler_windows_per_s": samp_rate, "batch": args.batch,
         "H": H, "T": T, "window_length": H + T + 1, "bytes_per_transition": man["bytes_per_transition"],
         "bytes_per_transition_go2_layout": storage.bytes_per_transition(go2),
         "float16_error": man["float16_error"], "expert_flag_share": man["expert_flag_share"]}
  print(f"device {device} | generation {gen_rate:,.0f} transitions/s ({gcfg.num_envs} envs, "
        f"{gcfg.shard_steps}-step scans; first shard incl. compile {times[0]:.1f} s) | sampler "
        f"{samp_rate:,.0f} windows/s (B={args.batch}, L={H + T + 1})")
  print(f"bytes/transition {man['bytes_per_transition']} ({res['task']}), {res['bytes_per_transition_go2_layout']} "
        f"(Go2 layout P=35 E=315 A=12 C=3, projected)")
  for k, v in man["float16_error"].items():
    print(f"float16 {k}: max abs error {['%.2e' % e for e in v['max_abs']]}, worst / std "
          f"{v['worst_rel_to_std']:.2e}")
  print(json.dumps({k: v for k, v in res.items() if k != "float16_error"}))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(res, indent=1))
  return res


if __name__ == "__main__":
  main()
