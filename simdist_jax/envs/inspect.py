"""`simdist-jax env`: describe the task and roll out random actions in both backends (a quick smoke check).

Writes `<workdir>/env/env_info.json` with dims, domain ranges, and the mean return of random actions in the
sim domain (MJX, batched) and the real domain (MuJoCo C twin).
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.envs.registry import make_env, make_real_env
from simdist_jax.envs.wrappers import wrap_for_training


def random_rollout_sim(cfg, num_envs: int, num_steps: int, key: jax.Array) -> dict:
  """Mean per-episode-step reward of uniform random actions in [-1, 1] over a batch of MJX envs."""
  env = wrap_for_training(make_env(cfg, "sim"), episode_length=cfg.env.episode_length)
  key_reset, key_act = jax.random.split(key)

  @jax.jit
  def rollout(key_reset, key_act):
    state = env.reset(jax.random.split(key_reset, num_envs))

    def body(state, k):
      a = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      state = env.step(state, a)
      return state, state.reward

    state, rewards = jax.lax.scan(body, state, jax.random.split(key_act, num_steps))
    return rewards

  t0 = time.perf_counter()
  rewards = np.asarray(rollout(key_reset, key_act))
  return {"sim/random/mean_step_reward": float(rewards.mean()), "sim/random/wall_s": time.perf_counter() - t0}


def random_rollout_real(cfg, num_steps: int, seed: int) -> dict:
  env = make_real_env(cfg)
  rng = np.random.default_rng(seed)
  env.reset(jax.random.PRNGKey(seed))
  rewards = []
  for _ in range(num_steps):
    _, r, done, _ = env.step(rng.uniform(-1, 1, env.action_size).astype(np.float32))
    rewards.append(r)
    if done:
      env.reset(jax.random.PRNGKey(seed + len(rewards)))
  return {"real/random/mean_step_reward": float(np.mean(rewards))}


def run_stage(cfg, workdir) -> dict:
  out_dir = paths.stage_dir(workdir, "env")  # its config.json: written by the stage table (simdist_jax.stages)
  env = make_env(cfg, "sim")
  info = {"task": cfg.task, "dims": {k: v for k, v in env.task.dims.items()}, "ctrl_dt": env.dt,
          "n_substeps": env.n_substeps, "episode_length": cfg.env.episode_length,
          "domain_sim": [list(r) for r in env.domain.ranges],
          "domain_real": [list(r) for r in make_real_env(cfg).domain.ranges]}
  print(f"[env] task={cfg.task} dims={info['dims']} ctrl_dt={env.dt}s substeps={env.n_substeps}", flush=True)
  info.update(random_rollout_sim(cfg, num_envs=16, num_steps=cfg.env.episode_length,
                                 key=jax.random.PRNGKey(cfg.run.seed)))
  info.update(random_rollout_real(cfg, num_steps=cfg.env.episode_length, seed=cfg.run.seed))
  print(f"[env] random actions: sim mean step reward {info['sim/random/mean_step_reward']:.4f}, "
        f"real {info['real/random/mean_step_reward']:.4f}", flush=True)
  config_lib.atomic_write_text(out_dir / "env_info.json", json.dumps(info, indent=2))
  print(f"[env] wrote {out_dir / 'env_info.json'}", flush=True)
  return info
