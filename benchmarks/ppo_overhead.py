"""Where PPO's time goes: brax PPO env steps/s with our env and wrappers, with brax's own wrappers, and on a minimal
cart-pole model, side by side in one run, each split into env stepping and the rest (policy, GAE, SGD).

Usage: python benchmarks/ppo_overhead.py [--preset small] [--iterations 40] [--epochs 4] [--json FILE]

Rows (the same task code, PPO hyperparameters and networks from `cfg.expert`, the same seed):

  ours             `make_env(cfg, "sim")` + `wrap_for_training`: what `simdist-jax expert` trains (a fresh domain and
                   initial state at every auto-reset)
  brax wrappers    the same env + brax's `envs.wrappers.training.wrap` (its auto-reset restores each env's first
                   state and keeps its domain for the whole run: timing only, not the science)
  minimal model    brax's wrappers on the same task with the MJCF stripped to a minimal MJX cart-pole (no
                   friction-loss row, no joint limits, one physics step per control step; `env_overhead.py` rows
                   1a-1c): timing only

Per row: `training/sps` of the steady epochs (compile and the first epoch excluded); the env alone, the same
wrapped env stepped `num_envs x unroll_length` times with random actions in one jitted scan (best of 3); and the
share of a PPO iteration the env accounts for (iteration time at the PPO rate vs env time at the env rate). The
remainder is the policy's forward passes, GAE and the `num_updates_per_batch x num_minibatches` SGD steps.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's simdist_jax

import jax  # noqa: E402
from brax.envs.wrappers import training as brax_wrappers  # noqa: E402
from brax.training.agents.ppo import train as brax_ppo  # noqa: E402

from simdist_jax import compat  # noqa: E402
from simdist_jax.config import load_config  # noqa: E402
from simdist_jax.envs.base import MjxEnv  # noqa: E402
from simdist_jax.envs.registry import make_domain, make_env, make_task  # noqa: E402
from simdist_jax.experts import ppo  # noqa: E402

from env_overhead import stripped_mj_model, timed  # noqa: E402  (this directory's sibling script)


class _MinimalModel:
  """A task proxy whose `mj_model()` is the task's MJCF without the friction-loss row and the joint limits, with the
  timestep equal to the control period (one physics step per control step); everything else is the task's."""

  def __init__(self, task):
    self._task = task

  def __getattr__(self, name):
    return getattr(self._task, name)

  def mj_model(self):
    m = self._task.mj_model()
    return stripped_mj_model(m, friction=False, limits=False, substeps=round(self._task.ctrl_dt / m.opt.timestep))


def _env_rate(wrapped, num_envs: int, unroll: int, repeats: int = 3) -> float:
  """Env steps/s of `wrapped` (batched) stepped `unroll` times with random actions in one jitted scan."""
  state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))

  @jax.jit
  def run(s, key):
    acts = jax.random.uniform(key, (unroll, num_envs, wrapped.action_size), minval=-1.0, maxval=1.0)
    return jax.lax.scan(lambda s, a: (wrapped.step(s, a), None), s, acts)[0]

  return timed(run, state, unroll, num_envs, repeats)[0]


def _ppo_rate(env, kwargs: dict, iterations: int, epochs: int, steps_per_it: int) -> tuple[float, float]:
  """(steady PPO env steps/s, compile + first epoch s) of a short brax PPO run."""
  marks = []

  def progress(step, metrics):
    if "training/sps" in metrics:
      marks.append((time.time(), float(metrics["training/sps"])))

  t0 = time.time()
  brax_ppo.train(env, num_timesteps=iterations * steps_per_it, num_evals=epochs + 1, seed=0, progress_fn=progress,
                 **kwargs)
  steady = [sps for _, sps in marks[1:]]
  return (sum(steady) / len(steady) if steady else float("nan")), marks[0][0] - t0


def main() -> None:
  """Prints one table, one row per variant."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--preset", default="small")
  ap.add_argument("--iterations", type=int, default=40, help="PPO iterations per row (num_envs * unroll steps each)")
  ap.add_argument("--epochs", type=int, default=4, help="timing points over each row's run (the first is dropped)")
  ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
  args = ap.parse_args()
  if args.iterations < 2 or args.epochs < 2 or args.iterations % args.epochs:
    ap.error("--iterations and --epochs must be >= 2, --iterations a multiple of --epochs")
  compat.install()
  spec = str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs" / "cartpole.py")
  cfg = load_config(f"{spec}:{args.preset}", [f"expert.num_iterations={args.iterations}",
                                              "expert.checkpoint_iterations=()"])  # no ladder in a short run
  e, L = cfg.expert, int(cfg.env.episode_length)
  num_envs, unroll = int(e.num_envs), int(e.unroll_length)
  steps_per_it = ppo.env_steps_per_iteration(e)
  base_kwargs = ppo.ppo_kwargs(cfg)
  base_kwargs["log_training_metrics"] = False
  ours = make_env(cfg, "sim")
  task = make_task(cfg)
  minimal = MjxEnv(_MinimalModel(task), make_domain(cfg, "sim", task))
  variants = [("ours", ours, base_kwargs["wrap_env_fn"]), ("brax wrappers", ours, brax_wrappers.wrap),
              ("minimal model", minimal, brax_wrappers.wrap)]
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind}; jax {jax.__version__}; {num_envs} envs x unroll {unroll} = "
        f"{steps_per_it:,} env steps/iteration, {args.iterations} iterations per row, "
        f"{int(e.num_updates_per_batch)} x {int(e.num_minibatches)} SGD steps per iteration")
  print(f"{'variant':<16}{'PPO steps/s':>13}{'env alone':>12}{'env share':>11}{'first epoch s':>15}")
  res = {"device": dev.device_kind, "preset": args.preset, "steps_per_iteration": steps_per_it, "rows": {}}
  for name, env, wrap in variants:
    kwargs = dict(base_kwargs, wrap_env_fn=wrap)
    env_sps = _env_rate(wrap(env, episode_length=L), num_envs, unroll)
    ppo_sps, first = _ppo_rate(env, kwargs, args.iterations, args.epochs, steps_per_it)
    share = ppo_sps / env_sps  # (steps / env_sps) / (steps / ppo_sps)
    res["rows"][name] = {"ppo_env_steps_per_s": ppo_sps, "env_steps_per_s": env_sps, "env_share": share,
                         "first_epoch_s": first}
    print(f"{name:<16}{ppo_sps:>13,.0f}{env_sps:>12,.0f}{share:>11.0%}{first:>15.1f}", flush=True)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
  main()
