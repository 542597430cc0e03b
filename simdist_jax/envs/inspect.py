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
from simdist_jax.adapt import evaluation
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


class RandomController:
  """Uniform random actions in [-1, 1]^A from a numpy generator, as a host controller for `run_episode`."""

  def __init__(self, action_size: int, rng: np.random.Generator) -> None:
    self.action_size, self.rng = int(action_size), rng

  def reset(self, key: jax.Array) -> None:
    """Stateless: the generator's stream continues across episodes."""
    del key

  def replace_last_action(self, applied) -> None:
    """No action history to correct."""
    del applied

  def __call__(self, proprio, extero=None, command=None) -> np.ndarray:
    """One uniform draw per step, whatever the observation."""
    return self.rng.uniform(-1, 1, self.action_size).astype(np.float32)


def random_rollout_real(cfg, num_steps: int, seed: int) -> dict:
  """Mean per-step reward of uniform random actions over `num_steps` consecutive steps in the real twin.

  Episodes run through `adapt.evaluation.run_episode`; the first resets with PRNGKey(seed), each later one with
  PRNGKey(seed + steps so far), and the last is cut at `num_steps` in total.
  """
  env = make_real_env(cfg)
  controller = RandomController(env.action_size, np.random.default_rng(seed))
  total, steps = 0.0, 0
  while steps < num_steps:
    key = jax.random.PRNGKey(seed + steps)
    out = evaluation.run_episode(env, controller, key, reset_key=key, max_steps=num_steps - steps)
    total += out["return"]
    steps += out["steps"]
  return {"real/random/mean_step_reward": total / steps}


def run_stage(cfg, workdir) -> dict:
  """`simdist-jax env`: writes `<workdir>/env/env_info.json` (dims, domains, random-action rewards)."""
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
