"""Sim on-policy refinement of the dynamics (`simdist-jax refine`): the adaptation loop's Eq. 3 run in sim, before
any real data.

Why (docs/results.md, "The planner's own states"): pretraining sees the expert, its ladder and their noised
actions (Algorithm 2), not the states the planner's own closed loop visits. There the pretrained dynamics predicts
worse (the counterfactual instrument at restored sim states of planner episodes vs policy-head episodes), and the
search exploits those errors: with the TRUE sim dynamics the frozen heads and the same search beat the policy head
(oracle (d)), with the learned one it can fall below it. This stage closes that loop in sim, where data is free:

  for j = 1..R: record M planner episodes in sim (the MuJoCo C twin, every episode a new DR domain, the loop's
                exploration noise; the search's plans, ungated), then finetune the PRETRAINED model's dynamics
                (only: heads, encoder, policy head and scaler frozen, `model.finetune.train` as in Eq. 3) on all
                sim planner episodes so far, j x `refine.finetune_steps` steps, a `refine.sim_mix` share of every
                batch from the sim dataset.
                With `refine.branch_points` > 0 the collection also records counterfactual branches (perturbed
                plans rolled out from saved twin states, `simdist_jax.adapt.branches`) and finetunes on them too.

A DAgger-style loop for the world model (the data follow the current planner); not in the paper (its planner is
deployed on the pretrained model), so every preset but `full` keeps `refine.rounds = 0`, which makes this stage a
no-op and `adapt` plan with `world_model/` itself (`paths.planning_model_dir`).

Outputs under `<workdir>/refine/`: `rounds/round_jj/{episodes,model,round.json}` (resumable per round and per
episode), `model/` (the refined checkpoint `adapt` starts from), `refine_results.json` (the per-round collection
returns and finetuning metrics, and the evaluation of the policy head, the pretrained planner and the refined
planner on the same `refine.eval_episodes` sim seeds with paired 95 % CIs; the planners as configured, i.e. gated
with `planner.advantage_gate`).

Seeds (all disjoint from the loop's and from each other): collection episode i of round j S*100000 + 90000 + 100 j
+ i, evaluation episode i S*100000 + 80000 + i (S = run.seed).
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
from simdist_jax.adapt import branches
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import loop
from simdist_jax.adapt import recorder as rec
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.planner.controller import Controller
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib

RESULTS = "refine_results.json"


def collection_seeds(seed: int, j: int, n: int) -> list[int]:
  """Episode seeds of round j's collection (n <= 100, checked at config load)."""
  return [seed * 100_000 + 90_000 + 100 * j + i for i in range(n)]


def eval_seeds(seed: int, n: int) -> list[int]:
  """Episode seeds of the stage's sim evaluation (head, pretrained planner, refined planner)."""
  return [seed * 100_000 + 80_000 + i for i in range(n)]


def is_complete(cfg: Any, workdir: Any) -> bool:
  """True when `refine.rounds` is 0 (nothing to do) or `refine_results.json` marks every round done."""
  if int(cfg.refine.rounds) == 0:
    return True
  p = paths.refine_dir(workdir) / RESULTS
  return p.exists() and bool(json.loads(p.read_text()).get("complete", False))


def _round_dir(rdir: pathlib.Path, j: int) -> pathlib.Path:
  return rdir / "rounds" / f"round_{j:02d}"


def _branch_episodes(jdir: pathlib.Path, seeds: list[int], points: int, per_point: int, dims: dict) -> list[dict]:
  """Round j's branch episodes, one copy of each (a trunk episode re-recorded after a crash re-records its
  branches: `missing_seeds` quarantines the second copies); none without branches."""
  bdir = jdir / "branches"
  if not points or not bdir.exists():
    return []
  ids = [branches.branch_seed(s, p, per_point, b) for s in seeds for p in range(points) for b in range(per_point)]
  rec.missing_seeds(bdir, ids, dims)
  return rec.load_episodes(bdir, dims)[0]


