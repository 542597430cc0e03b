"""Data pipeline throughput: generation transitions/s and sampler windows/s, side by side with the device.

  .venv/bin/python benchmarks/data_throughput.py [--config experiments/configs/cartpole.py:small]
      [--num_envs 128] [--shard_steps 100] [--shards 3] [--batch 256] [--expert_dir DIR] [--out DIR]

Uses the task's MJX env. With `--expert_dir` the real ladder/critic are loaded (`simdist_jax.experts.ppo`);
otherwise a stand-in ladder of random linear policies and a linear critic with the same call signatures is used
(the policy cost is negligible next to the physics). Generation time excludes compilation (the first shard is timed
separately); the sampler is timed after a warm-up call. Also prints bytes/transition and float16 errors.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.config import load_config
from simdist_jax.data import generate as gen_lib
from simdist_jax.data import storage, windows
from simdist_jax.envs.registry import make_env


class StandInLadder(NamedTuple):
  """A ladder-shaped stand-in (linear tanh policies) with the fields the generator reads."""

  params: dict
  apply_fn: object
  iterations: list
  expert_id: int


def stand_in(num_policies: int, s_dim: int, a_dim: int, seed: int = 0):
  """(ladder, critic) stand-ins of random linear policies and a linear critic, for timing without an expert."""
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(0, 0.5, (num_policies, a_dim, s_dim)), jnp.float32)
  b = jnp.zeros((num_policies, a_dim), jnp.float32)
  ladder = StandInLadder({"w": w, "b": b}, lambda p, i, s: jnp.tanh(p["w"][i] @ s + p["b"][i]),
                         list(range(num_policies)), num_policies - 1)
  critic = ({"w": jnp.asarray(rng.normal(0, 0.1, (s_dim,)), jnp.float32)}, lambda p, s: p["w"] @ s)
  return ladder, critic


def main(argv=None) -> dict:
  """Times dataset generation and prints transitions/s; returns the figures."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="experiments/configs/cartpole.py:small")
  ap.add_argument("--num_envs", type=int, default=128)
  ap.add_argument("--shard_steps", type=int, default=100)
  ap.add_argument("--shards", type=int, default=3)
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--H", type=int, default=None)
  ap.add_argument("--T", type=int, default=None)
  ap.add_argument("--expert_dir", default=None)
  ap.add_argument("--out", default=None, help="dataset directory (default: a temp dir)")
  args = ap.parse_args(argv)

  overrides = [f"data.num_envs={args.num_envs}", f"data.shard_steps={args.shard_steps}",
               f"data.num_steps={args.shard_steps * args.shards}"]
  cfg = load_config(args.config, overrides)
  env = make_env(cfg, "sim")
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
  ds = windows.load_dataset(out, H, T, int(cfg.data.window_start_margin), int(cfg.data.window_end_margin),
                            float(cfg.data.eval_fraction), 0)
  jax.block_until_ready(ds.sample(jax.random.PRNGKey(0), args.batch))
  n_iter = 50
  t1 = time.perf_counter()
  for i in range(n_iter):
    b = ds.sample(jax.random.PRNGKey(i + 1), args.batch)
  jax.block_until_ready(b)
  samp_rate = n_iter * args.batch / (time.perf_counter() - t1)

  go2 = storage.layout({"proprio": 35, "extero": 315, "action": 12, "command": 3},
                       {k: "float16" for k in storage.OBS_KEYS}, 12)
  res = {"device": device, "task": cfg.task, "num_envs": gcfg.num_envs, "shard_steps": gcfg.shard_steps,
         "shards": gcfg.num_shards, "first_shard_s_incl_compile": times[0], "total_s": total,
         "generation_transitions_per_s": gen_rate, "sampler_windows_per_s": samp_rate, "batch": args.batch,
         "H": H, "T": T, "window_length": H + T + 1, "bytes_per_transition": man["bytes_per_transition"],
         "bytes_per_transition_go2_layout": storage.bytes_per_transition(go2),
         "float16_error": man["float16_error"], "expert_flag_share": man["expert_flag_share"]}
  print(f"device {device} | generation {gen_rate:,.0f} transitions/s ({gcfg.num_envs} envs, "
        f"{gcfg.shard_steps}-step scans; first shard incl. compile {times[0]:.1f} s) | sampler "
        f"{samp_rate:,.0f} windows/s (B={args.batch}, L={H + T + 1})")
  print(f"bytes/transition {man['bytes_per_transition']} ({cfg.task}), {res['bytes_per_transition_go2_layout']} "
        f"(Go2 layout P=35 E=315 A=12 C=3, projected)")
  for k, v in man["float16_error"].items():
    print(f"float16 {k}: max abs error {['%.2e' % e for e in v['max_abs']]}, worst / std "
          f"{v['worst_rel_to_std']:.2e}")
  print(json.dumps({k: v for k, v in res.items() if k != "float16_error"}))
  return res


if __name__ == "__main__":
  main()
