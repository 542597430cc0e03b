"""Adaptation in the shifted "real" world (SimDist Algorithm 1, Eq. 3).

Rounds j = 1..J of: deploy the MPPI planner with the current world model for M episodes in the real world
(the MuJoCo C twin with `config.domain.real`), record only (o_t, a_t, c_t, time), finetune ONLY the latent
dynamics on all real data so far (targets from the frozen encoder), evaluate. Round 0 is the pretrained model.
With `planner.advantage_gate` and `adapt.gate_until_finetuned`, only the pretrained model plans gated.

Evaluation after every round, on a fixed protocol (`simdist_jax/adapt/evaluation.py`):
  * task metric: return and success (`Task.success`, e.g. the CartPole pole up) of `adapt.eval_episodes` real
    episodes with fixed seeds (randomized initial states from the env config; with `env.eval_grid`, episode i starts
    from point i mod N of the task's fixed grid, as do the collection and held-out episodes), and from round 1 on
    the paired bootstrap 95 % CI of the change against round 0 (same seeds, same initial states);
  * latent prediction loss per horizon step k = 1..T on held-out real episodes (recorded once with the
    pretrained planner on separate seeds, never trained on): mean over windows and latent dims of
    (z_hat_{t+k} - E(o_{t+k}))^2, E the frozen encoder, NEXT TO persistence (z_hat_{t+k} = z_t); and the same on
    counterfactual chunks (the held-out states restored in the twin, actions perturbed by
    `adapt.counterfactual_sigma`), the response to other actions that the planner ranks;
  * whether every frozen parameter is bitwise unchanged, and the planner's non-finite fallbacks.
At round 0 also the reference lines on the same seeds: the pretrained planner in the sim domain
(`adapt.sim_eval_episodes`), the policy head alone, the task's trivial controllers, and the oracle with the true
simulator scored by the frozen heads (`adapt.oracle_episodes`, `simdist_jax.analysis.oracle`): "gap closed" is
(final - round 0) / (oracle - round 0), measured against that reachable ceiling.
Real data is counted in minutes (steps x control period).

Layout under `<workdir>/adapt/`: `heldout/` and `rounds/round_<j>/episodes/` hold episode files,
`rounds/round_<j>/model/` the finetuned checkpoint, `rounds/round_<j>/round.json` the round's results (its
presence marks the round complete, so an interrupted run resumes at the first incomplete round), and
`adapt_results.json` the whole curve.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import time
from typing import Any

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax import fileio
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import recorder as rec
from simdist_jax.adapt.evaluation import run_episode  # noqa: F401  (the one host rollout; re-exported)
from simdist_jax.data import windows
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_real_env, make_task
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


def frozen_unchanged(reference, variables, train: str) -> bool:
  """True when every leaf outside the trainable subtree is bitwise identical to `reference`."""
  _, ref_frozen = split_params(reference["params"], train)
  _, new_frozen = split_params(variables["params"], train)
  leaves_a, tree_a = jax.tree.flatten(ref_frozen)
  leaves_b, tree_b = jax.tree.flatten(new_frozen)
  if tree_a != tree_b:
    return False
  same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves_a, leaves_b, strict=False))
  return same and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                      zip(jax.tree.leaves(reference["scaler"]), jax.tree.leaves(variables["scaler"]), strict=False))


def _round_dir(adir: pathlib.Path, j: int) -> pathlib.Path:
  return adir / "rounds" / f"round_{j:02d}"


def save_round_model(path: pathlib.Path, variables, model_cfg, dims, step: int) -> None:
  """Writes `variables` as a one-checkpoint directory `path` (replacing what was there), kind "finetune"."""
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


def collect_episodes(env, controller, seeds: list[int], directory: pathlib.Path, dims: dict, explore_cfg: Any,
                     pcfg: mppi.PlannerConfig, metas: list[dict], conditions: list, progress) -> None:
  """Records the episodes of `seeds` that have no good file in `directory` yet (the others stay as they are):
  `controller` in `env` with exploration noise from `explore_cfg`'s `explore_sigma`, `explore_noisy_len`,
  `explore_clean_len` (seeded by the episode seed), episode i with `metas[i]` and start `conditions[i]`.
  `progress(i, outcome, eta_s)` after each recorded episode (the caller words its own progress line)."""
  r = rec.EpisodeRecorder(directory, dims)
  missing = set(rec.missing_seeds(directory, seeds, dims))
  t0, done = time.perf_counter(), 0
  for i, s in enumerate(seeds):
    if s not in missing:
      continue
    explore = ExplorationNoise(float(explore_cfg.explore_sigma), explore_cfg.explore_noisy_len,
                               explore_cfg.explore_clean_len, low=pcfg.action_low, high=pcfg.action_high, seed=s)
    if hasattr(controller, "start"):  # e.g. adapt.branches.BranchingController: names its records by the seed
      controller.start(s)
    out = run_episode(env, controller, jax.random.PRNGKey(s), r, meta=metas[i], explore=explore,
                      condition=conditions[i])
    done += 1
    progress(i, out, (time.perf_counter() - t0) / done * (len(missing) - done))


def _collect(ctx: dict, j: int, rdir: pathlib.Path) -> None:
  """Deploys the current model for M episodes in the real world (with exploration noise) and records them;
  exactly the seeds without a good episode on disk are (re-)recorded."""
  acfg, seed = ctx["cfg"].adapt, ctx["seed"]
  round_seeds = [seed * 100_000 + j * 1000 + i for i in range(int(acfg.episodes_per_round))]
  conds = evaluation.episode_conditions(ctx["task"], ctx["eval_grid"], len(round_seeds))  # real starts: the grid

  def progress(i: int, out: dict, eta: float) -> None:
    ctx["log"](f"round {j}: collected episode {i + 1}/{acfg.episodes_per_round} return {out['return']:.2f} "
               f"({out['noised_steps']}/{out['steps']} steps with exploration noise; ETA {eta:.0f}s)")

  collect_episodes(ctx["real_env"], _controller(ctx, finetuned=j > 1), round_seeds, rdir / "episodes", ctx["dims"],
                   acfg, ctx["pcfg"], [_episode_meta(s, c, round=j) for s, c in zip(round_seeds, conds, strict=True)],
                   conds, progress)


def _episode_meta(seed: int, condition: Any, **extra) -> dict:
  """A recorded real episode's meta: its seed, its grid start (when it has one, for exact replay) and `extra`."""
  meta = {"seed": int(seed), **extra}
  if condition is not None:
    meta["condition"] = [float(x) for x in np.asarray(condition).reshape(-1)]
  return meta


