"""Stage 1 (paper §2.2): train the privileged expert with brax PPO and save its checkpoint ladder and critic.

`simdist-jax expert` -> `run_stage(cfg, workdir)`. PPO itself is `brax.training.agents.ppo.train` on
`make_env(cfg, "sim")` wrapped by `wrap_for_training` (a fresh domain per episode); actor and critic read
`privileged_state`. This module only schedules, saves, logs and resumes.

Iterations and env steps. One PPO iteration = one brax `training_step` = `num_envs * unroll_length` env steps
(`batch_size = num_envs / num_minibatches`, so each step consumes exactly one rollout of every env). Iteration i
<-> env step i * num_envs * unroll_length (`env_steps_per_iteration`).

Hitting every ladder iteration exactly. brax calls `policy_params_fn` at step 0 and after every training epoch
of `ceil(num_timesteps / ((num_evals - 1) * steps_per_iteration))` iterations. A segment that starts at iteration
r runs `num_timesteps = (N - r) * steps_per_iteration` with `num_evals = (N - r) / g + 1`, where g is the gcd of
the distances from r to every remaining ladder iteration, to N and to the resume interval: every epoch is then
exactly g iterations long and every requested iteration is an epoch boundary. (paper: g = 50, 101 callbacks.)

Resume. At each ladder iteration and every `resume_every_iterations` the full brax state (normalizer of all obs
keys, policy, value) goes to `expert/resume/`. Rerunning after a kill restarts from that iteration with
`restore_params` (Adam moments restart from zero; the normalizer continues), and the env/PPO seed is
`run.seed + r`. Ladder checkpoints are written atomically under fixed names, so none is lost or duplicated: one
written after the last resume point is simply rewritten. `is_complete` is True once the ladder (final expert
included) and the critic exist; `run_stage` then returns at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from brax.training.acme import running_statistics
from brax.training.acme import specs
from brax.training.agents.ppo import train as brax_ppo
from flax import serialization

from simdist_jax import compat
from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.metrics import MetricsWriter, format_duration
from simdist_jax.envs.registry import make_env
from simdist_jax.envs.wrappers import wrap_for_training
from simdist_jax.experts import checkpoints as ckpt
from simdist_jax.experts.checkpoints import load_critic, load_ladder, load_policy  # noqa: F401  (public loaders)


# ---- schedule ---------------------------------------------------------------------------------------------------
def env_steps_per_iteration(expert_cfg: Any) -> int:
  """Env steps per PPO iteration: num_envs * unroll_length."""
  return int(expert_cfg.num_envs) * int(expert_cfg.unroll_length)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Ladder bookkeeping. `ladder` ends with `num_iterations` (the final expert)."""

  num_iterations: int
  ladder: tuple[int, ...]
  resume_every: int
  steps_per_iteration: int

  @classmethod
  def from_config(cls, expert_cfg: Any) -> "Schedule":
    """Validates `checkpoint_iterations` against `num_iterations`; raises ConfigError naming the bad values."""
    n = int(expert_cfg.num_iterations)
    if n < 1:
      raise config_lib.ConfigError(f"expert.num_iterations must be >= 1, got {n}")
    its = [int(i) for i in expert_cfg.checkpoint_iterations]
    bad = [i for i in its if not 0 <= i <= n]
    if bad:
      raise config_lib.ConfigError(f"expert.checkpoint_iterations {bad} lie outside [0, num_iterations={n}]")
    if int(expert_cfg.num_envs) % int(expert_cfg.num_minibatches):
      raise config_lib.ConfigError(f"expert.num_envs ({expert_cfg.num_envs}) must be divisible by "
                                   f"expert.num_minibatches ({expert_cfg.num_minibatches})")
    return cls(num_iterations=n, ladder=tuple(sorted(set(its) | {n})),
               resume_every=max(int(expert_cfg.resume_every_iterations), 0),
               steps_per_iteration=env_steps_per_iteration(expert_cfg))

  def resume_points(self) -> tuple[int, ...]:
    """Iterations at which the resume state is written (ladder points and multiples of resume_every)."""
    extra = set(range(0, self.num_iterations + 1, self.resume_every)) if self.resume_every else set()
    return tuple(sorted(set(self.ladder) | extra))

  def segment(self, start: int) -> tuple[int, int]:
    """(epoch length g in iterations, brax num_evals) for a run from iteration `start` to the end."""
    if not 0 <= start < self.num_iterations:
      raise ValueError(f"segment start {start} outside [0, {self.num_iterations})")
    g = 0
    for i in self.resume_points():
      if i > start:
        g = math.gcd(g, i - start)
    return g, (self.num_iterations - start) // g + 1


