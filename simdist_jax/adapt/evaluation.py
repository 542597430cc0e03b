"""Host rollouts and the evaluation protocol of the adaptation loop (and the oracles and diagnostics).

* `run_episode`: one closed-loop episode of any controller in a `RealEnv` (the one host rollout: adapt collection,
  evaluation, held-out recording, oracles); returns the return and the task's success metrics.
* `record_episodes`: the same, recorded with their seeds into a fresh directory (the instruments' episodes).
* `evaluate_episodes`: fixed seeds (randomized initial states come from the env config, or, with `grid`, episode i
  starts from condition i mod N of the task's fixed grid `Task.initial_conditions(grid)`: `episode_conditions`),
  per-episode returns and success (fraction of steps where `task.success` holds, and success at the last step).
* `paired_bootstrap_ci`: mean difference of two evaluations on the same seeds, with a paired bootstrap 95 % CI.
* `prediction_losses`: held-out latent prediction loss per horizon step k = 1..T NEXT TO persistence
  (z_hat_{t+k} = z_t, the trivial baseline every dynamics model must beat).
* `counterfactual_losses`: the same on perturbed action chunks from restored real states (what the planner ranks):
  from states along held-out episodes (replayed exactly from their seed and recorded actions), the twin applies
  a_{t..t+T-1} + sigma eps and the model must predict where that goes.

Dimension letters: T horizon, H history, Z latent, P/E/A/C feature dims.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.adapt import recorder as rec
from simdist_jax.analysis import stats
from simdist_jax.planner import mppi
from simdist_jax.planner.controller import Controller


def observed(task: Any, obs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(proprio, extero, command) of an env's obs dict as numpy arrays (`Task.split_state` of `obs["state"]`; the
  command is empty [0] for tasks without one)."""
  proprio, extero, command = (np.asarray(x) for x in task.split_state(obs["state"]))
  return proprio, extero, command


