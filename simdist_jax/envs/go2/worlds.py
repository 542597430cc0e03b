"""Shifted Go2 worlds (the paper's real-world setups, in the MuJoCo C twin) and their evaluation protocols.

Each `World` = a terrain (course geometry and its contact materials) + fixed `domain.real` parameter values +
a protocol (commanded forward speeds, trials per speed, course length). Metric: mean forward progress [m]
over all trials, each trial's progress = clip(x_end - x_start, 0, course_length), where the trial ends when
the course is cleared, the robot fails (task termination) or `timeout_factor * course / speed` elapses.
The command is SimDist's walk-straight law (vx = speed; vy, wz P-laws on the lateral and yaw errors, gain 1).

Worlds relative to the sim nominal (`SIM_NOMINAL`, the official sim-eval values):
  slippery_slope: two panels along x at 3.0 deg (x 0.30..1.00 m) and 5.7 deg (x 1.00..1.82 m) ending on a
    plateau; the panels are PTFE: their friction (0.01) is below the feet's, so under MuJoCo's max-mixing the
    feet's friction `foot_friction` = 0.1 applies (thermoplastic on PTFE; outside the sim DR range 0.2..1.2);
    floor and plateau keep friction 0.8. Course 1.82 m; 5 trials at 0.1, 0.3, 0.5 m/s.
  foam: two overlapping 5 cm pads (x 0.40..1.90 and 1.70..3.20 m). Memory foam is not modelled by the sim;
    here it is MuJoCo soft contact: pad solref (0.1, 1.0) (time constant 100 ms vs the feet's 20 ms) and
    solimp (0.1, 0.9, 0.05) with solmix 1e6 so the pad's parameters win the solmix-weighted mix; standing
    at the default pose the feet sink ~2 cm into the 5 cm pad (vs < 1 mm on the floor; measured in
    tests/envs/go2/test_worlds.py). Course 3.00 m; 5 trials at 0.2, 0.7, 1.2 m/s.
The domain parameters of the worlds differ from SIM_NOMINAL only in `foot_friction` (slippery_slope) and in
none (foam: the shift is the terrain's contact model).
`flat_reference(world)`: the no-shift baseline of a world's protocol (flat sim ground, SIM_NOMINAL, same course,
speeds and trials); it is not in WORLDS (not a `domain.real` choice).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import numpy as np

from simdist_jax.adapt import evaluation
from simdist_jax.envs.domain import Domain
from simdist_jax.envs.go2 import terrain as terrain_lib
from simdist_jax.envs.go2.task import PARAM_NAMES, Go2, Go2Config

# Sim nominal (official `simulate_go2.yaml`: friction 0.8, restitution 0.05, added mass 0; gains nominal;
# joint friction at the XML nominal; observation noise off as in recording).
SIM_NOMINAL = {"base_mass_offset": 0.0, "foot_friction": 0.8, "foot_restitution": 0.05, "kp_scale": 1.0,
               "kd_scale": 1.0, "joint_friction": 0.01, "obs_noise_scale": 0.0}

FOAM_SOLREF = (0.1, 1.0)
FOAM_SOLIMP = (0.1, 0.9, 0.05)
FOAM_SOLMIX = 1e6
FOAM_HEIGHT = 0.05
FOAM_FRICTION = 0.9
PTFE_FOOT_FRICTION = 0.1
FLOOR_FRICTION = 0.8


@dataclasses.dataclass(frozen=True)
class World:
  """A shifted world and its evaluation protocol (see module docstring)."""

  name: str
  terrain: terrain_lib.Terrain
  domain: tuple[tuple[str, float], ...]       # fixed values for every task parameter
  course_length: float                        # m
  speeds: tuple[float, ...]                   # commanded forward speeds [m/s]
  trials_per_speed: int = 5
  timeout_factor: float = 2.0                 # trial time limit = factor * course / speed
  description: str = ""

  def domain_dict(self) -> dict:
    """The fixed domain values {parameter name: value}."""
    return dict(self.domain)

  def real_domain(self) -> Domain:
    """The fixed values as the twin's `real` Domain (degenerate ranges)."""
    return Domain.from_config("real", self.domain_dict(), PARAM_NAMES)