def eval_seeds(seed: int, n: int) -> list[int]:
  """The episode seeds of every round's evaluation (the first `n`; the sim reference uses more of the same list)."""
  return [seed * 100_000 + 50_000 + i for i in range(n)]


def round_keys(seed: int, j: int, redo: int = 0) -> tuple[jax.Array, jax.Array]:
  """(data key, finetuning key) of round j; `redo` > 0 gives other finetuning keys for the same round's data
  (redo 0 is the loop's own, so a diagnostic that redoes the round reproduces it)."""
  return jax.random.PRNGKey(seed + j), jax.random.PRNGKey(seed * 7919 + j + 1000 * redo)


def finetune_on_episodes(cfg, start: Any, variables0: Any, episodes: list[dict], H: int, T: int, num_steps: int,
                         key_data: jax.Array, key_ft: jax.Array, workdir: str | pathlib.Path, sim_windows: Any = None,
                         label: str = "", sim_mix: float | None = None) -> tuple[Any, dict, Any]:
  """Eq. 3 on `episodes` (real episode dicts): `num_steps` dynamics-only steps from `start`, the windows (history H,
  horizon T) scaled by the pretrained model's (`variables0`) sim scaler; with `adapt.sim_mix` > 0 each batch also
  draws that share from the sim dataset of `workdir` (`sim_windows`, loaded when None; `sim_mix` overrides the
  share, e.g. `refine.sim_mix` for the sim refinement's episodes). Returns (new variables,
  metrics, sim windows) with `finetune_variables`'s contract on a non-finite loss (the input `start` back,
  `finetune/nonfinite` 1)."""
  stats = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in variables0["scaler"].items()}
  ds = rec.aggregate(episodes, H=H, T=T, stats=stats, eval_fraction=0.0, key=key_data)
  share = float(cfg.adapt.sim_mix if sim_mix is None else sim_mix)
  if share > 0.0:
    if sim_windows is None:
      sim_windows = windows.load_from_config(cfg, workdir)
    ds = windows.MixedDataset(ds, sim_windows, share)
  new, metrics = finetune_variables(cfg, start, ds, num_steps, key_ft, label=label)
  return new, metrics, sim_windows