def run_episode(env, controller, key: jax.Array, recorder: rec.EpisodeRecorder | None = None,
                meta: dict | None = None, explore=None, *, full_obs: bool = False,
                reset_key: jax.Array | None = None, max_steps: int | None = None,
                stop: Callable[[dict], bool] | None = None,
                on_step: Callable[[dict], None] | None = None, condition: Any = None) -> dict:
  """One closed-loop episode -> {"return", "steps", "failed", "noised_steps", "success_frac", "success_final"}.

  Records (o_t, a_t, c_t, t) if asked, where a_t is the applied action (after `explore` noise, which the
  controller's history also holds). `success_*` are NaN when the task defines no success (`Task.success`).
  The env is reset first, then `controller.reset(key)` is called (a controller may read the reset env there).

  Args:
    env: a `RealEnv` (numpy obs dict {"state", "privileged_state"}, `step -> (obs, reward, done, info)`).
    controller: `reset(key)`, `replace_last_action(a)` and `__call__(proprio, extero, command) -> action`
      (or `__call__(obs) -> action` with `full_obs`).
    key: split into the env's reset key and the controller's key.
    recorder: optional episode recorder.
    meta: metadata of the recorded episode (`recorder.start_episode(**meta)`).
    explore: optional exploration noise on the controller's actions.
    full_obs: call `controller(obs)` with the env's whole obs dict (privileged experts) instead of the split
      observed state.
    reset_key: reset the env with this key instead of the first half of `split(key)` (fixed-seed protocols
      that reset with `key(seed)` itself).
    max_steps: end the episode after this many steps (not a failure) even if the env is not done.
    stop: `stop(info) -> bool` after every step; True ends the episode (e.g. a course cleared).
    on_step: `on_step(transition)` after every step with the transition as numpy arrays: {"proprio", "extero",
      "command", "action" (applied), "reward", "next_proprio", "next_extero", "next_command", "not_done" (0 only
      when the step failed the episode, not at the time limit), "last" (1 when the episode ends with this step:
      failure, time limit, `max_steps` or `stop`)} (the RL baselines' replay), plus "privileged_state" and
      "next_privileged_state" when the env observes them (the twin does), and whatever `controller.
      transition_extras()` returns when the controller has that method (e.g. a stochastic policy's pre-squash
      sample, which the applied action cannot be inverted to once tanh saturates).
    condition: start the episode from this row of `Task.initial_conditions` (`env.reset(key, condition=...)`;
      the domain draw and the noise streams are the key's, as without it).
  """
  key_env, key_plan = jax.random.split(key)
  key_reset = key_env if reset_key is None else reset_key
  obs = env.reset(key_reset) if condition is None else env.reset(key_reset, condition=condition)
  controller.reset(key_plan)
  if explore is not None:
    explore.reset()
  noised_steps = 0
  if recorder is not None:
    recorder.start_episode(**(meta or {}))
  total, steps, failed, successes, last = 0.0, 0, False, 0, None
  while True:
    proprio, extero, command = observed(env.task, obs)
    action = controller(obs) if full_obs else controller(proprio, extero, command if command.size else None)
    if explore is not None:
      action, noised = explore(action)
      noised_steps += int(noised)
      if noised:
        controller.replace_last_action(action)
    if recorder is not None:
      recorder.record(proprio, extero, action, command, steps * env.dt)
    prev = obs
    obs, reward, done, info = env.step(action)
    steps += 1
    ends = bool(done or (max_steps is not None and steps >= max_steps) or (stop is not None and stop(info)))
    if on_step is not None:
      nxt = observed(env.task, obs)
      transition = {"proprio": proprio, "extero": extero, "command": command,
                    "action": np.asarray(action, np.float32), "reward": np.float32(reward),
                    **dict(zip(("next_proprio", "next_extero", "next_command"), nxt, strict=True)),
                    "not_done": np.float32(0.0 if info["failed"] else 1.0), "last": np.float32(ends)}
      if "privileged_state" in obs:
        transition["privileged_state"] = np.asarray(prev["privileged_state"], np.float32)
        transition["next_privileged_state"] = np.asarray(obs["privileged_state"], np.float32)
      if hasattr(controller, "transition_extras"):
        transition.update(controller.transition_extras())
      on_step(transition)
    total += reward
    last = env.task.success(info["metrics"])
    successes += int(bool(last))
    if ends:
      failed = info["failed"]
      break
  has = last is not None
  out = {"return": total, "steps": steps, "failed": failed, "noised_steps": noised_steps,
         "success_frac": successes / steps if has else float("nan"),
         "success_final": float(bool(last)) if has else float("nan")}
  if recorder is not None:
    # The outcome goes into the episode's meta for the analyses (never into training: hardware would not have it).
    recorder.annotate(**{f"outcome/{k}": float(out[k]) for k in ("return", "success_frac", "success_final")})
    recorder.end_episode()
  return out


def eval_grid(cfg: Any) -> str:
  """The config's evaluation grid (`env.eval_grid`; "" when the task config has none: randomized starts)."""
  return str(cfg.env.get("eval_grid", "") or "")


def episode_conditions(task: Any, grid: str, n: int) -> list:
  """The initial condition of each of `n` evaluation episodes: None for every episode when `grid` is "" (the
  task's randomized initial states), else row i mod N of `task.initial_conditions(grid)` for episode i (fixed,
  deterministic lists: the same episode index starts from the same condition in every round and method)."""
  if not grid:
    return [None] * int(n)
  conds = np.asarray(task.initial_conditions(grid), np.float32)
  return [conds[i % len(conds)] for i in range(int(n))]


def evaluate_episodes(env, controller, seeds: Sequence[int], grid: str = "", full_obs: bool = False) -> dict:
  """Per-episode returns and success over fixed seeds (no recording), with their means and stds. `grid`: episode
  i starts from condition i mod N of the task's grid (`episode_conditions`); "" = randomized initial states.
  `full_obs`: the controller reads the whole obs dict, as `run_episode`'s."""
  conds = episode_conditions(env.task, grid, len(seeds))
  outs = [run_episode(env, controller, jax.random.PRNGKey(int(s)), condition=c, full_obs=full_obs)
          for s, c in zip(seeds, conds, strict=True)]
  rets = [o["return"] for o in outs]
  return {"return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)), "returns": rets,
          "success": [o["success_frac"] for o in outs], "success_final": [o["success_final"] for o in outs],
          "success_mean": float(np.mean([o["success_frac"] for o in outs])), "seeds": [int(s) for s in seeds],
          "success_final_mean": float(np.mean([o["success_final"] for o in outs])), "grid": grid}