def _evaluate(env, runs: list[tuple[str, Any, Any]], seeds: list[int], log) -> dict:
  """Returns of each (name, controller, variables) on the same sim seeds (a controller may appear twice with other
  variables: one compiled planner), and each planner's paired CI against the policy head."""
  out, rets = {}, {}
  for name, ctrl, variables in runs:
    t0 = time.perf_counter()
    ctrl.set_variables(variables)
    gate0 = ctrl.gate_counts()
    rets[name] = evaluation.evaluate_episodes(env, ctrl, seeds)["returns"]
    out[f"sim/{name}/returns"] = rets[name]
    out[f"sim/{name}/return_mean"] = float(np.mean(rets[name]))
    gate = ""
    if ctrl.cfg.advantage_gate:  # share of its control steps that applied the plan
      out[f"sim/{name}/gate_open_frac"] = ctrl.gate_open_frac(gate0)
      gate = f", gate open on {out[f'sim/{name}/gate_open_frac']:.0%} of the steps"
    log(f"sim evaluation: {name} {np.mean(rets[name]):.1f} over {len(seeds)} episodes{gate} "
        f"({time.perf_counter() - t0:.0f}s)")
  if len(seeds) >= 2:
    for name in rets:
      if name != "policy_head":
        out[f"sim/{name}_minus_head"] = evaluation.paired_bootstrap_ci(rets[name], rets["policy_head"])
    if "pretrained_planner" in rets and "refined_planner" in rets:
      out["sim/refined_minus_pretrained"] = evaluation.paired_bootstrap_ci(rets["refined_planner"],
                                                                           rets["pretrained_planner"])
  return out


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Runs (or resumes) the refinement rounds; writes `<workdir>/refine/{model,refine_results.json}`."""
  rcfg = cfg.refine
  n_rounds = int(rcfg.rounds)
  log = lambda msg: print(f"[refine] {msg}", flush=True)  # noqa: E731
  if n_rounds == 0:
    log("refine.rounds = 0: nothing to do (adapt plans with the pretrained world_model/)")
    return {"complete": True, "rounds": []}
  workdir = pathlib.Path(workdir)
  rdir = paths.refine_dir(workdir)
  rdir.mkdir(parents=True, exist_ok=True)  # its config.json: written by the stage table (simdist_jax.stages)
  task = make_task(cfg)
  variables0, _, dims = ckpt_lib.load_checked(str(paths.model_dir(workdir)), cfg.model, task.dims)
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=T)
  seed = int(cfg.run.seed)
  env = make_real_env(cfg, "sim")  # the C twin; every reset key draws a new sim domain
  planner = Controller(pcfg, wm, variables0, dims, history=H, key=jax.random.PRNGKey(seed), model_horizon=T)
  # The collection follows the search's own plans: with `planner.advantage_gate` on, the gate (a deployment filter
  # that falls back to the head's chunk) would hide exactly the states the search leads to, so it is off here.
  searcher = planner
  if pcfg.advantage_gate:
    searcher = Controller(dataclasses.replace(pcfg, advantage_gate=False), wm, variables0, dims, history=H,
                          key=jax.random.PRNGKey(seed), model_horizon=T)

  rounds: list[dict] = []
  episodes: list[dict] = []
  variables, sim_windows = variables0, None
  t_stage = time.perf_counter()
  per_round = int(rcfg.episodes_per_round)
  n_points, per_point = int(rcfg.branch_points), int(rcfg.branches_per_point)
  for j in range(1, n_rounds + 1):
    jdir = _round_dir(rdir, j)
    done_file = jdir / "round.json"
    if done_file.exists():
      rounds.append(json.loads(done_file.read_text()))
      episodes.extend(rec.load_episodes(jdir / "episodes", dims)[0])
      episodes.extend(_branch_episodes(jdir, collection_seeds(seed, j, per_round), n_points, per_point, dims))
      variables, _, _ = ckpt_lib.load(str(jdir / "model"))
      log(f"round {j}: complete, skipped")
      continue
    t0 = time.perf_counter()
    searcher.set_variables(variables)
    seeds = collection_seeds(seed, j, per_round)

    def progress(i: int, out: dict, eta: float, j: int = j) -> None:
      log(f"round {j}/{n_rounds}: sim planner episode {i + 1}/{per_round} return {out['return']:.1f} "
          f"({out['noised_steps']}/{out['steps']} steps noised; ETA {eta:.0f}s)")

    collector = searcher
    if n_points:
      collector = branches.BranchingController(
          searcher, env, jdir / "branches", H, T, n_points, per_point, float(rcfg.branch_sigma),
          pcfg.action_low, pcfg.action_high, int(cfg.env.episode_length))
    loop.collect_episodes(env, collector, seeds, jdir / "episodes", dims, rcfg, pcfg,
                          [{"seed": s, "round": j} for s in seeds], [None] * len(seeds), progress)
    eps = rec.load_episodes(jdir / "episodes", dims)[0]
    episodes.extend(eps)
    episodes.extend(_branch_episodes(jdir, seeds, n_points, per_point, dims))
    steps = int(rcfg.finetune_steps) * j
    log(f"round {j}/{n_rounds}: finetuning the pretrained dynamics for {steps} steps on {len(episodes)} sim planner "
        f"episodes (sim_mix {float(rcfg.sim_mix):g})")
    variables, metrics, sim_windows = loop.finetune_on_episodes(
        cfg, variables0, variables0, episodes, H, T, steps, *loop.round_keys(seed, j), workdir, sim_windows,
        label=f"refine round {j}", sim_mix=float(rcfg.sim_mix))
    if float(metrics.get("finetune/nonfinite", 0.0)):
      raise FloatingPointError(f"refine round {j}: finetuning hit a non-finite loss; nothing of this round was kept "
                               f"but its episodes ({jdir / 'episodes'})")
    loop.save_round_model(jdir / "model", variables, cfg.model, dims, step=j)
    row = {"round": j, "episodes": len(episodes), "finetune_steps": steps,
           "branch_episodes": sum(1 for ep in episodes if "branch" in ep["meta"]),
           "collect/returns": [float(ep["meta"].get("outcome/return", float("nan"))) for ep in eps],
           "finetune": {k: float(v) for k, v in metrics.items()},
           "frozen_unchanged": bool(loop.frozen_unchanged(variables0, variables, str(cfg.model.finetune.train))),
           "wall_s": time.perf_counter() - t0}
    config_lib.atomic_write_text(done_file, json.dumps(row, indent=2))
    rounds.append(row)
    eta = (time.perf_counter() - t_stage) / len(rounds) * (n_rounds - j)
    log(f"round {j}/{n_rounds}: done, collection return {np.mean(row['collect/returns']):.1f} "
        f"({row['wall_s']:.0f}s; ETA {eta:.0f}s)")

  final = rdir / "model"
  if final.exists():
    shutil.rmtree(final)
  loop.save_round_model(final, variables, cfg.model, dims, step=n_rounds)
  summary: dict[str, Any] = {"complete": False, "rounds": rounds,
                             "frozen_unchanged_all_rounds": all(r["frozen_unchanged"] for r in rounds)}
  n_eval = int(rcfg.eval_episodes)
  if n_eval:
    head = evaluation.model_controller(pcfg, wm, variables0, dims, jax.random.PRNGKey(0), policy_only=True)
    runs = [("policy_head", head, variables0), ("pretrained_planner", planner, variables0),
            ("refined_planner", planner, variables)]  # the controller's reset(key) restarts its key per episode
    summary.update(_evaluate(env, runs, eval_seeds(seed, n_eval), log))
    d = summary.get("sim/refined_planner_minus_head")
    if d:
      log(f"refined planner - policy head in sim {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] (pretrained "
          f"planner: {summary['sim/pretrained_planner_minus_head']['diff']:+.1f})")
  summary["complete"] = True
  config_lib.atomic_write_text(rdir / RESULTS, json.dumps(summary, indent=2))
  return summary