def _finetune(ctx: dict, j: int, rdir: pathlib.Path, variables: Any) -> tuple[Any, dict, list]:
  """Finetunes (only) the dynamics on all real episodes so far; keeps the previous model on a non-finite loss."""
  cfg, acfg, dims = ctx["cfg"], ctx["cfg"].adapt, ctx["dims"]
  all_eps = []
  for jj in range(1, j + 1):
    all_eps.extend(rec.load_episodes(_round_dir(ctx["adir"], jj) / "episodes", dims)[0])
  start = ctx["variables0"] if acfg.finetune_from == "pretrained" else variables
  steps = int(acfg.finetune_steps) * (j if acfg.finetune_from == "pretrained" else 1)
  ctx["log"](f"round {j}: finetuning {ctx['train_mode']} for {steps} steps on {len(all_eps)} real episodes "
             f"({rec.total_minutes(all_eps, ctx['ctrl_dt']):.2f} min)")
  new, ft_metrics, ctx["sim_windows"] = finetune_on_episodes(
      cfg, start, ctx["variables0"], all_eps, ctx["H"], ctx["T"], steps, *round_keys(ctx["seed"], j),
      ctx["workdir"], ctx.get("sim_windows"), label=f"round {j}")
  if float(ft_metrics.get("finetune/nonfinite", 0.0)):
    ctx["log"](f"round {j}: WARNING finetuning hit a non-finite loss; keeping the previous round's model")
    new = variables
  save_round_model(rdir / "model", new, cfg.model, dims, step=j)
  return new, ft_metrics, all_eps


def _controller(ctx: dict, finetuned: bool) -> Controller:
  """The loop's controller for a model that has (`finetuned`) or has not been finetuned on real data: the same one
  unless `adapt.gate_until_finetuned` lifts the planner's advantage gate for finetuned models."""
  return ctx["finetuned_controller"] if finetuned and "finetuned_controller" in ctx else ctx["controller"]