def record_episodes(env, controller, dims: dict, seeds: Sequence[int], directory: str | os.PathLike) -> list[dict]:
  """Episodes of `controller` in `env` on `seeds`, recorded with their seeds (exact replay, e.g. for
  `counterfactual_windows`) into the fresh directory `directory` (emptied first: nothing recorded by another
  controller is reused) and returned loaded, in seed order."""
  directory = pathlib.Path(directory)
  shutil.rmtree(directory, ignore_errors=True)
  r = rec.EpisodeRecorder(directory, dims)
  t0 = time.perf_counter()
  for i, s in enumerate(seeds):
    out = run_episode(env, controller, jax.random.PRNGKey(int(s)), r, meta={"seed": int(s)})
    eta = (time.perf_counter() - t0) / (i + 1) * (len(seeds) - i - 1)
    print(f"recorded episode {i + 1}/{len(seeds)}: return {out['return']:.1f} (ETA {eta:.0f}s)", flush=True)
  return rec.load_episodes(directory, dims)[0]


def policy_only_config(cfg: mppi.PlannerConfig) -> mppi.PlannerConfig:
  """The policy head alone through the same code path: one iteration whose every candidate is pi's chunk."""
  return dataclasses.replace(cfg, warm_start="policy", init_std=0.0, min_std=0.0, prior_std=0.0, iterations=1,
                             num_samples=8, num_prior_samples=0, num_elites=1, prior_cost=0.0,
                             prior_mean_candidate=False, advantage_gate=False)


def model_controller(cfg: mppi.PlannerConfig, wm: Any, variables: Any, dims: dict, key: jax.Array,
                     policy_only: bool = False) -> Controller:
  """The deployed planner (or the policy head alone) as a host controller."""
  return Controller(policy_only_config(cfg) if policy_only else cfg, wm, variables, dims,
                    history=wm.spec.history, key=key, model_horizon=wm.spec.horizon)


class FunctionController:
  """A fixed feedback law on the observed state as a host controller (the tasks' reference controllers)."""

  def __init__(self, fn) -> None:
    self.fn = fn

  def reset(self, key: jax.Array) -> None:
    """Does nothing (a fixed feedback law has no state); `key` is unused."""
    del key

  def replace_last_action(self, applied: Any) -> None:
    """Does nothing (a fixed feedback law keeps no action history); `applied` is unused."""
    del applied

  def __call__(self, proprio: Any, extero: Any = None, command: Any = None) -> np.ndarray:
    """The law applied to the observation flattened as [proprio, extero, command] (absent parts skipped)."""
    parts = [np.asarray(x, np.float32).reshape(-1) for x in (proprio, extero, command) if x is not None]
    return np.asarray(self.fn(np.concatenate(parts)), np.float32)


def paired_bootstrap_ci(after: Sequence[float], before: Sequence[float], num: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> dict:
  """Mean of after_i - before_i over paired episodes (same seed, same initial state) and its bootstrap CI."""
  a, b = np.asarray(after, np.float64), np.asarray(before, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size < 2:
    raise ValueError(f"paired samples must be two [n >= 2] arrays of one length, got {a.shape} and {b.shape}")
  d = a - b
  rng = np.random.default_rng(seed)
  means = d[rng.integers(0, d.size, size=(num, d.size))].mean(axis=1)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi), "excludes_zero": bool(lo > 0 or hi < 0)}


# ---- latent prediction losses ------------------------------------------------------------------------------
def _batched(fn: Callable[..., Any]) -> Callable[..., Any]:
  """jit(vmap) of a single-window function `fn(variables, *window)`: variables are an argument (never a jit
  constant, so new round models reuse the compiled function), the window arrays are batched."""
  return jax.jit(jax.vmap(fn, in_axes=(None,) + (0,) * (fn.__code__.co_argcount - 1)))


def _window_latents(wm: Any, variables: Any, ph, ah, p_t, e_t, acts, p_fut, e_fut):
  """One window -> (ctx, z_hat [T, Z], z_tgt = E(o_{t+1..t+T}) [T, Z], model loss [T], persistence loss [T]),
  the losses mean_z (. - E(o_{t+k}))^2 with persistence predicting z_t = E(o_t)."""
  ctx = wm.context(variables, ph, ah, p_t, e_t)
  z_hat = wm.predict_latents(variables, ctx, acts)
  z_tgt = jax.vmap(lambda p, e: wm.encode(variables, p, e))(p_fut, e_fut)
  z_t = wm.encode(variables, p_t, e_t)
  return ctx, z_hat, z_tgt, jnp.mean((z_hat - z_tgt) ** 2, axis=-1), jnp.mean((z_t[None] - z_tgt) ** 2, axis=-1)


