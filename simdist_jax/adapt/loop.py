"""Adaptation in the shifted "real" world (SimDist Algorithm 1, Eq. 3).

Rounds j = 1..J of: deploy the MPPI planner with the current world model for M episodes in the real world
(the MuJoCo C twin with `config.domain.real`), record only (o_t, a_t, c_t, time), finetune ONLY the latent
dynamics on all real data so far (targets from the frozen encoder), evaluate. Round 0 is the pretrained model.

Evaluation after every round, on a fixed protocol:
  * task metric: mean/std return of `adapt.eval_episodes` real episodes with fixed seeds; at round 0 also the
    pretrained planner's return in the sim domain over `adapt.sim_eval_episodes` seeds (the reference);
  * latent prediction loss per horizon step k = 1..T on held-out real episodes (recorded once with the
    pretrained planner on separate seeds, never trained on): mean over windows and latent dims of
    (z_hat_{t+k} - E(o_{t+k}))^2, E the frozen encoder;
  * whether every frozen parameter is bitwise unchanged.
Real data is counted in minutes (steps x control period).

Layout under `<workdir>/adapt/`: `heldout/` and `rounds/round_<j>/episodes/` hold episode files,
`rounds/round_<j>/model/` the finetuned checkpoint, `rounds/round_<j>/round.json` the round's results (its
presence marks the round complete, so an interrupted run resumes at the first incomplete round), and
`adapt_results.json` the whole curve.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import recorder as rec
from simdist_jax.data import windows
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.planner.controller import Controller
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model.finetune import finetune_variables, split_params



class ExplorationNoise:
  """Gaussian action noise in contiguous windows, for the planner's data-collection episodes (host side).

  Like the sim data's corruption schedule (paper §2.3), alternating clean and noisy intervals whose lengths are
  uniform integers in `clean_len` / `noisy_len` (inclusive); in a noisy interval the applied action is
  clip(a + sigma * eps, low, high). The first interval is noisy with probability 1/2. sigma = 0 disables it.
  Dynamics finetuning needs real transitions whose actions vary given the state: with purely on-policy data the
  model can lower its loss by ignoring the actions, which is what the planner ranks candidates by.
  """

  def __init__(self, sigma: float, noisy_len, clean_len, low=-1.0, high=1.0, seed: int = 0):
    """`low`/`high`: action bounds, scalars or per-dimension sequences (the planner's `action_low/high`)."""
    if sigma < 0:
      raise ValueError(f"exploration sigma must be >= 0, got {sigma}")
    for name, (lo, hi) in (("noisy_len", noisy_len), ("clean_len", clean_len)):
      if not 1 <= int(lo) <= int(hi):
        raise ValueError(f"exploration {name} must be an inclusive range 1 <= lo <= hi, got {(lo, hi)}")
    self.sigma = float(sigma)
    self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    self.noisy_len, self.clean_len = (int(noisy_len[0]), int(noisy_len[1])), (int(clean_len[0]), int(clean_len[1]))
    self.rng = np.random.default_rng(seed)
    self.reset()

  def _draw(self, rng_range) -> int:
    return int(self.rng.integers(rng_range[0], rng_range[1] + 1))

  def reset(self) -> None:
    """New episode: the first interval is noisy with probability 1/2."""
    self.noisy = bool(self.rng.random() < 0.5)
    self.left = self._draw(self.noisy_len if self.noisy else self.clean_len)

  def __call__(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
    """-> (applied action, whether it was noised)."""
    if self.left == 0:
      self.noisy = not self.noisy
      self.left = self._draw(self.noisy_len if self.noisy else self.clean_len)
    self.left -= 1
    action = np.asarray(action, np.float32)
    if not self.noisy or self.sigma == 0.0:
      return action, False
    noised = action + self.sigma * self.rng.standard_normal(action.shape).astype(np.float32)
    return np.clip(noised, self.low, self.high).astype(np.float32), True


def run_episode(env, controller: Controller, key: jax.Array, recorder: rec.EpisodeRecorder | None = None,
                meta: dict | None = None, explore: ExplorationNoise | None = None) -> dict:
  """One closed-loop episode; returns {"return", "steps", "failed", "noised_steps"}. Records (o_t, a_t, c_t, t)
  if asked, where a_t is the applied action (after `explore` noise, which the controller's history also holds)."""
  key_env, key_plan = jax.random.split(key)
  obs = env.reset(key_env)
  controller.reset(key_plan)
  if explore is not None:
    explore.reset()
  noised_steps = 0
  if recorder is not None:
    recorder.start_episode(**(meta or {}))
  total, steps, failed = 0.0, 0, False
  while True:
    proprio, extero, command = (np.asarray(x) for x in env.task.split_state(obs["state"]))
    action = controller(proprio, extero, command if command.size else None)
    if explore is not None:
      action, noised = explore(action)
      noised_steps += int(noised)
      if noised:
        controller.replace_last_action(action)
    if recorder is not None:
      recorder.record(proprio, extero, action, command, steps * env.dt)
    obs, reward, done, info = env.step(action)
    total += reward
    steps += 1
    if done:
      failed = info["failed"]
      break
  if recorder is not None:
    recorder.end_episode()
  return {"return": total, "steps": steps, "failed": failed, "noised_steps": noised_steps}


def evaluate(env, controller: Controller, seeds: list[int]) -> dict:
  """Mean/std return over episodes with fixed seeds (no recording)."""
  rets = [run_episode(env, controller, jax.random.PRNGKey(s))["return"] for s in seeds]
  return {"return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)), "returns": rets}


def prediction_loss_per_step(wm: model_lib.WorldModel, variables, episodes: list[dict], H: int, T: int,
                             stride: int = 1) -> np.ndarray:
  """Latent prediction loss per horizon step `[T]` on episodes (front-padded with H copies of o_0).

  For every window start t (t = 0..N-T-1 in episode time, history from the padding before that), the loss at
  step k is mean_z (z_hat_{t+k} - E(o_{t+k}))^2, averaged over windows and episodes.
  """
  def one(ph, ah, p_t, e_t, acts, p_fut, e_fut):
    ctx = wm.context(variables, ph, ah, p_t, e_t)
    z_hat = wm.predict_latents(variables, ctx, acts)
    z_tgt = jax.vmap(lambda p, e: wm.encode(variables, p, e))(p_fut, e_fut)
    return jnp.mean((z_hat - z_tgt) ** 2, axis=-1)

  f = jax.jit(jax.vmap(one))
  sums, count = np.zeros(T), 0
  for ep in episodes:
    n = len(ep["proprio"])
    if n < T + 1:
      continue
    pad = lambda x, fill: np.concatenate([np.repeat(fill[None], H, 0), x], 0)  # noqa: E731
    pro = pad(ep["proprio"], ep["proprio"][0])
    ext = pad(ep["extero"], ep["extero"][0])
    act = pad(ep["action"], np.zeros_like(ep["action"][0]))
    starts = np.arange(0, n - T, stride)  # episode time t; padded index t + H
    ph = np.stack([pro[t:t + H] for t in starts])
    ah = np.stack([act[t:t + H] for t in starts])
    p_t = pro[starts + H]
    e_t = ext[starts + H]
    acts = np.stack([act[t + H:t + H + T] for t in starts])
    p_fut = np.stack([pro[t + H + 1:t + H + T + 1] for t in starts])
    e_fut = np.stack([ext[t + H + 1:t + H + T + 1] for t in starts])
    losses = np.asarray(f(ph, ah, p_t, e_t, acts, p_fut, e_fut))
    sums += losses.sum(0)
    count += len(starts)
  if count == 0:
    raise ValueError(f"no held-out episode is longer than T + 1 = {T + 1} steps")
  return sums / count


def frozen_unchanged(reference, variables, train: str) -> bool:
  """True when every leaf outside the trainable subtree is bitwise identical to `reference`."""
  _, ref_frozen = split_params(reference["params"], train)
  _, new_frozen = split_params(variables["params"], train)
  leaves_a, tree_a = jax.tree.flatten(ref_frozen)
  leaves_b, tree_b = jax.tree.flatten(new_frozen)
  if tree_a != tree_b:
    return False
  same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves_a, leaves_b))
  return same and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                      zip(jax.tree.leaves(reference["scaler"]), jax.tree.leaves(variables["scaler"])))