def _evaluate(ctx: dict, j: int, variables: Any, round0: dict | None) -> dict:
  """The fixed protocol of every round: real return and success on the evaluation seeds (paired with round 0),
  held-out and counterfactual latent losses next to persistence, the planner's fallbacks."""
  wm, H, T = ctx["wm"], ctx["H"], ctx["T"]
  controller = _controller(ctx, finetuned=j > 0)
  controller.set_variables(variables)
  fallbacks0, gate0 = controller.fallbacks, controller.gate_counts()
  ev = evaluation.evaluate_episodes(ctx["real_env"], controller, ctx["eval_seeds"], ctx["eval_grid"])
  pred = evaluation.prediction_losses(wm, variables, ctx["held"], H, T)
  row = {"real/return_mean": ev["return_mean"], "real/return_std": ev["return_std"], "real/returns": ev["returns"],
         "real/success_mean": ev["success_mean"], "real/success": ev["success"],
         "real/success_final": ev["success_final"],
         "heldout/pred_loss_per_step": pred["model"].tolist(), "heldout/pred_loss_mean": float(pred["model"].mean()),
         "heldout/persistence_per_step": pred["persistence"].tolist(),
         "heldout/persistence_mean": float(pred["persistence"].mean()),
         "heldout/pred_over_persistence": float(pred["model"].mean() / max(pred["persistence"].mean(), 1e-12))}
  if ctx["cf_windows"]:
    cf = evaluation.counterfactual_losses(wm, variables, ctx["cf_windows"], controller.cfg)
    row.update({"counterfactual/pred_loss_per_step": cf["model"].tolist(),
                "counterfactual/pred_loss_mean": float(cf["model"].mean()),
                "counterfactual/persistence_mean": float(cf["persistence"].mean()),
                "counterfactual/pred_over_persistence": float(cf["model"].mean()
                                                              / max(cf["persistence"].mean(), 1e-12)),
                "counterfactual/return_spearman": cf["return_spearman"],
                "counterfactual/action_blind_mean": float(cf["action_blind"].mean()),
                "counterfactual/effect_error": cf["effect_error"]})
  if round0 is not None and len(ev["returns"]) >= 2:
    row["real/return_vs_round0"] = evaluation.paired_bootstrap_ci(ev["returns"], round0["real/returns"])
    row["real/success_vs_round0"] = evaluation.paired_bootstrap_ci(ev["success"], round0["real/success"])
  row["planner/nonfinite_fallbacks"] = controller.fallbacks - fallbacks0
  if controller.cfg.advantage_gate:  # share of the evaluation's control steps that applied the plan, not pi's chunk
    row["planner/gate_open_frac"] = controller.gate_open_frac(gate0)
  return row


def _references(ctx: dict) -> dict:
  """Round-0 reference lines on the same evaluation seeds: the pretrained planner in sim, the policy head alone,
  the task's trivial controllers, and the oracle with the true simulator and the frozen heads (`analysis.oracle`,
  scorer `heads`: what perfect dynamics finetuning could reach), which "gap closed" divides by."""
  from simdist_jax.analysis import oracle as oracle_lib  # pylint: disable=import-outside-toplevel
  cfg, acfg, wm = ctx["cfg"], ctx["cfg"].adapt, ctx["wm"]
  out = {}
  gate0 = ctx["controller"].gate_counts()
  sim = evaluation.evaluate_episodes(ctx["sim_env"], ctx["controller"], ctx["sim_eval_seeds"], ctx["eval_grid"])
  out.update({"sim/return_mean": sim["return_mean"], "sim/return_std": sim["return_std"],
              "sim/returns": sim["returns"], "sim/success_mean": sim["success_mean"]})
  if ctx["controller"].cfg.advantage_gate:
    out["sim/planner/gate_open_frac"] = ctx["controller"].gate_open_frac(gate0)
  policy = evaluation.model_controller(ctx["pcfg"], wm, ctx["variables0"], ctx["dims"], jax.random.PRNGKey(0),
                                       policy_only=True)
  # does the search beat pi in sim?
  ev = evaluation.evaluate_episodes(ctx["sim_env"], policy, ctx["sim_eval_seeds"], ctx["eval_grid"])
  out["sim/policy_head/return_mean"], out["sim/policy_head/returns"] = ev["return_mean"], ev["returns"]
  ev = evaluation.evaluate_episodes(ctx["real_env"], policy, ctx["eval_seeds"], ctx["eval_grid"])
  out["reference/policy_head/return_mean"], out["reference/policy_head/returns"] = ev["return_mean"], ev["returns"]
  out["reference/policy_head/success_mean"] = ev["success_mean"]
  for name, fn in ctx["task"].reference_controllers().items():
    ev = evaluation.evaluate_episodes(ctx["real_env"], evaluation.FunctionController(fn), ctx["eval_seeds"],
                                      ctx["eval_grid"])
    out[f"reference/{name}/return_mean"], out[f"reference/{name}/success_mean"] = ev["return_mean"], ev["success_mean"]
  n_or = int(acfg.oracle_episodes)
  if n_or:
    t0 = time.perf_counter()
    task = ctx["task"]
    mjx_env = MjxEnv(task, make_domain(cfg, "real", task), sim_domain=make_domain(cfg, "sim", task))
    orc = oracle_lib.OracleController(_controller(ctx, finetuned=True).cfg, wm, ctx["variables0"], ctx["real_env"],
                                      mjx_env, "heads", jax.random.PRNGKey(0))
    ev = evaluation.evaluate_episodes(ctx["real_env"], orc, ctx["eval_seeds"][:n_or], ctx["eval_grid"])
    out.update({"oracle/heads/return_mean": ev["return_mean"], "oracle/heads/returns": ev["returns"],
                "oracle/heads/success_mean": ev["success_mean"], "oracle/heads/wall_s": time.perf_counter() - t0})
  return out