def _make_window_loss(wm: Any):
  """`f(variables, *window batch) -> (model loss [W, T], persistence loss [W, T])`, each mean_z (. - E(o_{t+k}))^2."""
  def one(variables, ph, ah, p_t, e_t, acts, p_fut, e_fut):
    return _window_latents(wm, variables, ph, ah, p_t, e_t, acts, p_fut, e_fut)[3:]
  return _batched(one)


def _padded(ep: dict, H: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Front padding as the controller sees it: H copies of o_0, zero actions."""
  pad = lambda x, fill: np.concatenate([np.repeat(fill[None], H, 0), x], 0)  # noqa: E731
  return (pad(ep["proprio"], ep["proprio"][0]), pad(ep["extero"], ep["extero"][0]),
          pad(ep["action"], np.zeros_like(ep["action"][0])))


def _recorded_windows(ep: dict, H: int, T: int) -> tuple[np.ndarray, ...]:
  """Model inputs of every window t = 0..N-T-1 of a recorded episode, front-padded as the controller pads:
  (proprio hist [W,H,P], action hist [W,H,A], proprio_t [W,P], extero_t [W,E], actions a_{t..t+T-1} [W,T,A],
  proprio o_{t+1..t+T} [W,T,P], extero o_{t+1..t+T} [W,T,E]) with W = N - T."""
  pro, ext, act = _padded(ep, H)
  ts = np.arange(0, len(ep["proprio"]) - T)  # episode time t; padded index t + H
  return (np.stack([pro[t:t + H] for t in ts]), np.stack([act[t:t + H] for t in ts]), pro[ts + H], ext[ts + H],
          np.stack([act[t + H:t + H + T] for t in ts]), np.stack([pro[t + H + 1:t + H + T + 1] for t in ts]),
          np.stack([ext[t + H + 1:t + H + T + 1] for t in ts]))


def prediction_losses(wm: Any, variables: Any, episodes: list[dict], H: int, T: int) -> dict:
  """Held-out latent prediction loss per horizon step, model vs persistence -> {"model" [T], "persistence" [T]}.

  For every window start t (t = 0..N-T-1 in episode time, history from the padding before that), the loss at
  step k is mean_z (z_hat_{t+k} - E(o_{t+k}))^2, and persistence's is mean_z (E(o_t) - E(o_{t+k}))^2, averaged
  over windows and episodes (E the model's encoder: each round's own, which dynamics-only finetuning keeps).
  """
  f = _make_window_loss(wm)
  sums, sums_p, count = np.zeros(T), np.zeros(T), 0
  for ep in episodes:
    n = len(ep["proprio"])
    if n < T + 1:
      continue
    model, persist = f(variables, *_recorded_windows(ep, H, T))
    sums += np.asarray(model).sum(0)
    sums_p += np.asarray(persist).sum(0)
    count += n - T
  if count == 0:
    raise ValueError(f"no held-out episode is longer than T + 1 = {T + 1} steps")
  return {"model": sums / count, "persistence": sums_p / count}


def value_traces(wm: Any, variables: Any, episodes: Sequence[dict], H: int, T: int) -> list[np.ndarray]:
  """The frozen value head along recorded real episodes: per episode V_hat(s_{t+1}) for t = 0..N-T-1 [N-T], read
  from the ENCODED real observations (z = E(o_{t+1..t+T}) in place of predicted latents, the context from the real
  history), so it uses only frozen parts of the model: does the sim value rank real states (the paper's
  value-over-time plot)? One compiled function serves every episode."""
  def one(variables, ph, ah, p_t, e_t, acts, p_fut, e_fut, c):
    ctx = wm.context(variables, ph, ah, p_t, e_t)
    z = jax.vmap(lambda p, e: wm.encode(variables, p, e))(p_fut, e_fut)
    return wm.predict_returns(variables, ctx, z, acts, c)[1][0]

  f = _batched(one)
  out = []
  for episode in episodes:
    n = len(episode["proprio"])
    if n < T + 1:
      raise ValueError(f"episode of {n} steps is shorter than T + 1 = {T + 1}")
    cmd = np.concatenate([np.repeat(np.asarray(episode["command"][:1], np.float32), H, 0),
                          np.asarray(episode["command"], np.float32)], 0)
    c_win = np.stack([cmd[t + H:t + H + T + 1] for t in range(n - T)])  # c_t..c_{t+T}: t + H + T <= n + H - 1
    out.append(np.asarray(f(variables, *_recorded_windows(episode, H, T), c_win)))
  return out


def counterfactual_windows(env, episode: dict, H: int, T: int, sigma: float, num_points: int,
                           rng: np.random.Generator, low: Any = -1.0, high: Any = 1.0, chunks_per_point: int = 4
                           ) -> dict:
  """Perturbed-chunk windows from restored states of one recorded episode (with its `meta["seed"]`).

  The episode is replayed exactly in `env` (same reset key and, if recorded, `meta["condition"]`; recorded
  actions); at `num_points` evenly spaced
  steps t the twin's state is saved, each of `chunks_per_point` chunks a_{t..t+T-1} + sigma eps (clipped to the
  action bounds) is applied for T steps with the observations recorded, and the state is restored. Returns
  stacked model inputs, W = points x chunks_per_point windows, `group` [W] the index of the state each came from:
  {"ph" [W,H,P], "ah" [W,H,A], "p_t", "e_t", "acts" [W,T,A], "p_fut" [W,T,P], "e_fut" [W,T,E], "cmd" [W,T+1,C],
  "group" [W], and the unperturbed reference of each window: "acts_base" [W,T,A] (the recorded chunk),
  "p_base" [W,T,P], "e_base" [W,T,E] (the recorded o_{t+1..t+T})}.
  """
  seed = episode.get("meta", {}).get("seed")
  if seed is None:
    raise ValueError("counterfactual windows need episodes recorded with meta['seed'] (exact replay)")
  n = len(episode["action"])
  if n < T + 1:
    raise ValueError(f"episode of {n} steps is shorter than T + 1 = {T + 1}")
  points = sorted(set(np.linspace(0, n - T - 1, num_points).round().astype(int).tolist()))
  pro, ext, act = _padded(episode, H)
  key_env, _ = jax.random.split(jax.random.PRNGKey(int(seed)))
  condition = episode.get("meta", {}).get("condition")  # episodes started from a grid point record it
  obs = env.reset(key_env) if condition is None else env.reset(key_env, condition=np.asarray(condition, np.float32))
  p_dim, e_dim = int(env.task.dims["proprio"]), int(env.task.dims["extero"])
  out = {k: [] for k in ("ph", "ah", "p_t", "e_t", "acts", "p_fut", "e_fut", "cmd", "group", "acts_base", "p_base",
                         "e_base")}
  for t in range(n - T):
    if t in points:
      snap = env.get_state()
      for _ in range(chunks_per_point):
        base = episode["action"][t:t + T]
        chunk = np.clip(base + sigma * rng.standard_normal(base.shape), low, high).astype(np.float32)
        fut = []
        for a in chunk:
          o, _, _, _ = env.step(a)
          fut.append(np.asarray(o["state"]))
        env.set_state(snap)
        fut = np.stack(fut)
        out["ph"].append(pro[t:t + H])
        out["ah"].append(act[t:t + H])
        out["p_t"].append(pro[t + H])
        out["e_t"].append(ext[t + H])
        out["acts"].append(chunk)
        out["p_fut"].append(fut[:, :p_dim])
        out["e_fut"].append(fut[:, p_dim:p_dim + e_dim])
        out["cmd"].append(np.repeat(np.asarray(episode["command"][t], np.float32)[None], T + 1, 0))
        out["group"].append(points.index(t))
        out["acts_base"].append(np.asarray(base, np.float32))
        out["p_base"].append(np.asarray(episode["proprio"][t + 1:t + T + 1], np.float32))
        out["e_base"].append(np.asarray(episode["extero"][t + 1:t + T + 1], np.float32))
    obs, _, _, _ = env.step(episode["action"][t])
    if not np.allclose(np.asarray(obs["state"])[:p_dim], episode["proprio"][t + 1], atol=1e-4):
      raise ValueError(f"replay of the episode with seed {seed} diverged from its recording at step {t + 1}")
  return {k: np.stack(v) for k, v in out.items()}


# The model inputs of a counterfactual window, in `_window_latents`'s order.
_WINDOW_KEYS = ("ph", "ah", "p_t", "e_t", "acts", "p_fut", "e_fut")


def counterfactual_losses(wm: Any, variables: Any, windows: Sequence[dict],
                          planner_cfg: mppi.PlannerConfig | None = None) -> dict:
  """Latent loss per horizon step on `counterfactual_windows` -> {"model" [T], "persistence" [T]}; with a planner
  config also "return_spearman": per restored state, the rank correlation between the returns the planner
  computes for its chunks (frozen heads on z_hat) and the heads' returns on the TRUE futures E(o_{t+1..t+T}),
  averaged over states: does the dynamics rank the chunks as perfect dynamics would?

  With the windows' unperturbed references ("acts_base", "p_base", "e_base") also the action-effect instrument:
  "action_blind" [T], the loss of predicting the perturbed future by the true UNperturbed one (exact state,
  perturbation ignored: a model must beat it to use the actions), and "effect_error", the relative error of the
  predicted effect of the perturbation, sum ||(z_hat(a + eps) - z_hat(a)) - (E(o^eps) - E(o))||^2 / sum
  ||E(o^eps) - E(o)||^2 (0 = perfect, 1 = action-blind, > 1 worse): the latent difference between candidates is
  what the planner ranks by, and this error is free of the drift the candidates share."""
  def one(variables, w):  # every quantity of one window from one context and one prediction
    ctx, z_hat, z_tgt, model, persist = _window_latents(wm, variables, *(w[k] for k in _WINDOW_KEYS))
    out = {"model": model, "persistence": persist}
    if "acts_base" in w:
      z_base = jax.vmap(lambda p, e: wm.encode(variables, p, e))(w["p_base"], w["e_base"])
      d_model = z_hat - wm.predict_latents(variables, ctx, w["acts_base"])
      d_true = z_tgt - z_base
      out.update(blind=jnp.mean((z_base - z_tgt) ** 2, axis=-1), eff_num=jnp.sum((d_model - d_true) ** 2),
                 eff_den=jnp.sum(d_true ** 2))
    if planner_cfg is not None:
      r_m, v_m = wm.predict_returns(variables, ctx, z_hat, w["acts"], w["cmd"])
      r_t, v_t = wm.predict_returns(variables, ctx, z_tgt, w["acts"], w["cmd"])
      out.update(ret_model=mppi.discounted_return(planner_cfg, r_m, v_m),
                 ret_true=mppi.discounted_return(planner_cfg, r_t, v_t))
    return out

  f = jax.jit(jax.vmap(one, in_axes=(None, 0)))
  inputs = _WINDOW_KEYS + ("acts_base", "p_base", "e_base") + (("cmd",) if planner_cfg is not None else ())
  sums, sums_p, count, rhos = None, None, 0, []
  blind, eff_num, eff_den = None, 0.0, 0.0
  for w in windows:
    res = {k: np.asarray(v) for k, v in f(variables, {k: w[k] for k in inputs if k in w}).items()}
    s_m, s_p = res["model"].sum(0), res["persistence"].sum(0)
    sums = s_m if sums is None else sums + s_m
    sums_p = s_p if sums_p is None else sums_p + s_p
    count += int(w["acts"].shape[0])
    if "blind" in res:
      blind = res["blind"].sum(0) if blind is None else blind + res["blind"].sum(0)
      eff_num, eff_den = eff_num + float(res["eff_num"].sum()), eff_den + float(res["eff_den"].sum())
    if planner_cfg is not None:
      for grp in np.unique(w["group"]):
        sel = w["group"] == grp
        if sel.sum() >= 3:
          rhos.append(stats.spearman(res["ret_model"][sel], res["ret_true"][sel]))
  if count == 0:
    raise ValueError("no counterfactual windows")
  out = {"model": sums / count, "persistence": sums_p / count}
  if blind is not None:
    out["action_blind"] = blind / count
    out["effect_error"] = eff_num / max(eff_den, 1e-12)
  if planner_cfg is not None:
    finite = [r for r in rhos if np.isfinite(r)]  # NaN: a state whose model returns are all equal ranks nothing
    out["return_spearman"] = float(np.mean(finite)) if finite else float("nan")
  return out
