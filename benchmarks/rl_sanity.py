"""The SAC core of the RL baselines on its own (issue 20's sanity check): CartPole swing-up in the sim domain from
scratch (no sim data, no BC), one stochastic episode at a time, the deterministic actor's return on fixed sim seeds
every few episodes, printed as a curve beside the run's expert.

  python benchmarks/rl_sanity.py --config experiments/configs/cartpole.py:small --episodes 80 \
      --set num_critics=2 --set critic_subset=2 --set utd=2

`--set k=v` overrides `baselines.rlpd.<k>` (e.g. plain SAC: 2 critics, both in the target).
"""

from __future__ import annotations

import argparse
import json

import jax.numpy as jnp
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax.adapt.loop import eval_seeds
from simdist_jax.baselines import rlpd
from simdist_jax.baselines import sac
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Runs `rlpd.learn_online` in the sim domain and prints the curve."""
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--config", required=True)
  ap.add_argument("--episodes", type=int, default=80)
  ap.add_argument("--eval-every", type=int, default=10)
  ap.add_argument("--eval-episodes", type=int, default=10)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--set", action="append", default=[], dest="sets")
  ap.add_argument("--out", default="", help="write the curve as JSON here")
  args = ap.parse_args()
  cfg = config_lib.load_config(args.config, [f"baselines.rlpd.{s}" for s in args.sets] + ["baselines.rlpd.sim_share=0.0"])
  task = make_task(cfg)
  dims = task.dims
  spec = model_lib.make_spec(cfg.model, dims)
  rcfg = rlpd.RLPDConfig.from_config(cfg.baselines.rlpd)
  nets = sac.make_nets(spec, rcfg.sac)
  scaler = model_lib.identity_scaler(dims)
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=spec.horizon)
  low = jnp.broadcast_to(jnp.asarray(pcfg.action_low, jnp.float32), (spec.action,))
  high = jnp.broadcast_to(jnp.asarray(pcfg.action_high, jnp.float32), (spec.action,))
  env = make_real_env(cfg, "sim")
  print(f"SAC core from scratch in the sim domain: {rcfg}")
  curve = rlpd.learn_online(nets, rcfg, scaler, env, low, high, args.episodes, args.eval_every,
                            eval_seeds(args.seed, args.eval_episodes), args.seed)
  print("episodes | env steps | deterministic return (mean +- std over the fixed sim seeds) | wall s")
  for row in curve:
    print(f"{row['episodes']:8d} | {row['env_steps']:9d} | {row['return_mean']:7.1f} +- {row['return_std']:5.1f} | "
          f"{row['wall_s']:6.0f}")
  best = max(curve, key=lambda r: r["return_mean"])
  print(f"best {best['return_mean']:.1f} at {best['episodes']} episodes; final {curve[-1]['return_mean']:.1f}; "
        f"random-actor start {curve[0]['return_mean']:.1f} (mean {np.mean([r['return_mean'] for r in curve]):.1f})")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"config": str(rcfg), "curve": curve}, f, indent=2)


if __name__ == "__main__":
  main()