def _value_traces(ctx: dict, variables: Any) -> list[dict]:
  """The frozen value along every recorded real episode (`evaluation.value_traces`), with its outcome."""
  eps = [(j, ep) for j in range(1, int(ctx["cfg"].adapt.rounds) + 1)
         for ep in rec.load_episodes(_round_dir(ctx["adir"], j) / "episodes", ctx["dims"], verbose=False)[0]
         if len(ep["proprio"]) >= ctx["T"] + 1]
  values = evaluation.value_traces(ctx["wm"], variables, [ep for _, ep in eps], ctx["H"], ctx["T"])
  return [{"round": j, "seed": ep["meta"].get("seed"), "return": ep["meta"].get("outcome/return"),
           "success_frac": ep["meta"].get("outcome/success_frac"), "value": [float(x) for x in v]}
          for (j, ep), v in zip(eps, values, strict=True)]


def summarize(rounds: list[dict]) -> dict:
  """The curve's summary. Gap closed = (final - round 0) / (oracle(heads) - round 0), each mean over the oracle's
  episodes (the first `adapt.oracle_episodes` evaluation seeds, the same initial states), or None without an
  oracle or when round 0 is not below it."""
  first, last = rounds[0], rounds[-1]
  summary = {
      "complete": True, "rounds": rounds,
      "sim_planner_return": first["sim/return_mean"],
      "sim_policy_head_return": first.get("sim/policy_head/return_mean"),
      "real_return_round0": first["real/return_mean"], "real_return_final": last["real/return_mean"],
      "real_success_round0": first["real/success_mean"], "real_success_final": last["real/success_mean"],
      "pred_loss_round0": first["heldout/pred_loss_mean"], "pred_loss_final": last["heldout/pred_loss_mean"],
      "pred_loss_ratio": first["heldout/pred_loss_mean"] / max(last["heldout/pred_loss_mean"], 1e-12),
      "pred_over_persistence_round0": first["heldout/pred_over_persistence"],
      "pred_over_persistence_final": last["heldout/pred_over_persistence"],
      "frozen_unchanged_all_rounds": all(r["frozen_unchanged"] for r in rounds),
      "final_vs_round0": last.get("real/return_vs_round0"),
  }
  oracle = first.get("oracle/heads/returns")
  summary["oracle_heads_return"] = float(np.mean(oracle)) if oracle else None
  gap = None
  if oracle:
    n = len(oracle)
    r0, fin = float(np.mean(first["real/returns"][:n])), float(np.mean(last["real/returns"][:n]))
    if float(np.mean(oracle)) > r0:
      gap = (fin - r0) / (float(np.mean(oracle)) - r0)
  summary["gap_closed_fraction"] = gap
  return summary


