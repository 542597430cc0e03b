"""How well does a world model rank action chunks? Predicted vs true chunk returns in the MuJoCo C twin.

For states visited by the policy head (world model's base policy) in the C twin, sample N action chunks
a_{t:t+h} = policy_chunk + sigma * eps, score each with the model (the planner's discounted return) and with the
simulator (sum_k gamma^k r_{t+k} from the true rollout + gamma^h V^e(s_{t+h}), V^e the expert critic: the value
labels the model was trained on). Prints, per sigma, the mean Spearman rank correlation over states and the
true-return regret of the model's argmax vs the best sample and vs the noise-free policy chunk. The study itself
is `simdist_jax.analysis.ranking.ranking_study`; this script loads a run, calls it and prints.

  python benchmarks/planner_ranking.py --workdir runs/cartpole_small [--model DIR] [--domain sim|real]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.analysis import ranking
from simdist_jax.envs.registry import make_real_env
from simdist_jax.experts.checkpoints import load_critic
from simdist_jax.planner import mppi
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Parses the command line, runs the study and prints its tables."""
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="run directory (config.json, expert/, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default: <workdir>/world_model)")
  ap.add_argument("--domain", default="sim", choices=("sim", "real"))
  ap.add_argument("--seeds", default="1000", help="comma-separated episode seeds")
  ap.add_argument("--every", type=int, default=10, help="probe every k-th step of the episode")
  ap.add_argument("--samples", type=int, default=32)
  ap.add_argument("--sigmas", default="0.05,0.3,1.0")
  ap.add_argument("--horizon", type=int, default=None, help="planning horizon h <= T (default: the config's)")
  args = ap.parse_args()

  workdir = pathlib.Path(args.workdir)
  cfg = config_lib.from_json((workdir / "config.json").read_text())
  mdir = args.model or str(paths.model_dir(workdir))
  variables, _, dims = ckpt_lib.load(mdir)
  wm = model_lib.make_world_model(cfg.model, dims)
  planner_section = cfg.planner.to_dict()
  if args.horizon is not None:
    planner_section["horizon"] = args.horizon
  pcfg = mppi.PlannerConfig.from_config(planner_section, model_horizon=wm.spec.horizon)
  critic_params, critic_fn = load_critic(paths.expert_dir(workdir))
  critic = jax.jit(critic_fn)
  sigmas = [float(s) for s in args.sigmas.split(",")]
  res = ranking.ranking_study(make_real_env(cfg, args.domain), wm, variables, dims, pcfg,
                              lambda x: critic(critic_params, x), [int(x) for x in args.seeds.split(",")],
                              int(cfg.env.episode_length), every=args.every, samples=args.samples, sigmas=sigmas)
  print(f"model {mdir}, domain {args.domain}, policy-head episode return {res['episode_return']:.1f}, "
        f"h={pcfg.horizon}")
  print("Spearman rank correlations with the simulator (mean over probed states); reward = discounted reward sum"
        " over h, value = V at step h; 'on true z' = the heads applied to E(o_{t+1..t+h}) of the TRUE rollout;"
        " regret / gain in true-return units")
  print("sigma  return  reward  value  reward(true z)  value(true z)  z_h R2  regret(argmax vs best)  "
        "gain(argmax vs prior)")
  out = res["per_sigma"]
  for sigma in sigmas:
    o = out[sigma]
    print(f"{sigma:5.2f}  {o['rho']:6.3f}  {o['rho_reward']:6.3f}  {o['rho_value']:5.3f}  "
          f"{o['rho_reward_on_true_z']:14.3f}  {o['rho_value_on_true_z']:13.3f}  {o['z_r2']:6.3f}  "
          f"{o['regret_best']:22.3f}  {o['gain_vs_prior']:21.3f}")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