# ---- config fingerprint -----------------------------------------------------------------------------------------
def prepare_expert_dir(cfg: Any, workdir: Any) -> pathlib.Path:
  """Creates `<workdir>/expert/` with `config.json`, or checks that it agrees with `cfg` on the expert's
  fingerprint (the stage table's `expert` row: `task, env, domain.sim, expert, run.seed` without the evaluation
  counts; changing e.g. `domain.real` or the planner keeps a trained expert). Raises ConfigError naming the
  differing keys."""
  from simdist_jax import stages  # pylint: disable=import-outside-toplevel
  return stages.prepare("expert", cfg, workdir)


def is_complete(cfg: Any, workdir: Any) -> bool:
  """True when every ladder checkpoint (final expert included) and the critic of `cfg` exist in `workdir`."""
  ed = paths.expert_dir(workdir)
  sched = Schedule.from_config(cfg.expert)
  have = set(ckpt.list_ladder(ed))
  return set(sched.ladder) <= have and (ed / ckpt.CRITIC / "meta.json").is_file()


# ---- metrics ----------------------------------------------------------------------------------------------------
# ---- brax state <-> disk ----------------------------------------------------------------------------------------
def env_dims(env: Any) -> dict:
  """{"obs": {key: shape}, "privileged": S, "action": A} of a brax env with dict observations."""
  obs = {k: tuple(v) for k, v in env.observation_size.items()}
  if ckpt.OBS_KEY not in obs:
    raise ValueError(f"the expert needs a '{ckpt.OBS_KEY}' observation; the env has {sorted(obs)}")
  return {"obs": obs, "privileged": int(obs[ckpt.OBS_KEY][-1]), "action": int(env.action_size)}


def _brax_template(cfg: Any, dims: dict) -> tuple:
  """Abstract (normalizer, policy, value) in brax's layout, for restoring the resume state."""
  e = cfg.expert
  nets = ckpt.make_networks(dims["obs"], dims["action"], e.policy_hidden, e.value_hidden, e.activation,
                            e.distribution_type)
  norm = running_statistics.init_state({k: specs.Array(v, jnp.dtype("float32")) for k, v in dims["obs"].items()})
  key_policy, key_value = jax.random.split(jax.random.key(0))
  return norm, nets.policy_network.init(key_policy), nets.value_network.init(key_value)


def _meta(cfg: Any, dims: dict, kind: str, iteration: int, sched: Schedule) -> dict:
  return {**ckpt.network_meta(cfg.expert, dims["privileged"], dims["action"]), "kind": kind,
          "iteration": int(iteration), "env_steps": int(iteration) * sched.steps_per_iteration,
          "num_iterations": sched.num_iterations, "task": cfg.task}


def save_resume(ed: pathlib.Path, cfg: Any, dims: dict, sched: Schedule, iteration: int, params: tuple) -> None:
  """Full brax (normalizer, policy, value) at `iteration` -> `expert/resume/`."""
  norm, policy, value = params
  tree = {"normalizer": serialization.to_state_dict(norm), "policy": policy, "value": value}
  ckpt.save(ed / ckpt.RESUME, tree, _meta(cfg, dims, "resume", iteration, sched))