def run_stage(cfg, workdir) -> dict:
  """Runs (or resumes) the adaptation rounds; writes `<workdir>/adapt/adapt_results.json`."""
  workdir = pathlib.Path(workdir)
  adir = paths.adapt_dir(workdir)
  adir.mkdir(parents=True, exist_ok=True)  # its config.json: written by the stage table (simdist_jax.stages)
  acfg = cfg.adapt
  task = make_task(cfg)
  variables0, _, dims = ckpt_lib.load_checked(str(paths.planning_model_dir(cfg, workdir)), cfg.model, task.dims)
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=T)
  seed = int(cfg.run.seed)
  real_env = make_real_env(cfg, "real")
  ctx = {"cfg": cfg, "workdir": workdir, "adir": adir, "task": task, "dims": dims, "wm": wm, "H": H, "T": T,
         "pcfg": pcfg, "seed": seed, "variables0": variables0, "train_mode": str(cfg.model.finetune.train),
         "real_env": real_env, "sim_env": make_real_env(cfg, "sim"),  # the C twin with sim draws: in-sim reference
         "ctrl_dt": real_env.dt,
         "eval_seeds": eval_seeds(seed, int(acfg.eval_episodes)),
         "sim_eval_seeds": eval_seeds(seed, int(acfg.sim_eval_episodes)),
         "eval_grid": evaluation.eval_grid(cfg),  # "" or a task grid: evaluation episode i starts from its point i mod N
         "controller": Controller(pcfg, wm, variables0, dims, history=H, key=jax.random.PRNGKey(seed),
                                  model_horizon=T),
         "log": lambda msg: print(f"[adapt] {msg}", flush=True)}
  if bool(acfg.gate_until_finetuned) and pcfg.advantage_gate:
    ctx["finetuned_controller"] = Controller(dataclasses.replace(pcfg, advantage_gate=False), wm, variables0, dims,
                                             history=H, key=jax.random.PRNGKey(seed), model_horizon=T)
    ctx["log"]("the advantage gate applies until the first finetuning (adapt.gate_until_finetuned); rounds >= 1 "
               "and the oracle plan ungated")
  log, controller = ctx["log"], ctx["controller"]

  # Held-out real episodes for the prediction losses (recorded once, with the pretrained planner).
  heldout_seeds = [seed * 100_000 + 60_000 + i for i in range(int(acfg.heldout_episodes))]
  hdir = adir / "heldout"
  missing = rec.missing_seeds(hdir, heldout_seeds, dims)  # quarantines corrupt files and duplicate seeds
  if missing:
    r = rec.EpisodeRecorder(hdir, dims)
    held_conds = dict(zip(heldout_seeds, evaluation.episode_conditions(task, ctx["eval_grid"], len(heldout_seeds)),
                          strict=True))
    for s in missing:
      run_episode(real_env, controller, jax.random.PRNGKey(s), r,
                  meta=_episode_meta(s, held_conds[s], purpose="heldout"), condition=held_conds[s])
  held, _ = rec.load_episodes(hdir, dims)
  ctx["held"] = held
  cf_rng = np.random.default_rng(seed + 0xCF)
  ctx["cf_windows"] = [evaluation.counterfactual_windows(real_env, ep, H, T, float(acfg.counterfactual_sigma),
                                                         int(acfg.counterfactual_points), cf_rng,
                                                         pcfg.action_low, pcfg.action_high,
                                                         int(acfg.counterfactual_chunks))
                       for ep in held] if int(acfg.counterfactual_points) else []
  log(f"{len(held)} held-out real episodes ({rec.total_minutes(held, ctx['ctrl_dt']):.2f} min), "
      f"{sum(len(w['acts']) for w in ctx['cf_windows'])} counterfactual chunks (sigma "
      f"{float(acfg.counterfactual_sigma)})")

  rounds: list[dict] = []
  variables = variables0
  t_stage, n_rounds = time.perf_counter(), int(acfg.rounds) + 1
  for j in range(n_rounds):
    rdir = _round_dir(adir, j)
    done_file = rdir / "round.json"
    if done_file.exists():
      rounds.append(fileio.read_json(done_file))
      if j > 0:
        variables, _, _ = ckpt_lib.load(str(rdir / "model"))
      log(f"round {j}: complete, skipped (return {rounds[-1]['real/return_mean']:.2f})")
      continue
    t0 = time.perf_counter()
    all_eps, ft_metrics = [], {}
    if j > 0:
      _controller(ctx, finetuned=j > 1).set_variables(variables)
      _collect(ctx, j, rdir)
      variables, ft_metrics, all_eps = _finetune(ctx, j, rdir, variables)
    row = {"round": j, "real_minutes": rec.total_minutes(all_eps, ctx["ctrl_dt"]), "real_episodes": len(all_eps)}
    row.update(_evaluate(ctx, j, variables, rounds[0] if rounds else None))
    row.update({"frozen_unchanged": bool(frozen_unchanged(variables0, variables, ctx["train_mode"])),
                "finetune": {k: float(v) for k, v in ft_metrics.items()},
                "planner/latency": _controller(ctx, finetuned=j > 0).latency_summary(skip_first=5)})
    if j == 0:
      row.update(_references(ctx))
    row["wall_s"] = time.perf_counter() - t0
    rdir.mkdir(parents=True, exist_ok=True)
    config_lib.atomic_write_text(done_file, json.dumps(row, indent=2))
    rounds.append(row)
    vs0 = row.get("real/return_vs_round0")
    eta = (time.perf_counter() - t_stage) / (j + 1) * (n_rounds - j - 1)
    log(f"round {j}: real return {row['real/return_mean']:.2f} +- {row['real/return_std']:.2f}"
        + (f" (vs round 0 {vs0['diff']:+.1f}, 95% CI [{vs0['lo']:+.1f}, {vs0['hi']:+.1f}])" if vs0 else "")
        + f", success {row['real/success_mean']:.2f}, held-out pred loss {row['heldout/pred_loss_mean']:.4f} "
        f"(persistence {row['heldout/persistence_mean']:.4f})"
        + (f", counterfactual return rank corr. {row['counterfactual/return_spearman']:.2f}"
           if "counterfactual/return_spearman" in row else "")
        + (f", action-effect error {row['counterfactual/effect_error']:.2f}"
           if "counterfactual/effect_error" in row else "")
        + (f", gate open on {row['planner/gate_open_frac']:.0%} of the steps" if "planner/gate_open_frac" in row else "")
        + f", frozen unchanged {row['frozen_unchanged']}"
        + (f", sim return {row['sim/return_mean']:.2f} (policy head {row['sim/policy_head/return_mean']:.2f}), "
           f"real policy head {row['reference/policy_head/return_mean']:.2f}" if j == 0 else "")
        + (f", oracle(heads) {row['oracle/heads/return_mean']:.2f}" if "oracle/heads/return_mean" in row else "")
        + f" ({row['wall_s']:.0f}s; ETA {eta:.0f}s)")

  summary = summarize(rounds)
  summary["value_traces"] = _value_traces(ctx, variables)
  config_lib.atomic_write_text(adir / "adapt_results.json", json.dumps(summary, indent=2))
  closed = summary["gap_closed_fraction"]
  closed_s = ("n/a (no oracle, or round 0 is not below it)" if closed is None else
              f"{closed:.0%} of the way to the oracle with true dynamics ({summary['oracle_heads_return']:.1f})")
  vs0 = summary["final_vs_round0"]
  log(f"done: real return {summary['real_return_round0']:.2f} -> {summary['real_return_final']:.2f}"
      + (f" (paired 95% CI of the change [{vs0['lo']:+.1f}, {vs0['hi']:+.1f}])" if vs0 else "")
      + f", success {summary['real_success_round0']:.2f} -> {summary['real_success_final']:.2f}; gap closed "
      f"{closed_s}; held-out pred loss / persistence {summary['pred_over_persistence_round0']:.2f} -> "
      f"{summary['pred_over_persistence_final']:.2f}")
  return summary
