"""Counterfactual latent loss and chunk ranking of several world-model checkpoints on the same restored real states.

For each model: the held-out real episodes of the run are replayed in the twin; at evenly spaced states K perturbed
chunks (sigma) are rolled out; printed side by side: latent loss over persistence, and the Spearman correlation (mean
over states) of the planner's returns on predicted latents against the frozen heads on the true futures.

  python benchmarks/counterfactual_ranking.py --workdir runs/s0_v2 --models world_model,adapt/rounds/round_01/model

With `--world sim --record 4` the episodes are instead recorded first in the sim twin (a domain drawn from the DR
ranges per episode) with the first model's planner: the same instrument where there is no dynamics gap, i.e. the
ranking the pretrained model reaches in its own world (what finetuning could at best restore in the real world).

With `--record-with oracle` the recorded episodes are the oracle's (MPPI with the candidates rolled out in the true
simulator of --world and scored by the first model's frozen heads, `simdist_jax.analysis.oracle`): the states a
plan that works passes through. A finetuned model that is accurate on its own planner's states but not on these
has a coverage problem (its real data never visits where success lies), not an accuracy problem.

  python benchmarks/counterfactual_ranking.py --workdir runs/f1 --record 4 --record-with oracle \
      --models world_model,adapt/rounds/round_04/model
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import recorder as rec
from simdist_jax.analysis import oracle as oracle_lib
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Parses the flags and prints one line per checkpoint."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--models", default="world_model", help="comma-separated checkpoint dirs relative to workdir")
  ap.add_argument("--world", default="real", choices=("sim", "real"))
  ap.add_argument("--sigma", type=float, default=0.3)
  ap.add_argument("--points", type=int, default=20)
  ap.add_argument("--chunks", type=int, default=8)
  ap.add_argument("--record", type=int, default=0,
                  help="record this many episodes in --world with the first model's planner instead of using the "
                       "run's held-out real episodes")
  ap.add_argument("--record-with", default="planner", choices=("planner", "oracle"),
                  help="who acts in the recorded episodes: the first model's planner, or the oracle (true "
                       "simulator of --world, the first model's frozen heads)")
  args = ap.parse_args()
  if args.record_with == "oracle" and not args.record:
    ap.error("--record-with oracle needs --record N (the episodes to record)")
  wd = pathlib.Path(args.workdir)
  cfg = config_lib.from_json((wd / "config.json").read_text())
  task = make_task(cfg)
  env = make_real_env(cfg, args.world)
  held = None if args.record else rec.load_episodes(paths.adapt_dir(wd) / "heldout", task.dims)[0]
  first = None
  for name in args.models.split(","):
    variables, _, dims = ckpt_lib.load(str(wd / name))
    wm = model_lib.make_world_model(cfg.model, dims)
    pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=wm.spec.horizon)
    if held is None:
      if args.record_with == "oracle":
        mjx_env = MjxEnv(task, make_domain(cfg, args.world, task), sim_domain=make_domain(cfg, "sim", task))
        ctrl = oracle_lib.OracleController(pcfg, wm, variables, env, mjx_env, "heads", jax.random.PRNGKey(0))
      else:
        ctrl = evaluation.model_controller(pcfg, wm, variables, dims, jax.random.PRNGKey(0))
      held = evaluation.record_episodes(env, ctrl, dims, [90_000 + i for i in range(args.record)],
                                        wd / "_ranking_episodes")
      shutil.rmtree(wd / "_ranking_episodes", ignore_errors=True)
    if first is None:
      rng = np.random.default_rng(0)
      first = [evaluation.counterfactual_windows(env, ep, wm.spec.history, wm.spec.horizon, args.sigma, args.points,
                                                 rng, pcfg.action_low, pcfg.action_high, args.chunks) for ep in held]
    cf = evaluation.counterfactual_losses(wm, variables, first, pcfg)
    print(f"{name:40s} latent loss / persistence {cf['model'].mean() / cf['persistence'].mean():.3f}  "
          f"/ action-blind {cf['model'].mean() / cf['action_blind'].mean():.3f}  "
          f"action-effect error {cf['effect_error']:.3f}  "
          f"return rank corr. vs true futures {cf['return_spearman']:+.3f}", flush=True)


if __name__ == "__main__":
  main()