def load_resume(ed: pathlib.Path, cfg: Any, dims: dict) -> tuple[int, tuple] | None:
  """(iteration, brax params triple) of `expert/resume/`, or None when there is none.

  First repairs what a kill inside a checkpoint save left (`ckpt.recover_all`: a resume state, critic or ladder
  entry caught between its two renames is renamed back into place), so an interrupted save never restarts PPO
  at iteration 0. Without a resume state but with ladder checkpoints past iteration 0 (which are always saved
  together with one), it says loudly that training restarts from 0.
  """
  for action in ckpt.recover_all(ed):
    _log(f"recovered: {action}")
  path = ed / ckpt.RESUME
  if not (path / "meta.json").is_file():
    later = [i for i in ckpt.list_ladder(ed) if i > 0]
    if later:
      _log(f"WARNING: no resume state in '{path}' although the ladder holds iterations {later}; training "
           f"restarts from iteration 0 and rewrites them")
    return None
  meta = ckpt.read_meta(path)
  want = ckpt.network_meta(cfg.expert, dims["privileged"], dims["action"])
  diffs = [f"{k}: checkpoint has {meta.get(k)!r}, requested {v!r}" for k, v in want.items() if meta.get(k) != v]
  if diffs:
    raise ckpt.CheckpointError(f"resume state '{path}' does not match the config: " + "; ".join(diffs))
  norm, policy, value = _brax_template(cfg, dims)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype),
                          {"normalizer": serialization.to_state_dict(norm), "policy": policy, "value": value})
  tree = ckpt.restore(path, abstract)
  norm = serialization.from_state_dict(norm, tree["normalizer"])
  return int(meta["iteration"]), (norm, tree["policy"], tree["value"])


def save_actor(ed: pathlib.Path, cfg: Any, dims: dict, sched: Schedule, iteration: int, params: tuple) -> None:
  """Actor (+ privileged-obs normalizer) at `iteration` -> `expert/ladder/iter_<iteration>/`."""
  tree = ckpt.export_params(params[0], params[1], "policy")
  ckpt.save(ckpt.ladder_path(ed, iteration), tree, _meta(cfg, dims, "actor", iteration, sched))


def save_critic(ed: pathlib.Path, cfg: Any, dims: dict, sched: Schedule, iteration: int, params: tuple) -> None:
  """Critic (+ privileged-obs normalizer) -> `expert/critic/`."""
  tree = ckpt.export_params(params[0], params[2], "value")
  ckpt.save(ed / ckpt.CRITIC, tree, _meta(cfg, dims, "critic", iteration, sched))


# ---- training ---------------------------------------------------------------------------------------------------
def ppo_kwargs(cfg: Any) -> dict:
  """Brax `ppo.train` keyword arguments from `cfg.expert` (without schedule, seed and callbacks)."""
  e = cfg.expert
  network_factory = functools.partial(
      ckpt.make_networks, policy_hidden=tuple(e.policy_hidden), value_hidden=tuple(e.value_hidden),
      activation=str(e.activation), distribution_type=str(e.distribution_type))
  return dict(
      episode_length=int(cfg.env.episode_length),
      wrap_env_fn=functools.partial(wrap_for_training, curriculum=bool(e.curriculum)),
      num_envs=int(e.num_envs), unroll_length=int(e.unroll_length),
      batch_size=int(e.num_envs) // int(e.num_minibatches), num_minibatches=int(e.num_minibatches),
      num_updates_per_batch=int(e.num_updates_per_batch), learning_rate=float(e.learning_rate),
      learning_rate_schedule=str(e.learning_rate_schedule), desired_kl=float(e.desired_kl),
      entropy_cost=float(e.entropy_cost), discounting=float(e.discounting), gae_lambda=float(e.gae_lambda),
      clipping_epsilon=float(e.clipping_epsilon),
      clipping_epsilon_value=float(e.clipping_epsilon_value) or None,
      vf_loss_coefficient=float(e.vf_loss_coefficient), max_grad_norm=float(e.max_grad_norm) or None,
      reward_scaling=float(e.reward_scaling), normalize_observations=bool(e.normalize_observations),
      network_factory=network_factory, run_evals=False, log_training_metrics=True)