def slippery_slope_terrain() -> terrain_lib.Terrain:
  """Two PTFE panels (3.0 and 5.7 deg) and a landing plateau on a floor of friction 0.8 (module docstring)."""
  hw = 1.5
  x0, x1, x2 = 0.30, 1.00, 1.82
  h1 = (x1 - x0) * math.tan(math.radians(3.0))
  h2 = h1 + (x2 - x1) * math.tan(math.radians(5.7))
  return terrain_lib.Terrain("slippery_slope", (
      terrain_lib.Panel(x0, x1, -hw, hw, 0.0, h1),                              # PTFE, 3.0 deg
      terrain_lib.Panel(x1, x2, -hw, hw, h1, h2),                               # PTFE, 5.7 deg
      terrain_lib.Panel(x2, x2 + 1.5, -hw, hw, h2, h2, friction=FLOOR_FRICTION),  # landing
  ), plane_friction=FLOOR_FRICTION)


def foam_terrain() -> terrain_lib.Terrain:
  """Two overlapping 5 cm soft-contact pads (module docstring)."""
  hw = 1.0
  kw = dict(friction=FOAM_FRICTION, solref=FOAM_SOLREF, solimp=FOAM_SOLIMP, solmix=FOAM_SOLMIX)
  return terrain_lib.Terrain("foam", (
      terrain_lib.Panel(0.40, 1.90, -hw, hw, FOAM_HEIGHT, FOAM_HEIGHT, **kw),
      terrain_lib.Panel(1.70, 3.20, -hw, hw, FOAM_HEIGHT, FOAM_HEIGHT, **kw),
  ), plane_friction=FLOOR_FRICTION)


def _domain(**shift) -> tuple[tuple[str, float], ...]:
  d = dict(SIM_NOMINAL)
  d.update(shift)
  return tuple((n, float(d[n])) for n in PARAM_NAMES)


WORLDS = {
    "slippery_slope": World(
        name="slippery_slope", terrain=slippery_slope_terrain(),
        domain=_domain(foot_friction=PTFE_FOOT_FRICTION), course_length=1.82, speeds=(0.1, 0.3, 0.5),
        description="two PTFE panels at 3.0 and 5.7 deg, foot friction 0.1"),
    "foam": World(
        name="foam", terrain=foam_terrain(), domain=_domain(), course_length=3.00, speeds=(0.2, 0.7, 1.2),
        description="two overlapping 5 cm compliant pads (soft solref/solimp)"),
}


def flat_reference(world: "World | str") -> World:
  """The sim-nominal reference of `world`'s protocol: flat sim ground (`terrain.flat()`, the `small` training
  terrain) and domain = SIM_NOMINAL, with the same course length, speeds, trials and time limit as `world`.
  `evaluate_protocol(policy, flat_reference(w), cfg)` is the no-shift baseline of `evaluate_protocol(policy, w,
  cfg)`: only the terrain and the fixed domain differ."""
  world = get_world(world) if isinstance(world, str) else world
  return dataclasses.replace(world, name=f"flat_ref[{world.name}]", terrain=terrain_lib.flat(),
                             domain=_domain(), description=f"flat sim ground, sim nominal domain "
                                                           f"({world.name}'s protocol)")


def get_world(name: str) -> World:
  """The world named `name`; raises ValueError naming the known worlds."""
  if name not in WORLDS:
    raise ValueError(f"unknown world {name!r}; known: {sorted(WORLDS)}")
  return WORLDS[name]


def world_task(world: World, env_cfg, speed: float) -> Go2:
  """The Go2 task on the world's terrain, walking straight at `speed` from the origin facing +x."""
  base = Go2Config.from_env_cfg(env_cfg) if env_cfg is not None else Go2Config()
  cfg = dataclasses.replace(base, command_mode="walk_straight", walk_speed=float(speed), init_yaw_range=0.0,
                            init_xy_range=0.0, world=None)  # terrain and domain come from `world` itself
  return Go2(cfg, terrain=world.terrain)


def make_world_env(world: World, cfg, speed: float, episode_length: int | None = None):
  """MuJoCo C twin (`RealEnv`) of `world` at commanded speed; privileged params normalized over cfg's sim."""
  from simdist_jax.envs.real import RealEnv  # pylint: disable=import-outside-toplevel
  task = world_task(world, cfg.env if cfg is not None else None, speed)
  sim = (Domain.from_config("sim", dict(cfg.domain.sim), PARAM_NAMES) if cfg is not None
         else world.real_domain())
  return RealEnv(task, world.real_domain(), sim_domain=sim, episode_length=episode_length)


