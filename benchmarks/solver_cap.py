"""CartPole MJX throughput with the shipped solver caps vs MuJoCo's default solver options, side by side in one run.

The CartPole MJCF caps the constraint solver at 4 iterations / 16 line-search steps (`simdist_jax/envs/cartpole.py`,
`CartPole(solver_iterations=4, solver_ls_iterations=16)`). This script builds the same env twice, once as shipped
and once with MuJoCo's defaults (100 iterations, 50 line-search steps), runs the same random actions from the same
states, and prints env steps/s (compile excluded) and the largest observation difference between the two.

Usage: python benchmarks/solver_cap.py [--batch 256] [--steps 200]
"""

import argparse
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax.envs import cartpole
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_task
from simdist_jax.envs.wrappers import wrap_for_training

SHIPPED = (4, 16)     # (iterations, ls_iterations) of the shipped CartPole
DEFAULTS = (100, 50)  # MuJoCo's defaults


def make_sim_env(cfg, iterations: int, ls_iterations: int) -> MjxEnv:
  """The config's CartPole sim env with the given constraint-solver caps (everything else as shipped)."""
  shipped = make_task(cfg)
  task = cartpole.CartPole(ctrl_dt=shipped.ctrl_dt, init_noise=shipped.init_noise,
                           init_cart_range=shipped.init_cart_range, init_angle_range=shipped.init_angle_range,
                           solver_iterations=iterations, solver_ls_iterations=ls_iterations)
  return MjxEnv(task, make_domain(cfg, "sim", task), sim_domain=make_domain(cfg, "sim", task))


def measure(cfg, iterations: int, ls_iterations: int, batch: int, steps: int) -> tuple[float, float, np.ndarray]:
  """-> (env steps/s, compile seconds, observations [steps, batch, ...]) of random actions."""
  env = wrap_for_training(make_sim_env(cfg, iterations, ls_iterations), episode_length=cfg.env.episode_length)

  @jax.jit
  def run(state, key):
    def body(s, k):
      a = jax.random.uniform(k, (batch, env.action_size), minval=-1, maxval=1)
      s = env.step(s, a)
      return s, s.obs["state"] if isinstance(s.obs, dict) else s.obs
    return jax.lax.scan(body, state, jax.random.split(key, steps))

  state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
  t0 = time.perf_counter()
  jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  _, obs = jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
  return batch * steps / (time.perf_counter() - t0), compile_s, np.asarray(obs)


def main() -> None:
  """Measures both solver settings and prints the comparison."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--steps", type=int, default=200)
  args = ap.parse_args()
  cfg = config_lib.load_config("experiments/configs/cartpole.py:small")
  opt = make_task(cfg).mj_model().opt
  if (opt.iterations, opt.ls_iterations) != SHIPPED:
    raise SystemExit(f"the shipped CartPole solver caps are {(opt.iterations, opt.ls_iterations)}, not {SHIPPED}; "
                     "update this benchmark")
  shipped = measure(cfg, *SHIPPED, args.batch, args.steps)
  defaults = measure(cfg, *DEFAULTS, args.batch, args.steps)
  print(f"device: {jax.devices()[0].platform} {jax.devices()[0].device_kind}; jax {jax.__version__}; CartPole MJX, "
        f"batch {args.batch}, {args.steps} steps of random actions")
  print("solver options                     env steps/s   compile s")
  print(f"shipped (4 it / 16 line search)   {shipped[0]:12,.0f}   {shipped[1]:9.1f}")
  print(f"MuJoCo defaults (100 / 50)        {defaults[0]:12,.0f}   {defaults[1]:9.1f}")
  print(f"speed-up {shipped[0] / defaults[0]:.2f}x; max |obs difference| over the rollout "
        f"{np.abs(shipped[2] - defaults[2]).max():.2e}")


if __name__ == "__main__":
  main()
