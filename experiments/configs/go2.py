"""Unitree Go2 locomotion (SimDist's quadruped task), see simdist_jax/envs/go2/ and docs/go2.md.

`get_config("small")`: CPU smoke scale (short episodes, flat ground; the other sections at their `small`
preset). `get_config("paper")`: SimDist's settings (20 s episodes, the per-episode tile grid, the official DR).
Override any leaf from the CLI: `--config.env.terrain=stairs`.
"""

import ml_collections

from experiments.configs.sections import stages
from simdist_jax.envs import registry

PRESETS = ("small", "paper")
WORLD_NAMES = ("slippery_slope", "foam")


def _real_domain(world: str) -> ml_collections.ConfigDict:
  from simdist_jax.envs.go2 import worlds  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(worlds.get_world(world).domain_dict())


def get_config(preset: str = "small") -> ml_collections.ConfigDict:
  """The Go2 config at `preset` ("small" or "paper"); raises KeyError for any other preset."""
  if preset not in PRESETS:
    raise KeyError(f"preset must be one of {PRESETS}, got {preset!r}")
  paper = preset == "paper"
  c = ml_collections.ConfigDict()
  c.task = "go2"
  c.preset = preset

  c.env = ml_collections.ConfigDict()
  c.env.ctrl_dt = 0.02               # control period [s] (50 Hz); physics dt 0.005 -> 4 substeps
  c.env.episode_length = 1000 if paper else 100  # control steps per episode (paper: 20 s)
  c.env.action_scale = 0.25          # PD target = action_scale * a + default pose
  c.env.default_pose = "isaac"       # "isaac" (SimDist default angles) | "home" (Menagerie (0, 0.9, -1.8))
  # "grid": the per-episode tile grid (tiles.py; each episode spawns on a tile drawn uniformly over kinds and
  # levels, as SimDist trains); or one panel terrain for every episode: flat | slope | stairs | boxes | rough
  c.env.terrain = "grid" if paper else "flat"
  c.env.terrain_difficulty = 0.4     # panel terrains only, in [0, 1]; official sim eval: boxes at 0.4
  c.env.terrain_seed = 0             # seed of the random box/tile layout (panels and grid)
  c.env.grid_kinds = ("flat", "pyramid", "pit", "stairs_up", "stairs_down", "boxes", "rough")  # grid columns
  c.env.grid_levels = 5              # grid rows: difficulty i / (levels - 1); level 1 of 5: 5.7 deg slopes
  c.env.grid_tile_size = 8.0         # m, square tiles (IsaacLab/legged_gym: 8 m)
  c.env.grid_resolution = 0.05       # m per height-field cell (edges become one-cell ramps)
  c.env.grid_border = 4.0            # m of flat ground around the grid (beyond it there is no ground)
  c.env.command_mode = "random"      # "random" (uniform, resampled) | "walk_straight" (evaluation)
  c.env.cmd_vx = (-0.5, 1.5)         # forward velocity command range [m/s]
  c.env.cmd_vy = (-0.5, 0.5)         # lateral velocity command range [m/s]
  c.env.cmd_wz = (-1.0, 1.0)         # yaw-rate command range [rad/s]
  c.env.command_resample_s = 10.0    # seconds between command resamples
  c.env.walk_speed = 0.5             # walk_straight: commanded vx [m/s]
  c.env.walk_gain = 1.0              # walk_straight: P gain on lateral and yaw errors
  c.env.gait_period = 0.5            # gait clock period [s] (observation phase and trot reward)
  c.env.init_yaw_range = 3.141592653589793  # initial yaw ~ U(-r, r) [rad]
  c.env.init_xy_range = 0.0          # initial x, y ~ U(-r, r) [m] (spawn pads are 1.2 m wide)
  c.env.joint_reset_scale = (0.95, 1.05)  # initial joint positions = default pose x U(lo, hi) per joint
  # Reward weights (SimDist's final weights); each term is multiplied by ctrl_dt.
  c.env.reward_scales = ml_collections.ConfigDict(dict(
      tracking_lin_vel=1.5,    # exp(-|cmd_xy - v_xy|^2 / 0.25)
      tracking_ang_vel=0.75,   # exp(-(cmd_wz - w_z)^2 / 0.25)
      lin_vel_z=-2.0,          # v_z^2 (body frame)
      ang_vel_xy=-0.05,        # |w_xy|^2 (body frame)
      torques=-2e-4,           # |tau|^2
      dof_acc=-2.5e-7,         # |qacc_joints|^2
      action_rate=-0.01,       # |a_t - a_{t-1}|^2
      flat_orientation=-4.0,   # |projected gravity_xy|^2
      hip_deviation=-0.25,     # sum |q_hip - q_hip_default|
      gait=0.05,               # feet whose contact (> 1 N) matches the trot schedule (0 if |cmd_xy| <= 0.1)
      feet_height=0.2,         # swing feet: sum exp(-((h - 0.09) / 0.0225)^2 / 2) (0 if |cmd_xy| <= 0.1)
  ))
  c.env.world = "slippery_slope"     # shifted world of domain.real (worlds.py): slippery_slope | foam

  c.domain = ml_collections.ConfigDict()
  # Sim domain: SimDist's DR (paper Table IV), sampled uniformly at every (auto-)reset.
  c.domain.sim = ml_collections.ConfigDict(dict(
      base_mass_offset=(-1.0, 3.0),   # kg added to the trunk
      foot_friction=(0.2, 1.2),       # sliding friction of all four feet (MuJoCo: static = dynamic)
      foot_restitution=(0.0, 0.3),    # -> foot solref damping ratio (approximation, see task.py)
      kp_scale=(0.9, 1.1),            # PD stiffness x scale
      kd_scale=(0.9, 1.1),            # PD damping x scale
      joint_friction=(0.001, 0.05),   # N m joint dry friction (must stay > 0 for MJX, see task.py)
      obs_noise_scale=(0.5, 1.5),     # x the official per-channel observation noise sigmas (1 = official)
  ))
  # Real (shifted) world: fixed values of env.world (worlds.py); its terrain is the world's, so build the
  # twin with `simdist_jax.envs.go2.worlds.make_world_env` (registry.make_real_env uses the sim terrain).
  c.domain.real = _real_domain("slippery_slope")

  # The sections read the task's dims (P, E, A, C, S) from the task itself, declared once in its class.
  stages.add_stage_sections(c, "go2", preset, registry.make_task(c).dims)
  c.lock()
  return c
