"""PPO training throughput (env steps/s) on CartPole with the expert's brax PPO setup; prints the device.

Usage: python benchmarks/ppo_throughput.py [--preset small|paper] [--iterations 40] [--num_envs N]

Runs `brax ppo.train` (our wrapper, networks and hyperparameters from `cfg.expert`) for a short run and reports
the compile+first-epoch time and the steady-state env steps/s of the remaining epochs (brax's `training/sps`).
"""

import argparse
import time

import jax
from brax.training.agents.ppo import train as brax_ppo

from simdist_jax import compat
from simdist_jax.config import load_config
from simdist_jax.envs.registry import make_env
from simdist_jax.experts import ppo


def main() -> None:
  """Prints PPO env steps/s."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--preset", default="small")
  ap.add_argument("--iterations", type=int, default=40, help="PPO iterations (num_envs * unroll_length steps each)")
  ap.add_argument("--epochs", type=int, default=4, help="callbacks (timing points) over the run")
  ap.add_argument("--num_envs", type=int, default=0, help="override expert.num_envs (0: preset value)")
  args = ap.parse_args()
  compat.install()
  overrides = [f"expert.num_iterations={args.iterations}", "expert.checkpoint_iterations=()"]  # no ladder in a short run
  if args.num_envs:
    overrides.append(f"expert.num_envs={args.num_envs}")
  cfg = load_config(f"experiments/configs/cartpole.py:{args.preset}", overrides)
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind} (jax {jax.__version__}, {jax.device_count()} device(s))")
  steps_per_it = ppo.env_steps_per_iteration(cfg.expert)
  marks = []

  def progress(step, metrics):
    if "training/sps" in metrics:
      marks.append((time.time(), int(step), float(metrics["training/sps"])))

  kwargs = ppo.ppo_kwargs(cfg)
  kwargs["log_training_metrics"] = False
  t0 = time.time()
  brax_ppo.train(make_env(cfg, "sim"), num_timesteps=args.iterations * steps_per_it, num_evals=args.epochs + 1,
                 seed=0, progress_fn=progress, **kwargs)
  first = marks[0][0] - t0
  steady = [sps for _, _, sps in marks[1:]]
  print(f"num_envs {cfg.expert.num_envs} x unroll {cfg.expert.unroll_length} = {steps_per_it:,} env steps/iteration; "
        f"{args.iterations} iterations")
  print(f"compile + first epoch: {first:.1f} s")
  if steady:
    print(f"steady state: {sum(steady) / len(steady):,.0f} env steps/s (per epoch: "
          f"{', '.join(f'{s:,.0f}' for s in steady)})")


if __name__ == "__main__":
  main()