def _log(msg: str) -> None:
  print(f"[expert] {msg}", flush=True)


def train(cfg: Any, workdir: Any, on_checkpoint: Callable[[int], None] | None = None, env: Any = None) -> dict:
  """Trains (or resumes) the expert of `cfg` in `<workdir>/expert/`. Returns a summary dict.

  Args:
    cfg: frozen config.
    workdir: run directory.
    on_checkpoint: optional hook `f(iteration)` called after each resume-point save (tests use it to simulate
      an interruption by raising).
    env: the unwrapped training env (default `make_env(cfg, "sim")`; tests pass a cheap brax env with dict
      observations {"state", "privileged_state"}).
  """
  compat.install()  # brax PPO needs `jax.device_put_replicated` (removed in JAX 0.10); a no-op where it exists
  ed = prepare_expert_dir(cfg, workdir)
  sched = Schedule.from_config(cfg.expert)
  env = env or make_env(cfg, "sim")
  dims = env_dims(env)
  resumed = load_resume(ed, cfg, dims)
  start, restore = (0, None) if resumed is None else resumed
  if restore is not None:
    _log(f"resuming from iteration {start} ({start * sched.steps_per_iteration:,} env steps); ladder on disk: "
         f"{ckpt.list_ladder(ed)}")
  sim_eval = None
  if int(cfg.expert.train_eval_episodes) > 0:
    from simdist_jax.experts import evaluate  # pylint: disable=import-outside-toplevel
    actor = ckpt.actor_apply_fn(ckpt.network_meta(cfg.expert, dims["privileged"], dims["action"]))
    sim_eval = evaluate.make_sim_evaluator(cfg, actor, int(cfg.expert.train_eval_episodes), env=env)
  writer = MetricsWriter(ed, resume_step=start * sched.steps_per_iteration if restore is not None else -1)
  resume_points = set(sched.resume_points())
  ladder = set(sched.ladder)
  state = {"t0": time.time(), "t_first": None, "it_first": None, "last_print": 0.0, "episode": {}, "eval": None}
  eval_key = jax.random.key(int(cfg.expert.eval_seed))
  log_every = float(cfg.run.log_every_s)

  def to_iteration(step: int) -> int:
    if step % sched.steps_per_iteration:
      raise AssertionError(f"brax step {step} is not a multiple of {sched.steps_per_iteration}")
    return start + step // sched.steps_per_iteration

  def policy_params_fn(step, make_policy, params):
    del make_policy
    it = to_iteration(int(step))
    params = jax.device_get(params)
    if it in ladder and not (it == start and it in ckpt.list_ladder(ed)):
      save_actor(ed, cfg, dims, sched, it, params)
      if sim_eval is not None:
        rets = np.asarray(sim_eval(ckpt.export_params(params[0], params[1], "policy"), eval_key))
        state["eval"] = (it, float(rets.mean()), float(rets.std()))
        writer.write(it * sched.steps_per_iteration,
                     {"expert/eval/episode_reward": rets.mean(), "expert/eval/episode_reward_std": rets.std(),
                      "expert/iteration": it})
      _log(f"saved ladder checkpoint iter {it}" + (f" (deterministic sim return {state['eval'][1]:.1f} "
                                                  f"± {state['eval'][2]:.1f})" if state["eval"] and
                                                  state["eval"][0] == it else ""))
    if it == sched.num_iterations:
      save_critic(ed, cfg, dims, sched, it, params)
    if it in resume_points and it != start:
      save_resume(ed, cfg, dims, sched, it, params)
    if it != start and on_checkpoint is not None:
      on_checkpoint(it)

  def progress_fn(step, metrics):
    if any(k.startswith("episode/") for k in metrics):  # training-rollout episodes (brax EpisodeMetricsLogger)
      state["episode"] = {k: float(v) for k, v in metrics.items()}
      return
    it = to_iteration(int(step))
    now = time.time()
    if state["t_first"] is None:  # the first epoch includes compilation
      state["t_first"], state["it_first"] = now, it
    rate = ((it - state["it_first"]) / (now - state["t_first"])) if it > state["it_first"] else None
    eta = (sched.num_iterations - it) / rate if rate else float("nan")
    ep_ret = state["episode"].get("episode/sum_reward", float("nan"))
    flat = {"expert/train/episode_reward": ep_ret,
            "expert/train/episode_length": state["episode"].get("episode/length", float("nan")),
            "expert/train/sps": float(metrics.get("training/sps", float("nan"))),
            "expert/iteration": it}
    for k, v in metrics.items():
      if k.startswith("training/") and k != "training/sps":
        flat["expert/" + k.replace("training/", "loss/" if "loss" in k else "train/")] = float(v)
    writer.write(it * sched.steps_per_iteration, flat)  # drops the non-finite entries
    if now - state["last_print"] >= log_every or it == sched.num_iterations:
      state["last_print"] = now
      # brax reports training returns only for finished episodes; before the first one ends, show the
      # deterministic sim return of the latest ladder checkpoint (iteration 0 at the start) when there is one.
      if math.isfinite(ep_ret):
        ret = f"train return {ep_ret:.1f}"
      elif state["eval"] is not None:
        ret = f"eval return {state['eval'][1]:.1f} (iter {state['eval'][0]}; no training episode finished yet)"
      else:
        ret = "train return n/a (no episode finished yet)"
      _log(f"iter {it}/{sched.num_iterations} | env steps {it * sched.steps_per_iteration:,}/"
           f"{sched.num_iterations * sched.steps_per_iteration:,} | {ret} | "
           f"{flat['expert/train/sps']:,.0f} steps/s | elapsed {format_duration(now - state['t0'])} | "
           f"ETA {format_duration(eta) if math.isfinite(eta) else '?'}")

  try:
    if start < sched.num_iterations:
      g, num_evals = sched.segment(start)
      _log(f"training iterations {start}..{sched.num_iterations} ({sched.steps_per_iteration:,} env steps each; "
           f"callback every {g} iterations); ladder {list(sched.ladder)}")
      brax_ppo.train(env, num_timesteps=(sched.num_iterations - start) * sched.steps_per_iteration,
                     num_evals=num_evals, seed=int(cfg.run.seed) + start, restore_params=restore,
                     policy_params_fn=policy_params_fn, progress_fn=progress_fn,
                     training_metrics_steps=g * sched.steps_per_iteration, **ppo_kwargs(cfg))
    else:  # training had finished; only final artifacts may be missing
      policy_params_fn(0, None, restore)
      if not (ed / ckpt.CRITIC / "meta.json").is_file():
        save_critic(ed, cfg, dims, sched, start, restore)
  finally:
    writer.close()
  missing = sorted(set(sched.ladder) - set(ckpt.list_ladder(ed)))
  if missing:
    raise RuntimeError(f"expert training ended without ladder checkpoints for iterations {missing} in '{ed}'")
  summary = {"ladder": list(sched.ladder), "final_eval": state["eval"], "wall_s": time.time() - state["t0"],
             "env_steps": sched.num_iterations * sched.steps_per_iteration}
  _log(f"done: ladder {summary['ladder']} in {format_duration(summary['wall_s'])}")
  return summary


def run_stage(cfg: Any, workdir: Any) -> dict | None:
  """`simdist-jax expert`: trains the expert unless its ladder and critic are complete (then skips)."""
  if is_complete(cfg, workdir):
    prepare_expert_dir(cfg, workdir)  # refuses a directory trained with another config
    _log(f"complete in '{paths.expert_dir(workdir)}'; skipping (delete it to retrain)")
    return None
  return train(cfg, workdir)