def _round_dir(adir: pathlib.Path, j: int) -> pathlib.Path:
  return adir / "rounds" / f"round_{j:02d}"


def _save_round_model(path: pathlib.Path, variables, model_cfg, dims, step: int) -> None:
  if path.exists():
    shutil.rmtree(path)
  ck = ckpt_lib.Checkpointer(str(path), keep=1)
  ck.save(step, variables, model_cfg, dims, kind="finetune")
  ck.close()


def is_complete(cfg, workdir) -> bool:
  """True when `adapt_results.json` marks every round complete (the config record is the stage table's)."""
  del cfg
  p = paths.adapt_dir(workdir) / "adapt_results.json"
  if not p.exists():
    return False
  return json.loads(p.read_text()).get("complete", False)


def run_stage(cfg, workdir) -> dict:
  """Runs (or resumes) the adaptation rounds; writes `<workdir>/adapt/adapt_results.json`."""
  workdir = pathlib.Path(workdir)
  adir = paths.adapt_dir(workdir)
  adir.mkdir(parents=True, exist_ok=True)  # its config.json: written by the stage table (simdist_jax.stages)
  acfg = cfg.adapt
  dims = make_task(cfg).dims
  variables0, _, dims = ckpt_lib.load_checked(str(paths.model_dir(workdir)), cfg.model, dims)
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=T)
  train_mode = str(cfg.model.finetune.train)
  real_env = make_real_env(cfg, "real")
  sim_env = make_real_env(cfg, "sim")  # the MuJoCo C twin with sim-domain draws: the in-sim reference
  ctrl_dt = real_env.dt
  seed = int(cfg.run.seed)
  eval_seeds = [seed * 100_000 + 50_000 + i for i in range(int(acfg.eval_episodes))]
  sim_eval_seeds = [seed * 100_000 + 50_000 + i for i in range(int(acfg.sim_eval_episodes))]
  if not sim_eval_seeds or not eval_seeds:
    raise ValueError(f"adapt.eval_episodes ({len(eval_seeds)}) and adapt.sim_eval_episodes "
                     f"({len(sim_eval_seeds)}) must be >= 1")
  sim_windows = None  # the sim dataset, loaded on first use when adapt.sim_mix > 0
  heldout_seeds = [seed * 100_000 + 60_000 + i for i in range(int(acfg.heldout_episodes))]
  controller = Controller(pcfg, wm, variables0, dims, history=H, key=jax.random.PRNGKey(seed),
                          model_horizon=T)
  log = lambda msg: print(f"[adapt] {msg}", flush=True)  # noqa: E731

  # Held-out real episodes for the prediction loss (recorded once, with the pretrained planner).
  hdir = adir / "heldout"
  held, _ = rec.load_episodes(hdir, dims, verbose=False)
  if len(held) < len(heldout_seeds):
    r = rec.EpisodeRecorder(hdir, dims)
    for s in heldout_seeds[len(held):]:
      run_episode(real_env, controller, jax.random.PRNGKey(s), r, meta={"seed": s, "purpose": "heldout"})
    held, _ = rec.load_episodes(hdir, dims)
  log(f"{len(held)} held-out real episodes ({rec.total_minutes(held, ctrl_dt):.2f} min)")

  results_path = adir / "adapt_results.json"
  rounds: list[dict] = []
  variables = variables0
  for j in range(int(acfg.rounds) + 1):
    rdir = _round_dir(adir, j)
    done_file = rdir / "round.json"
    if done_file.exists():
      rounds.append(json.loads(done_file.read_text()))
      if j > 0:
        variables, _, _ = ckpt_lib.load(str(rdir / "model"))
      log(f"round {j}: complete, skipped (return {rounds[-1]['real/return_mean']:.2f})")
      continue
    t0 = time.perf_counter()
    if j > 0:
      # 1) deploy the current model and record M episodes.
      controller.set_variables(variables)
      r = rec.EpisodeRecorder(rdir / "episodes", dims)
      have = len(rec.load_episodes(rdir / "episodes", dims, verbose=False)[0])
      for i in range(have, int(acfg.episodes_per_round)):
        s = seed * 100_000 + j * 1000 + i
        explore = ExplorationNoise(float(acfg.explore_sigma), acfg.explore_noisy_len, acfg.explore_clean_len,
                                   low=pcfg.action_low, high=pcfg.action_high, seed=s)
        out = run_episode(real_env, controller, jax.random.PRNGKey(s), r, meta={"seed": s, "round": j},
                          explore=explore)
        log(f"round {j}: collected episode {i + 1}/{acfg.episodes_per_round} return {out['return']:.2f} "
            f"({out['noised_steps']}/{out['steps']} steps with exploration noise)")
      # 2) finetune the dynamics on ALL real data so far, starting from the pretrained model.
      all_eps = []
      for jj in range(1, j + 1):
        eps, skipped = rec.load_episodes(_round_dir(adir, jj) / "episodes", dims)
        all_eps.extend(eps)
      stats = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in variables0["scaler"].items()}
      ds = rec.aggregate(all_eps, H=H, T=T, stats=stats, eval_fraction=0.0,
                         key=jax.random.PRNGKey(seed + j))
      if float(acfg.sim_mix) > 0.0:
        if sim_windows is None:
          sim_windows = windows.load_from_config(cfg, workdir)
        ds = windows.MixedDataset(ds, sim_windows, float(acfg.sim_mix))
      start = variables0 if acfg.finetune_from == "pretrained" else variables
      steps = int(acfg.finetune_steps) * (j if acfg.finetune_from == "pretrained" else 1)
      log(f"round {j}: finetuning {train_mode} for {steps} steps on {len(all_eps)} real episodes "
          f"({rec.total_minutes(all_eps, ctrl_dt):.2f} min)")
      variables, ft_metrics = finetune_variables(cfg, start, ds, steps, jax.random.PRNGKey(seed * 7919 + j))
      _save_round_model(rdir / "model", variables, cfg.model, dims, step=j)
    else:
      all_eps, ft_metrics = [], {}
    # 3) evaluate.
    controller.set_variables(variables)
    ev = evaluate(real_env, controller, eval_seeds)
    pred = prediction_loss_per_step(wm, variables, held, H, T)
    row = {"round": j, "real_minutes": rec.total_minutes(all_eps, ctrl_dt),
           "real_episodes": len(all_eps), "real/return_mean": ev["return_mean"],
           "real/return_std": ev["return_std"], "real/returns": ev["returns"],
           "heldout/pred_loss_per_step": pred.tolist(), "heldout/pred_loss_mean": float(pred.mean()),
           "frozen_unchanged": bool(frozen_unchanged(variables0, variables, train_mode)),
           "finetune": {k: float(v) for k, v in ft_metrics.items()},
           "planner/latency": controller.latency_summary(skip_first=5), "wall_s": time.perf_counter() - t0}
    if j == 0:
      sim = evaluate(sim_env, controller, sim_eval_seeds)
      row["sim/return_mean"], row["sim/return_std"] = sim["return_mean"], sim["return_std"]
      row["sim/returns"] = sim["returns"]
    rdir.mkdir(parents=True, exist_ok=True)
    config_lib.atomic_write_text(done_file, json.dumps(row, indent=2))
    rounds.append(row)
    log(f"round {j}: real return {row['real/return_mean']:.2f} +- {row['real/return_std']:.2f}, "
        f"held-out pred loss {row['heldout/pred_loss_mean']:.4f}, frozen unchanged {row['frozen_unchanged']}"
        + (f", sim return {row['sim/return_mean']:.2f}" if j == 0 else "") + f" ({row['wall_s']:.0f}s)")

  first, last = rounds[0], rounds[-1]
  gap = first["sim/return_mean"] - first["real/return_mean"]
  summary = {
      "complete": True, "rounds": rounds,
      "sim_planner_return": first["sim/return_mean"],
      "real_return_round0": first["real/return_mean"], "real_return_final": last["real/return_mean"],
      "gap_closed_fraction": (last["real/return_mean"] - first["real/return_mean"]) / gap if gap > 0 else None,
      "pred_loss_round0": first["heldout/pred_loss_mean"], "pred_loss_final": last["heldout/pred_loss_mean"],
      "pred_loss_ratio": first["heldout/pred_loss_mean"] / max(last["heldout/pred_loss_mean"], 1e-12),
      "frozen_unchanged_all_rounds": all(r["frozen_unchanged"] for r in rounds),
  }
  config_lib.atomic_write_text(results_path, json.dumps(summary, indent=2))
  closed = summary["gap_closed_fraction"]
  closed_s = "n/a (the real return is not below the sim planner's)" if closed is None else f"{closed:.0%}"
  log(f"done: real return {summary['real_return_round0']:.2f} -> {summary['real_return_final']:.2f} "
      f"(sim planner {summary['sim_planner_return']:.2f}, gap closed {closed_s}), "
      f"pred loss {summary['pred_loss_round0']:.4f} -> {summary['pred_loss_final']:.4f} "
      f"({summary['pred_loss_ratio']:.1f}x)")
  return summary
