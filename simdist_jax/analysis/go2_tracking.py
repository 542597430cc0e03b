"""Go2 expert diagnostics in the MuJoCo C twin: flat-ground tracking and policies on the privileged observation.

* `make_policy(expert_dir, k, cfg)`: the deterministic expert (tanh(mean)) of ladder checkpoint k as
  `policy(obs) -> action [12]`, fed `obs["privileged_state"]`.
* `masked(policy, cfg)`: the same policy fed a flat-ground height scan (every cell = the cell under the base) and
  the sim-nominal domain parameters: only the physics of a shifted world is shifted, not what the privileged
  observation tells the expert.
* `flat_tracking(policy, cfg, speeds, ...)`: flat sim ground, sim-nominal domain (`worlds.SIM_NOMINAL`),
  SimDist's walk-straight command at each speed; per speed the mean forward speed (x displacement / time after
  the settle time), mean body-frame vx, mean tracking kernel exp(-|cmd_xy - v_xy|^2 / 0.25) (1 = perfect),
  mean |y| at the end and the fall rate (means over the episodes that did not fall; NaN when all fell).

The world protocols themselves are `simdist_jax.envs.go2.worlds.evaluate_protocol`.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.envs.domain import Domain
from simdist_jax.envs.go2 import worlds
from simdist_jax.envs.go2.task import PARAM_NAMES
from simdist_jax.experts import checkpoints as ckpt


def make_policy(expert_dir: pathlib.Path, k: int, cfg):
  """The deterministic expert of ladder index `k` in `expert_dir` as `policy(obs) -> action` (numpy)."""
  params, apply_fn = ckpt.load_policy(expert_dir, k, cfg)
  act = jax.jit(lambda obs: apply_fn(params, obs))

  def policy(obs: dict) -> np.ndarray:
    return np.asarray(act(jnp.asarray(obs["privileged_state"])))

  return policy


# privileged_state layout (task.py): proprio 35 | command 3 | last action 12 | foot forces 4 | foot heights 4 |
# domain 7 | height scan 315 (21 x 15, row-major, rows x = -0.5..1.5 m ahead: the cell under the base is 5 * 15 + 7).
_DOMAIN = slice(58, 65)
_SCAN = slice(65, 380)
_SCAN_UNDER_BASE = 5 * 15 + 7


def masked(policy, cfg):
  """`policy` fed a flat-ground scan (every cell = the cell under the base) and the sim-nominal domain
  parameters: the expert is not told about the shift (physics-only shift)."""
  sim = Domain.from_config("sim", dict(cfg.domain.sim), PARAM_NAMES)
  nominal = np.asarray(sim.normalize({k: jnp.float32(v) for k, v in worlds.SIM_NOMINAL.items()}), np.float32)

  def fn(obs: dict) -> np.ndarray:
    priv = np.array(obs["privileged_state"], np.float32)
    scan = priv[_SCAN]
    priv[_SCAN] = scan[_SCAN_UNDER_BASE]
    priv[_DOMAIN] = nominal
    return policy({**obs, "privileged_state": priv})

  return fn


def _mean(rows: list, key: str) -> float:
  return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def flat_tracking(policy, cfg, speeds, episodes: int, duration_s: float, settle_s: float, seed: int,
                  log=print) -> list:
  """Flat-ground tracking of `policy` at each speed (see module docstring) -> one row per speed:
  {"cmd", "forward_speed", "vx_body", "kernel", "abs_y_end", "fall_rate", "episodes": [per-episode dicts]}.

  Episode e at speed v resets with fold_in(PRNGKey(seed), 1000 e + round(100 v)) and runs round(duration_s / dt)
  control steps (or until it fails); `log(line)` gets one line per speed (None: silent).
  """
  world = worlds.flat_reference("foam")  # flat sim ground + SIM_NOMINAL (protocol fields unused here)
  rows = []
  for v in speeds:
    env = worlds.make_world_env(world, cfg, v)
    n_steps = int(round(duration_s / env.dt))
    n_settle = int(round(settle_s / env.dt))
    per_ep = []
    for e in range(episodes):
      obs = env.reset(jax.random.fold_in(jax.random.PRNGKey(seed), 1000 * e + int(round(100 * v))))
      fell, x_settle, t_settle, vx_body, kernel = False, None, None, [], []
      for t in range(1, n_steps + 1):
        obs, _, _, info = env.step(policy(obs))
        if t == n_settle:
          x_settle, t_settle = float(env.data.qpos[0]), float(env.data.time)
        if t > n_settle:
          priv = obs["privileged_state"]
          v_xy, cmd_xy = priv[0:2], priv[35:37]
          vx_body.append(float(v_xy[0]))
          kernel.append(float(np.exp(-np.sum((cmd_xy - v_xy) ** 2) / 0.25)))
        if info["failed"]:
          fell = True
          break
      if x_settle is None or fell:
        fwd = float("nan")
      else:
        fwd = (float(env.data.qpos[0]) - x_settle) / (float(env.data.time) - t_settle)
      per_ep.append({"fell": fell, "forward_speed": fwd, "steps": t,
                     "vx_body": float(np.mean(vx_body)) if vx_body else float("nan"),
                     "kernel": float(np.mean(kernel)) if kernel else float("nan"),
                     "y_end": float(env.data.qpos[1])})
    ok = [p for p in per_ep if not p["fell"]]
    rows.append({"cmd": v, "forward_speed": _mean(ok, "forward_speed"), "vx_body": _mean(ok, "vx_body"),
                 "kernel": _mean(ok, "kernel"), "abs_y_end": float(np.mean([abs(p["y_end"]) for p in per_ep])),
                 "fall_rate": float(np.mean([p["fell"] for p in per_ep])), "episodes": per_ep})
    if log is not None:
      log(f"  flat v={v:.2f}: fwd {rows[-1]['forward_speed']:.3f} m/s, falls {rows[-1]['fall_rate']:.2f}")
  return rows
