"""Where the MJX env's time goes: env steps/s layer by layer, side by side in one run.

Usage: python benchmarks/env_overhead.py [--config experiments/configs/cartpole.py:small] [--batch 256]
                                         [--steps 200] [--repeats 3] [--json FILE]

Every row steps the same task model (the env's own MJCF, solver options and substeps) at `--batch` envs with
random actions in one jitted `lax.scan`, and adds one layer of what `MjxEnv` does per control step:

  1. mjx.step only     `data.replace(ctrl=a)` and `n_substeps` x `mjx.step` on the nominal model (a minimal env)
  2. + episode model   the same on `env.model_for(params)`: this episode's domain fields written into the model
                       every control step (per-episode DR; the model is batched, one per env)
  3. + task            `MjxEnv.step`: action checks, `action_to_ctrl`, observation (noise included), reward,
                       termination, metrics
  4. + wrappers        `wrap_for_training`: episode counter and the auto-reset `cond` (what PPO and
                       `benchmarks/env_throughput.py` step)

and then, on the same harness as row 1 (the nominal model, no task), what the model itself costs: the same MJCF
with its constraint rows removed one by one, down to a minimal MJX cart-pole:

  1a. no friction row   `dof_frictionloss = 0` (the hinge's friction-loss row; MJX then allocates no row for it)
  1b. no constraints    also `jnt_limited = 0` (the slider's limit rows): no constraint rows at all
  1c. minimal           also one physics step per control step (the timestep = the control period), as the usual
                        minimal MJX cart-pole has

The ratio column is each row's time per step over row 1's. Compile time is excluded; best of `--repeats` runs
(robust to a shared machine). The 1a-1c variants are for timing only: the task needs its friction row (the
backends' agreement, `CartPole.validate_domain`), its rail limits and its substeps.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's simdist_jax

import jax  # noqa: E402
from mujoco import mjx  # noqa: E402

from simdist_jax import config as config_lib  # noqa: E402
from simdist_jax.envs.registry import make_env  # noqa: E402
from simdist_jax.envs.wrappers import wrap_for_training  # noqa: E402


def timed(run, carry, steps: int, batch: int, repeats: int) -> tuple[float, float]:
  """(env steps/s, compile s; also `ppo_overhead.py`'s) of `run(carry, key)`: `steps` scanned control steps of `batch` envs."""
  t0 = time.perf_counter()
  carry = jax.block_until_ready(run(carry, jax.random.key(1)))
  compile_s = time.perf_counter() - t0
  best = float("inf")
  for r in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(run(carry, jax.random.key(2 + r)))
    best = min(best, time.perf_counter() - t0)
  return batch * steps / best, compile_s


def stripped_mj_model(mj_model, friction: bool = True, limits: bool = True, substeps: int = 1, n: int = 1):
  """A copy of `mj_model` without the friction-loss rows (`friction=False`), without joint limits (`limits=False`)
  and with `n` physics steps per control step instead of `substeps` (the timestep scaled so that the control period
  stays the same); rows 1a-1c here, the minimal model of `ppo_overhead.py`."""
  m = copy.deepcopy(mj_model)
  if not friction:
    m.dof_frictionloss[:] = 0.0
  if not limits:
    m.jnt_limited[:] = 0
  m.opt.timestep = mj_model.opt.timestep * substeps / n
  return m


def _stripped(mj_model, data, actions, substeps: int, friction: bool = True, limits: bool = True, n: int = 1):
  """(jitted scan, initial data) of row 1's harness on `stripped_mj_model(...)`. The batch starts from `data`'s
  positions and velocities in fresh data of the stripped model (its constraint arrays have other sizes)."""
  mx = mjx.put_model(stripped_mj_model(mj_model, friction, limits, substeps, n))
  d0 = jax.jit(jax.vmap(lambda q, v: mjx.make_data(mx).replace(qpos=q, qvel=v)))(data.qpos, data.qvel)

  def physics(d, a):
    d = d.replace(ctrl=a)
    return jax.lax.scan(lambda d, _: (mjx.step(mx, d), None), d, None, length=n)[0]

  @jax.jit
  def run(d, key):
    return jax.lax.scan(lambda d, a: (jax.vmap(physics)(d, a), None), d, actions(key))[0]

  return run, d0


def main() -> None:
  """Prints one table, one row per layer."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default=str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
                                          / "cartpole.py") + ":small")
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
  args = ap.parse_args()
  if args.batch < 1 or args.steps < 1 or args.repeats < 1:
    ap.error("--batch, --steps and --repeats must be >= 1")
  cfg = config_lib.load_config(args.config)
  env = make_env(cfg, "sim")
  base = getattr(env, "unwrapped", env)
  B, N, A, S = args.batch, args.steps, base.action_size, base.n_substeps
  # Raw uint32 keys, as `generate` and PPO start the env (its auto-reset splits them per env).
  state = jax.jit(jax.vmap(base.reset))(jax.random.split(jax.random.PRNGKey(0), B))
  params = state.info["domain"]
  nominal = mjx.put_model(base.mj_model)

  def actions(key):
    return jax.random.uniform(key, (N, B, A), minval=-1.0, maxval=1.0)

  def physics(model, data, a):
    data = data.replace(ctrl=a)
    return jax.lax.scan(lambda d, _: (mjx.step(model, d), None), data, None, length=S)[0]

  @jax.jit
  def minimal(data, key):
    step = jax.vmap(lambda d, a: physics(nominal, d, a))
    return jax.lax.scan(lambda d, a: (step(d, a), None), data, actions(key))[0]

  @jax.jit
  def episode_model(data, key):
    step = jax.vmap(lambda p, d, a: physics(base.model_for(p), d, a))
    return jax.lax.scan(lambda d, a: (step(params, d, a), None), data, actions(key))[0]

  @jax.jit
  def task(s, key):
    return jax.lax.scan(lambda s, a: (jax.vmap(base.step)(s, a), None), s, actions(key))[0]

  wrapped = wrap_for_training(base, episode_length=int(cfg.env.episode_length))
  wstate = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), B))

  @jax.jit
  def wrappers(s, key):
    return jax.lax.scan(lambda s, a: (wrapped.step(s, a), None), s, actions(key))[0]

  rows = [("1. mjx.step only", minimal, state.pipeline_state), ("2. + episode model", episode_model,
                                                                  state.pipeline_state),
          ("3. + task", task, state), ("4. + wrappers", wrappers, wstate)]
  rows += [(name, *_stripped(base.mj_model, state.pipeline_state, actions, S, **kw)) for name, kw in (
      ("1a. no friction row", {"friction": False, "n": S}),
      ("1b. no constraints", {"friction": False, "limits": False, "n": S}),
      ("1c. minimal", {"friction": False, "limits": False, "n": 1}))]
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind}; jax {jax.__version__}; task {cfg.task}, batch {B}, {N} control "
        f"steps x {S} substeps, best of {args.repeats}")
  print(f"{'layer':<22}{'env steps/s':>14}{'time / row 1':>14}{'compile s':>11}")
  res = {"device": dev.device_kind, "task": cfg.task, "batch": B, "steps": N, "substeps": S, "rows": {}}
  first = None
  for name, run, carry in rows:
    sps, comp = timed(run, carry, N, B, args.repeats)
    first = first or sps
    res["rows"][name] = {"env_steps_per_s": sps, "time_over_minimal": first / sps, "compile_s": comp}
    print(f"{name:<22}{sps:>14,.0f}{first / sps:>14.2f}{comp:>11.1f}", flush=True)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
  main()
