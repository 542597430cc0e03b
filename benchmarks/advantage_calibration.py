"""Is the planner's predicted advantage over its policy head calibrated? The instrument behind `advantage_gate`.

At every `--every`-th control step of closed-loop episodes (in the MuJoCo C twin of `--world`), the deployed
planner searches as usual; its emitted plan and the noise-free policy-head chunk pi are then scored three ways
from the twin's exact state:

  predicted  the world model: A_pred = R_hat(plan) - R_hat(pi) (what the planner believes; `planner/
             predicted_advantage`),
  heads      the same frozen reward/value heads on the encoder of the TRUE future observations (oracle (d) in sim,
             (a) in the real world): A_heads, the advantage perfect dynamics would have predicted,
  critic     the true rewards over h steps + the expert critic V^e at s_{t+h} (its privileged input holds the
             episode's own domain parameters in sim and the sim-nominal ones in the real world): A_critic.

If the planner's losses to its head come from confident errors, large A_pred will be no more often right than
small ones; if they come from flat, noisy predictions, the sign agreement will rise with A_pred, and a gate that
applies the plan only for A_pred >= m keeps its gains. The table prints, per margin m, the share of states whose
gate opens and the mean true advantage collected over all states (A_true where open, 0 where pi is applied): a
one-step proxy of the gated planner's gain over its head. Episodes are driven by the planner (`--drive planner`)
or by the head with the planner probing alongside (`--drive head`).

  python benchmarks/advantage_calibration.py --workdir runs/f1 --world sim --episodes 4 --every 5 \
      --out runs/advantage_f1.json

Episode seeds default to the instrument seeds of benchmarks/sim_onpolicy.py (S*100000+70000+i), disjoint from
the selection (60000) and fresh (80000) evaluation sets.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.analysis import calibration
from simdist_jax.analysis import run_dir
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_real_env
from simdist_jax.experts import checkpoints as expert_ckpt

def main() -> None:
  """Parses the flags, probes the episodes, prints the calibration table, writes `--out`."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  run_dir.add_probe_args(ap, every=5)
  ap.add_argument("--world", default="sim", choices=("sim", "real"))
  ap.add_argument("--drive", action="append", default=[], choices=("planner", "head"),
                  help="which controller's actions are applied (repeatable; default both)")
  args = ap.parse_args()
  if args.episodes < 1 or args.every < 1:
    raise SystemExit("advantage_calibration: --episodes and --every must be >= 1")

  wd = pathlib.Path(args.workdir)
  run = run_dir.load(wd, args.model)
  cfg, task, variables, dims, wm, pcfg_probe = run
  real_env = make_real_env(cfg, args.world)
  mjx_env = MjxEnv(task, make_domain(cfg, args.world, task), sim_domain=make_domain(cfg, "sim", task))
  critic_params, critic_apply = expert_ckpt.load_critic(paths.expert_dir(wd))
  # In sim the critic reads the episode's own domain (its training distribution); in the real world the
  # sim-nominal one (it never saw real parameters).
  priv = (None, None) if args.world == "sim" else (mjx_env.sim_domain.nominal(), mjx_env.sim_domain)
  pair_fn = calibration.make_pair_scores(pcfg_probe, wm, mjx_env, critic_apply, *priv)
  seeds = run_dir.probe_seeds(run, args.seed_base, args.episodes)
  out: dict = {"workdir": str(wd), "world": args.world, "seeds": seeds, "planner": pcfg_probe.__dict__}
  for drive in args.drive or ["planner", "head"]:
    planner = evaluation.model_controller(pcfg_probe, wm, variables, dims, key=jax.random.PRNGKey(0))
    head = evaluation.model_controller(pcfg_probe, wm, variables, dims, key=jax.random.PRNGKey(0), policy_only=True)
    probe = calibration.Probe(planner, head, real_env, pair_fn, critic_params, args.every, drive)
    returns = run_dir.run_probed(real_env, probe, seeds, drive)
    summ = calibration.summarize(probe.rows)
    out[drive] = {"returns": returns, "rows": probe.rows, "summary": summ}
    print(f"\n[{drive}-driven, {args.world}] {summ['n_states']} states; corr(A_pred, A_heads) "
          f"{summ['heads/corr']:+.2f}, corr(A_pred, A_critic) {summ['critic/corr']:+.2f}; sign agreement "
          f"{summ['heads/sign_agreement']:.2f} / {summ['critic/sign_agreement']:.2f}; mean true advantage of the plan "
          f"{summ['heads/mean_true_advantage']:+.4f} / {summ['critic/mean_true_advantage']:+.4f}")
    print("  A_pred quintile: mean A_pred | A_heads | A_critic")
    for i in range(5):
      print(f"    {i}: {summ[f'bins/{i}/pred']:+.4f} | {summ[f'bins/{i}/heads']:+.4f} | {summ[f'bins/{i}/critic']:+.4f}")
    print("  margin m: open share | gain (heads) | right when open (heads) | gain (critic) | right (critic)")
    for m in calibration.MARGINS:
      print(f"    {m:5g}: {summ[f'heads/margin_{m:g}/open']:.2f} | {summ[f'heads/margin_{m:g}/gain']:+.4f} | "
            f"{summ[f'heads/margin_{m:g}/right_when_open']:.2f} | {summ[f'critic/margin_{m:g}/gain']:+.4f} | "
            f"{summ[f'critic/margin_{m:g}/right_when_open']:.2f}", flush=True)
    if args.out:
      config_lib.atomic_write_text(args.out, json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