class _TrialController:
  """`policy_fn(obs) -> action` as a `run_episode(..., full_obs=True)` controller for one protocol trial.

  `reset` (called by `run_episode` after the env's reset) calls `policy_fn.reset()` if it has one and stores the
  trial's start x; `progress()` is the forward progress since then [m].
  """

  def __init__(self, policy_fn: Callable[[dict], np.ndarray], env) -> None:
    self.policy_fn, self.env, self.x_start = policy_fn, env, 0.0

  def reset(self, key: jax.Array) -> None:
    del key
    if hasattr(self.policy_fn, "reset"):
      self.policy_fn.reset()
    self.x_start = float(self.env.data.qpos[0])

  def replace_last_action(self, applied) -> None:
    """The applied action is the policy's own (no exploration): nothing to replace."""
    del applied

  def progress(self) -> float:
    """Forward progress since the trial's start [m] (may be negative)."""
    return float(self.env.data.qpos[0]) - self.x_start

  def __call__(self, obs: dict) -> np.ndarray:
    return np.asarray(self.policy_fn(obs), np.float32)


def evaluate_protocol(policy_fn: Callable[[dict], np.ndarray], world: World | str, cfg, *,
                      key: jax.Array | None = None, speeds: tuple[float, ...] | None = None,
                      trials_per_speed: int | None = None, max_steps: int | None = None,
                      log: Callable[[str], None] | None = None) -> dict:
  """Runs the world's protocol with `policy_fn(obs) -> action [12]` in the MuJoCo C twin.

  Args:
    policy_fn: maps the env's obs dict ({"state", "privileged_state"}, numpy) to an action. If it has a
      `reset()` method, that is called at the start of every trial (e.g. to clear a planner's warm start).
    world: a World or its name.
    cfg: the go2 config (uses `env` and `domain.sim`); None: task defaults.
    key: root key of the trials (default PRNGKey(0)); trial i at speed j uses fold_in(fold_in(key, j), i).
    speeds: override the protocol's commanded speeds (smoke tests).
    trials_per_speed: override the protocol's trials per speed (smoke tests).
    max_steps: cap on control steps per trial (smoke tests); default from the time limit.
    log: optional `log(line)` called with one line per trial.

  Returns:
    {"world", "metric": "mean_forward_progress_m", "mean_progress_m", "success_rate", "fall_rate",
     "per_speed": {speed: mean progress}, "trials": [{"speed", "progress_m", "success", "fell", "steps"}]}.
  """
  world = get_world(world) if isinstance(world, str) else world
  key = jax.random.PRNGKey(0) if key is None else key
  speeds = tuple(world.speeds if speeds is None else speeds)
  n_trials = world.trials_per_speed if trials_per_speed is None else trials_per_speed
  trials = []
  for j, v in enumerate(speeds):
    env = make_world_env(world, cfg, v)
    limit = int(math.ceil(world.timeout_factor * world.course_length / v / env.dt))
    if max_steps is not None:
      limit = min(limit, max_steps)
    trial = _TrialController(policy_fn, env)
    for i in range(n_trials):
      trial_key = jax.random.fold_in(jax.random.fold_in(key, j), i)
      out = evaluation.run_episode(env, trial, trial_key, full_obs=True, reset_key=trial_key, max_steps=limit,
                                   stop=lambda _, trial=trial: trial.progress() >= world.course_length)
      fell, steps = bool(out["failed"]), int(out["steps"])
      progress = float(np.clip(trial.progress(), 0.0, world.course_length))
      trials.append({"speed": v, "progress_m": progress, "success": progress >= world.course_length,
                     "fell": fell, "steps": steps})
      if log is not None:
        log(f"{world.name} v={v:.2f} trial {i}: progress {progress:.2f} m, fell={fell}, steps={steps}")
  prog = np.array([t["progress_m"] for t in trials])
  return {"world": world.name, "metric": "mean_forward_progress_m", "mean_progress_m": float(prog.mean()),
          "success_rate": float(np.mean([t["success"] for t in trials])),
          "fall_rate": float(np.mean([t["fell"] for t in trials])),
          "per_speed": {v: float(np.mean([t["progress_m"] for t in trials if t["speed"] == v])) for v in speeds},
          "trials": trials}
