"""Counterfactual latent loss and chunk ranking of several world-model checkpoints on the same restored real states.

For each model: the held-out real episodes of the run are replayed in the twin; at evenly spaced states K perturbed
chunks (sigma) are rolled out; printed side by side: latent loss over persistence, and the Spearman correlation (mean
over states) of the planner's returns on predicted latents against the frozen heads on the true futures.

  python benchmarks/counterfactual_ranking.py --workdir runs/s0_v2 --models world_model,adapt/rounds/round_01/model
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import recorder as rec
from simdist_jax.envs.registry import make_real_env, make_task
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
  args = ap.parse_args()
  wd = pathlib.Path(args.workdir)
  cfg = config_lib.from_json((wd / "config.json").read_text())
  task = make_task(cfg)
  env = make_real_env(cfg, args.world)
  held, _ = rec.load_episodes(paths.adapt_dir(wd) / "heldout", task.dims)
  first = None
  for name in args.models.split(","):
    variables, _, dims = ckpt_lib.load(str(wd / name))
    wm = model_lib.make_world_model(cfg.model, dims)
    pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=wm.spec.horizon)
    if first is None:
      rng = np.random.default_rng(0)
      first = [evaluation.counterfactual_windows(env, ep, wm.spec.history, wm.spec.horizon, args.sigma, args.points,
                                                 rng, pcfg.action_low, pcfg.action_high, args.chunks) for ep in held]
    cf = evaluation.counterfactual_losses(wm, variables, first, pcfg)
    print(f"{name:40s} latent loss / persistence {cf['model'].mean() / cf['persistence'].mean():.3f}  "
          f"return rank corr. vs true futures {cf['return_spearman']:+.3f}", flush=True)


if __name__ == "__main__":
  main()
