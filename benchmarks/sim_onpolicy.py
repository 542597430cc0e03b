"""Is the planner's loss to its policy head in sim a coverage failure of the pretrained dynamics? Instrument + test.

The oracle (d) says that with the TRUE sim dynamics the frozen heads and the search beat the policy head on every
seed tried, so on the seeds where the planner loses, the pretrained dynamics' sim error is what costs it. The
pretraining data come from the expert and its ladder (Algorithm 2); the planner's own closed loop visits other
states. This script measures, then intervenes:

1. **Instrument** (pretrained model): the counterfactual instrument (`evaluation.counterfactual_losses`: latent loss
   over persistence, action-effect error, chunk-rank correlation) at restored sim states of episodes recorded with
   the planner and with the policy head alone, side by side (each episode a new sim domain). If the planner's own
   states are predicted clearly worse than the head's, its data never covered them.
2. **Intervention** (DAgger for the dynamics, in sim): `--rounds` rounds of `--episodes` planner episodes in sim
   domains (with the adaptation loop's exploration noise), each round finetuning the pretrained dynamics on all of
   them so far, exactly as Eq. 3 does with real data (`loop.finetune_on_episodes`, dynamics only, heads frozen,
   `adapt.finetune_steps` x round steps, a `--sim-mix` share of every batch from the sim dataset). After each round
   the planner is evaluated on the evaluation seeds next to the policy head (unchanged: dynamics only), with a
   paired 95 % CI, and the instrument is measured again on the same recorded states.

  python benchmarks/sim_onpolicy.py --workdir runs/k1s1 --rounds 3 --episodes 10 --out runs/sim_onpolicy_s1.json

Evaluation seeds default to the selection episodes of docs/results.md (S*100000+60000+i, i < 20) and a fresh set
(S*100000+80000+i); collection uses S*100000+90000+100j+i, the instrument S*100000+70000+i: all disjoint.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import loop
from simdist_jax.adapt import recorder as rec
from simdist_jax.adapt import refine
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.planner.controller import Controller
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def _returns(env, ctrl, seeds) -> list[float]:
  return [evaluation.run_episode(env, ctrl, jax.random.PRNGKey(s))["return"] for s in seeds]


def main() -> None:
  """Parses the flags, prints the instrument and one evaluation row per round, writes `--out`."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="a run directory with a pretrained world model")
  ap.add_argument("--rounds", type=int, default=3, help="collection + finetuning rounds in sim (0: instrument only)")
  ap.add_argument("--episodes", type=int, default=10, help="planner episodes per round")
  ap.add_argument("--sim-mix", type=float, default=0.5, help="share of each finetuning batch from the sim dataset")
  ap.add_argument("--explore-sigma", type=float, default=None, help="collection noise (default: adapt.explore_sigma)")
  ap.add_argument("--steps", type=int, default=None, help="finetuning steps per round (default: adapt.finetune_steps)")
  ap.add_argument("--eval", default="selection,fresh", help="evaluation seed sets: selection, fresh (comma list)")
  ap.add_argument("--eval-episodes", type=int, default=20)
  ap.add_argument("--instrument-episodes", type=int, default=4, help="episodes per controller (0: no instrument)")
  ap.add_argument("--sigma", type=float, default=0.3, help="the instrument's chunk perturbation")
  ap.add_argument("--points", type=int, default=20)
  ap.add_argument("--chunks", type=int, default=8)
  ap.add_argument("--out", default=None, help="JSON of every figure")
  args = ap.parse_args()

  wd = pathlib.Path(args.workdir)
  base = config_lib.from_json((wd / "config.json").read_text())
  overrides = [f"adapt.sim_mix={args.sim_mix}"]
  if args.explore_sigma is not None:
    overrides.append(f"adapt.explore_sigma={args.explore_sigma}")
  if args.steps is not None:
    overrides.append(f"adapt.finetune_steps={args.steps}")
  try:
    cfg = config_lib.apply_overrides(base, overrides)
  except config_lib.ConfigError as e:
    raise SystemExit(f"sim_onpolicy: {e}") from e
  seed = int(cfg.run.seed)
  variables0, _, dims = ckpt_lib.load_checked(str(paths.model_dir(wd)), cfg.model, make_task(cfg).dims)
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=T)
  env = make_real_env(cfg, "sim")  # the C twin; every reset key draws a new sim domain
  planner = Controller(pcfg, wm, variables0, dims, history=H, key=jax.random.PRNGKey(seed), model_horizon=T)
  head = Controller(evaluation.policy_only_config(pcfg), wm, variables0, dims, history=H, key=jax.random.PRNGKey(0),
                    model_horizon=T)
  sets = {"selection": 60_000, "fresh": 80_000}
  names = [s.strip() for s in args.eval.split(",") if s.strip()]
  unknown = sorted(set(names) - set(sets))
  if unknown:
    raise SystemExit(f"sim_onpolicy: --eval: unknown seed sets {unknown} (known: {sorted(sets)})")
  eval_seeds = {n: [seed * 100_000 + sets[n] + i for i in range(args.eval_episodes)] for n in names}
  out: dict = {"workdir": str(wd), "args": vars(args), "rounds": []}
  tmp = wd / "_sim_onpolicy"
  shutil.rmtree(tmp, ignore_errors=True)

  # 1. The instrument's states: episodes of the planner and of the head in sim (recorded once, pretrained model).
  inst = {}
  if args.instrument_episodes:
    rng = np.random.default_rng(seed)
    iseeds = [seed * 100_000 + 70_000 + i for i in range(args.instrument_episodes)]
    for name, ctrl in (("planner", planner), ("head", head)):
      eps = evaluation.record_episodes(env, ctrl, dims, iseeds, tmp / f"inst_{name}")
      inst[name] = [evaluation.counterfactual_windows(env, ep, H, T, args.sigma, args.points, rng, pcfg.action_low,
                                                      pcfg.action_high, args.chunks) for ep in eps]
      out[f"instrument/{name}_episode_returns"] = [float(ep["meta"]["outcome/return"]) for ep in eps]

  def instrument(variables) -> dict:
    row = {}
    for name, wins in inst.items():
      cf = evaluation.counterfactual_losses(wm, variables, wins, pcfg)
      row.update({f"{name}_states/loss_over_persistence": float(cf["model"].mean() / cf["persistence"].mean()),
                  f"{name}_states/effect_error": float(cf["effect_error"]),
                  f"{name}_states/rank_corr": float(cf["return_spearman"])})
    return row

  t0 = time.perf_counter()
  head_rets = {n: _returns(env, head, s) for n, s in eval_seeds.items()}
  out["head"] = {n: float(np.mean(r)) for n, r in head_rets.items()}
  print("policy head in sim: " + ", ".join(f"{n} {np.mean(r):.1f}" for n, r in head_rets.items())
        + f" ({time.perf_counter() - t0:.0f}s)", flush=True)

  episodes: list[dict] = []
  variables = variables0
  for j in range(args.rounds + 1):
    t0 = time.perf_counter()
    row: dict = {"round": j, "episodes": len(episodes)}
    if j > 0:
      planner.set_variables(variables)
      acfg = cfg.adapt
      seeds = refine.collection_seeds(seed, j, args.episodes)
      loop.collect_episodes(env, planner, seeds, tmp / f"round_{j:02d}", dims, acfg, pcfg,
                            [{"seed": s, "round": j} for s in seeds], [None] * len(seeds), lambda *a: None)
      episodes.extend(rec.load_episodes(tmp / f"round_{j:02d}", dims)[0])
      steps = int(acfg.finetune_steps) * j
      variables, metrics, _ = loop.finetune_on_episodes(cfg, variables0, variables0, episodes, H, T, steps,
                                                        *loop.round_keys(seed, j), wd, label=f"sim round {j}")
      if float(metrics.get("finetune/nonfinite", 0.0)):
        raise SystemExit(f"sim round {j}: non-finite finetuning loss")
      row.update({"episodes": len(episodes), "finetune_steps": steps})
    planner.set_variables(variables)
    for n, s in eval_seeds.items():
      rets = _returns(env, planner, s)
      ci = evaluation.paired_bootstrap_ci(rets, head_rets[n])
      row.update({f"{n}/planner": float(np.mean(rets)), f"{n}/planner_minus_head": ci})
    row.update(instrument(variables))
    row["wall_s"] = time.perf_counter() - t0
    out["rounds"].append(row)
    print(f"round {j} ({row['episodes']} sim planner episodes): "
          + ", ".join(f"{n} planner {row[f'{n}/planner']:.1f} - head {out['head'][n]:.1f} = "
                      f"{row[f'{n}/planner_minus_head']['diff']:+.1f} [{row[f'{n}/planner_minus_head']['lo']:+.1f}, "
                      f"{row[f'{n}/planner_minus_head']['hi']:+.1f}]" for n in eval_seeds)
          + "".join(f"; {k} {v:.3f}" for k, v in row.items() if "_states/" in k)
          + f" ({row['wall_s']:.0f}s)", flush=True)
    if args.out:
      pathlib.Path(args.out).write_text(json.dumps(out, indent=2))
  shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
