"""Go2 velocity-tracking locomotion task (SimDist's quadruped task) for the MJX env and the MuJoCo C twin.

Shapes: A = 12 actions, P = 35 proprio, E = 315 height scan (21 x 15), C = 3 command, S = 380 privileged,
K = 7 domain parameters.

Action: 12 joint targets in Unitree order (FR, FL, RR, RL x hip, thigh, calf) in policy units;
  ctrl = PD target = 0.25 a + q_default. q_default (`default_pose`): "isaac" (default; SimDist's
  ISAAC_DEFAULT_JOINT_ANGLES: hip +-0.1, thigh 0.8 front / 1.0 rear, calf -1.5) or "home" (Menagerie keyframe
  (0, 0.9, -1.8) per leg, which sags and tips over under Kp 25 in our model). PD Kp 25 / Kd 0.5 at 200 Hz.
Observation `state` [P + E + C] = proprio ++ height scan ++ command:
  proprio [35]: base linear velocity (body frame) 3, base angular velocity (body frame) 3, projected gravity 3,
    joint pos - q_default 12, joint vel 12, gait clock (cos, sin) of 2 pi t / 0.5 s  (official `system/go2.yaml`
    order). Gaussian noise sigma (0.05, 0.1, 0.025, 0.01, 0.75, 0.001) x `obs_noise_scale`.
  height scan [315]: 21 x 15 yaw-aligned grid, 0.1 m, centred 0.5 m ahead of the base,
    clip(base_z - ground_z - 0.3, +-2), computed analytically from the terrain (terrain.py); noise 0.02 x scale.
  command [3]: (vx, vy, wz), noise-free.
`privileged_state` [S = 380], noise-free: proprio 35 | command 3 | last action 12 | foot normal contact forces
  x 0.1 (touch sensors) 4 | foot heights above the terrain (bottom of the sphere) 4 | domain parameters
  normalized to [-1, 1] over the sim ranges 7 | height scan 315.
Domain parameters (K = 7, per episode): base_mass_offset [kg], foot_friction (MuJoCo's single sliding
  coefficient: static = dynamic), foot_restitution (MuJoCo has no restitution coefficient: it is mapped to
  the foot contact's solref damping ratio zeta = -ln e / sqrt(pi^2 + ln^2 e), the linear spring-damper
  identity; e = 0 -> ~0.975 ~ critically damped, e = 0.3 -> 0.36; an approximation, since MuJoCo's soft
  contact also has impedance), kp_scale, kd_scale (PD gains x scale), joint_friction [N m]
  (`dof_frictionloss`, > 0), obs_noise_scale (multiplies the noise sigmas above).
Commands: uniform in the configured ranges, resampled every `command_resample_s` (task_info["t"] counts
  control steps), or `walk_straight` (evaluation): vx = const, vy and wz P-laws on the lateral and yaw errors.
Reward: SimDist's terms x weight x dt (see `reward`), metrics `reward/<term>` per term.
Termination: tilt > 60 deg, or base/head/knee below the terrain (analytic contact check against the terrain
  height function; these links carry no collision geoms, see model.py).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from simdist_jax.envs import base
from simdist_jax.envs.base import Phys, Task
from simdist_jax.envs.domain import Domain, Params
from simdist_jax.envs.go2 import model as model_lib
from simdist_jax.envs.go2 import terrain as terrain_lib
from simdist_jax.envs.go2 import tiles as tiles_lib

PARAM_NAMES = ("base_mass_offset", "foot_friction", "foot_restitution", "kp_scale", "kd_scale",
               "joint_friction", "obs_noise_scale")
REWARD_TERMS = ("tracking_lin_vel", "tracking_ang_vel", "lin_vel_z", "ang_vel_xy", "torques", "dof_acc",
                "action_rate", "flat_orientation", "hip_deviation", "gait", "feet_height")
# SimDist final weights (official code §5.4); each term is multiplied by dt = ctrl_dt.
DEFAULT_REWARD_SCALES = {"tracking_lin_vel": 1.5, "tracking_ang_vel": 0.75, "lin_vel_z": -2.0,
                         "ang_vel_xy": -0.05, "torques": -2e-4, "dof_acc": -2.5e-7, "action_rate": -0.01,
                         "flat_orientation": -4.0, "hip_deviation": -0.25, "gait": 0.05, "feet_height": 0.2}
PROPRIO_NOISE = np.array((0.05,) * 3 + (0.1,) * 3 + (0.025,) * 3 + (0.01,) * 12 + (0.75,) * 12 + (0.001,) * 2,
                         np.float32)
SCAN_NOISE = 0.02
GAIT_OFFSETS = np.array([0.0, 0.5, 0.5, 0.0], np.float32)  # FR, FL, RR, RL trot
TRACKING_SIGMA2 = 0.25
CONTACT_FORCE_THRESHOLD = 1.0  # N
FEET_HEIGHT_TARGET = 0.09
FEET_HEIGHT_SIGMA = 0.0225
MAX_TILT = np.deg2rad(60.0)
KNEE_RADIUS = 0.0245
# Spawn: ground sampled on a 10 cm square around each nominal foot (the reset's joint scaling moves a foot ~2 cm)
SPAWN_FOOT_OFFSETS = np.array([(dx, dy) for dx in (-0.05, 0.0, 0.05) for dy in (-0.05, 0.0, 0.05)], np.float32)


@dataclasses.dataclass(frozen=True)
class Go2Config:
  """Static task settings (from `config.env`, see experiments/configs/go2.py for the meaning of each)."""

  ctrl_dt: float = 0.02
  action_scale: float = 0.25
  default_pose: str = "isaac"          # "isaac" (SimDist) | "home" (Menagerie keyframe (0, 0.9, -1.8))
  terrain: str = "flat"                # a panel terrain (terrain.TERRAIN_TYPES) or "grid" (tiles.py)
  terrain_difficulty: float = 0.0
  terrain_seed: int = 0
  grid_kinds: tuple[str, ...] = tiles_lib.TILE_KINDS
  grid_levels: int = 5
  grid_tile_size: float = 8.0
  grid_resolution: float = 0.05
  grid_border: float = 4.0
  world: str | None = "slippery_slope"  # the shifted world whose fixed values domain.real must hold (worlds.py);
                                       # None: a task built for one World object (worlds.world_task), no check
  command_mode: str = "random"         # "random" | "walk_straight"
  cmd_vx: tuple[float, float] = (-0.5, 1.5)
  cmd_vy: tuple[float, float] = (-0.5, 0.5)
  cmd_wz: tuple[float, float] = (-1.0, 1.0)
  command_resample_s: float = 10.0
  walk_speed: float = 0.5
  walk_gain: float = 1.0
  gait_period: float = 0.5
  init_yaw_range: float = float(np.pi)
  init_xy_range: float = 0.0
  joint_reset_scale: tuple[float, float] = (0.95, 1.05)
  reward_scales: tuple[tuple[str, float], ...] = tuple(DEFAULT_REWARD_SCALES.items())

  @classmethod
  def from_env_cfg(cls, env_cfg) -> "Go2Config":
    """Builds from a `config.env` mapping; keys not fields of Go2Config (episode_length...) are ignored."""
    return base.fields_from_env_cfg(cls, env_cfg, REWARD_TERMS)


def make_terrain(cfg: Go2Config):
  """The task's terrain from its config: a panel terrain by name, or the per-episode tile grid ("grid")."""
  if cfg.terrain == "grid":
    return tiles_lib.grid(cfg.grid_kinds, cfg.grid_levels, cfg.grid_tile_size, cfg.grid_resolution,
                          cfg.grid_border, cfg.terrain_seed)
  if cfg.terrain not in terrain_lib.TERRAIN_TYPES:
    raise ValueError(f"env.terrain must be 'grid' or one of {terrain_lib.TERRAIN_TYPES}, got {cfg.terrain!r}")
  return terrain_lib.make(cfg.terrain, cfg.terrain_difficulty, cfg.terrain_seed)


def restitution_to_dampratio(e: jax.Array) -> jax.Array:
  """Damping ratio of a linear spring-damper whose coefficient of restitution is e (in [0, 1))."""
  e = jnp.clip(e, 1e-6, 0.99)
  log_e = jnp.log(e)
  return jnp.minimum(-log_e / jnp.sqrt(jnp.pi ** 2 + log_e ** 2), 1.0)


def quat_to_mat(q: jax.Array) -> jax.Array:
  """MuJoCo quaternion (w, x, y, z) -> rotation matrix [3, 3] (body -> world)."""
  q = q / jnp.linalg.norm(q)
  w, x, y, z = q[0], q[1], q[2], q[3]
  return jnp.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def yaw_of(q: jax.Array) -> jax.Array:
  """Yaw angle [rad] of a MuJoCo quaternion (w, x, y, z)."""
  w, x, y, z = q[0], q[1], q[2], q[3]
  return jnp.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def gait_stance(t_s: jax.Array, period: float) -> jax.Array:
  """Desired stance per foot [4] (bool) of the trot schedule (duty 0.5)."""
  phase = jnp.mod(t_s / period + jnp.asarray(GAIT_OFFSETS), 1.0)
  return phase < 0.5


class Go2(Task):
  """Go2 locomotion task (see module docstring)."""

  name = "go2"
  param_names = PARAM_NAMES
  domain_fields = ("body_mass", "body_subtreemass", "geom_friction", "geom_solref", "actuator_gainprm",
                   "actuator_biasprm", "dof_frictionloss")
  phys_fields = ("qpos", "qvel", "qacc", "ctrl", "actuator_force", "sensordata", "site_xpos", "xpos",
                 "time")

  def __init__(self, cfg: Go2Config | None = None, terrain: terrain_lib.Terrain | None = None):
    self.cfg = cfg or Go2Config()
    from simdist_jax.envs.go2 import worlds  # pylint: disable=import-outside-toplevel  (worlds imports this module)
    if self.cfg.world is not None and self.cfg.world not in worlds.WORLDS:
      raise ValueError(f"env.world must be one of {sorted(worlds.WORLDS)}, got {self.cfg.world!r}")
    if self.cfg.command_mode not in ("random", "walk_straight"):
      raise ValueError(f"command_mode must be 'random' or 'walk_straight', got {self.cfg.command_mode!r}")
    scales = dict(self.cfg.reward_scales)
    if set(scales) != set(REWARD_TERMS):
      raise ValueError(f"reward_scales must have exactly the terms {REWARD_TERMS}, got {sorted(scales)}")
    self.reward_scales = scales
    self.ctrl_dt = float(self.cfg.ctrl_dt)
    self.terrain = terrain or make_terrain(self.cfg)
    self._xml = model_lib.build_xml(self.terrain)
    self.spawns = jnp.asarray(terrain_lib.spawn_points(self.terrain))  # [N, 2] tile centres (origin: panels)
    m = self.mj_model()
    name = lambda t, n: mujoco.mj_name2id(m, t, n)  # noqa: E731
    self.base_id = name(mujoco.mjtObj.mjOBJ_BODY, "base")
    self.foot_geom_ids = np.array([name(mujoco.mjtObj.mjOBJ_GEOM, f"{l}_foot") for l in model_lib.LEGS])
    self.foot_site_ids = np.array([name(mujoco.mjtObj.mjOBJ_SITE, f"{l}_foot") for l in model_lib.LEGS])
    self.calf_body_ids = np.array([name(mujoco.mjtObj.mjOBJ_BODY, f"{l}_calf") for l in model_lib.LEGS])
    self.touch_adr = np.array([m.sensor_adr[name(mujoco.mjtObj.mjOBJ_SENSOR, f"{l}_touch")]
                               for l in model_lib.LEGS])
    if self.cfg.default_pose not in model_lib.DEFAULT_POSES:
      raise ValueError(f"default_pose must be one of {sorted(model_lib.DEFAULT_POSES)}, "
                       f"got {self.cfg.default_pose!r}")
    self.default_q_np = model_lib.DEFAULT_POSES[self.cfg.default_pose]
    self.default_q = jnp.asarray(self.default_q_np, jnp.float32)
    self.stand_height, self.foot_xy_body = self._standing_geometry(m, self.default_q_np)
    self.resample_steps = max(1, int(round(self.cfg.command_resample_s / self.ctrl_dt)))
    hx, hy, hz = model_lib.TRUNK_HALF
    corners = [(sx * hx, sy * hy, sz * hz) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    hp = model_lib.HEAD_SPHERE_POS
    corners.append((hp[0], hp[1], hp[2] - model_lib.HEAD_SPHERE_R))
    self.body_points = np.array(corners, np.float32)  # [9, 3] in the base frame

  @staticmethod
  def _standing_geometry(m: mujoco.MjModel, pose: np.ndarray) -> tuple[float, np.ndarray]:
    """Base height above flat ground at joint pose `pose` with the lowest foot touching, and the feet's xy in
    the base frame [4, 2]."""
    d = mujoco.MjData(m)
    d.qpos[:] = 0.0
    d.qpos[3] = 1.0
    d.qpos[7:] = pose
    mujoco.mj_kinematics(m, d)
    feet = np.array([d.site_xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, f"{l}_foot")]
                     for l in model_lib.LEGS])
    return float(-feet[:, 2].min() + model_lib.FOOT_RADIUS), feet[:, :2].astype(np.float32)

  # ---- Task API -------------------------------------------------------------------------------------
  def mj_model(self) -> mujoco.MjModel:
    """The Go2 MuJoCo model on this task's terrain (from the built XML, height-field data written in)."""
    m = mujoco.MjModel.from_xml_string(self._xml)
    terrain_lib.write_model_data(self.terrain, m)
    return m

  @property
  def dims(self) -> dict:
    """P = 35, E = 315 (height scan), A = 12, C = 3, S = 35 + 3 + 12 + 4 + 4 + K + 315."""
    return {"proprio": 35, "extero": 315, "extero_shape": terrain_lib.SCAN_SHAPE, "action": 12,
            "command": 3, "privileged": 35 + 3 + 12 + 4 + 4 + len(PARAM_NAMES) + 315}

  def validate_domain(self, domain: Domain) -> None:
    """Also needs joint/foot friction, kp/kd_scale > 0, restitution in [0, 1), noise >= 0, trunk mass > 1 kg;
    the `real` domain must hold exactly the fixed values of `env.world` (else a world override would run the
    twin with another world's parameters)."""
    super().validate_domain(domain)
    if domain.name == "real" and self.cfg.world is not None:
      from simdist_jax.envs.go2 import worlds  # pylint: disable=import-outside-toplevel
      domain.check_holds(worlds.WORLDS[self.cfg.world].domain_dict(), self.cfg.world)
    lo = {n: l for n, l, _ in domain.ranges}
    hi = {n: h for n, _, h in domain.ranges}
    if lo["joint_friction"] <= 0.0:
      raise ValueError(f"domain '{domain.name}': joint_friction must be > 0 (MJX keeps the nominal model's "
                       f"friction-loss rows; got low {lo['joint_friction']})")
    for n in ("foot_friction", "kp_scale", "kd_scale"):
      if lo[n] <= 0.0:
        raise ValueError(f"domain '{domain.name}': {n} must be > 0 (got low {lo[n]})")
    if lo["foot_restitution"] < 0.0 or hi["foot_restitution"] >= 1.0:
      raise ValueError(f"domain '{domain.name}': foot_restitution must lie in [0, 1)")
    if lo["obs_noise_scale"] < 0.0:
      raise ValueError(f"domain '{domain.name}': obs_noise_scale must be >= 0")
    if lo["base_mass_offset"] <= -model_lib.BASE_MASS + 1.0:
      raise ValueError(f"domain '{domain.name}': base_mass_offset too negative ({lo['base_mass_offset']})")

  def domain_updates(self, nominal: Mapping[str, jax.Array], params: Params) -> dict:
    """Trunk mass offset, foot friction and restitution (solref damping ratio), PD gains and joint friction."""
    b, feet = self.base_id, self.foot_geom_ids
    dm = params["base_mass_offset"]
    body_mass = nominal["body_mass"].at[b].add(dm)
    subtree = nominal["body_subtreemass"].at[0].add(dm).at[b].add(dm)
    friction = nominal["geom_friction"].at[feet, 0].set(params["foot_friction"])
    solref = nominal["geom_solref"].at[feet, 1].set(restitution_to_dampratio(params["foot_restitution"]))
    kp = model_lib.KP * params["kp_scale"]
    kd = model_lib.KD * params["kd_scale"]
    gain = nominal["actuator_gainprm"].at[:, 0].set(kp)
    bias = nominal["actuator_biasprm"].at[:, 1].set(-kp).at[:, 2].set(-kd)
    frictionloss = nominal["dof_frictionloss"].at[6:].set(params["joint_friction"])
    return {"body_mass": body_mass, "body_subtreemass": subtree, "geom_friction": friction,
            "geom_solref": solref, "actuator_gainprm": gain, "actuator_biasprm": bias,
            "dof_frictionloss": frictionloss}

  def _sample_command(self, key: jax.Array) -> jax.Array:
    c = self.cfg
    lo = jnp.array([c.cmd_vx[0], c.cmd_vy[0], c.cmd_wz[0]], jnp.float32)
    hi = jnp.array([c.cmd_vx[1], c.cmd_vy[1], c.cmd_wz[1]], jnp.float32)
    return lo + jax.random.uniform(key, (3,)) * (hi - lo)

  def _walk_straight_command(self, qpos: jax.Array, ref: jax.Array) -> jax.Array:
    """Vx = walk_speed; vy, wz: P-laws (gain walk_gain) on the lateral offset from and yaw to the ref line."""
    c = self.cfg
    x0, y0, yaw0 = ref[0], ref[1], ref[2]
    lateral = -(qpos[0] - x0) * jnp.sin(yaw0) + (qpos[1] - y0) * jnp.cos(yaw0)
    dyaw = jnp.arctan2(jnp.sin(yaw_of(qpos[3:7]) - yaw0), jnp.cos(yaw_of(qpos[3:7]) - yaw0))
    vy = jnp.clip(-c.walk_gain * lateral, c.cmd_vy[0], c.cmd_vy[1])
    wz = jnp.clip(-c.walk_gain * dyaw, c.cmd_wz[0], c.cmd_wz[1])
    return jnp.stack([jnp.float32(c.walk_speed), vy, wz]).astype(jnp.float32)

  def next_tile(self, key: jax.Array, previous: dict) -> jax.Array:
    """The tile-grid curriculum (legged_gym / IsaacLab rule): the env keeps its tile kind; its level goes up
    by one if the ended episode walked more than half a tile from its spawn point, down by one if it covered
    less than half the distance its last command asked for over the episode's duration (and did not go up);
    a level pushed past the top is redrawn uniformly (solved envs keep visiting every level)."""
    n_kinds, levels = len(self.cfg.grid_kinds), int(self.cfg.grid_levels)
    prev = previous["task"]
    kind, level = prev["tile"] % n_kinds, prev["tile"] // n_kinds
    walked = jnp.linalg.norm(previous["qpos"][:2] - prev["ref"][:2])
    asked = jnp.linalg.norm(prev["command"][:2]) * prev["t"] * self.ctrl_dt
    up = walked > 0.5 * self.cfg.grid_tile_size
    down = (walked < 0.5 * asked) & ~up
    level = level + up.astype(jnp.int32) - down.astype(jnp.int32)
    level = jnp.where(level >= levels, jax.random.randint(key, (), 0, levels), jnp.maximum(level, 0))
    return (level * n_kinds + kind).astype(jnp.int32)

  def initial_state(self, key: jax.Array, params: Params, previous: dict | None = None):
    """A spawn tile (task_info["tile"]; the origin on panel terrains): drawn uniformly, or by the curriculum
    `next_tile` when `previous` (the env's ended episode) is given on the tile grid; random yaw and xy
    offset, default pose x joint_reset_scale, standing on the terrain; the first command in task_info."""
    del params
    c = self.cfg
    k_xy, k_yaw, k_q, k_cmd = jax.random.split(key, 4)
    k_tile = jax.random.fold_in(key, 0x711E)  # a fifth stream that leaves the four above as before
    if previous is not None and c.terrain == "grid":
      tile = self.next_tile(k_tile, previous)
    else:
      tile = jax.random.randint(k_tile, (), 0, self.spawns.shape[0])
    xy = self.spawns[tile] + jax.random.uniform(k_xy, (2,), minval=-c.init_xy_range, maxval=c.init_xy_range)
    yaw = jax.random.uniform(k_yaw, (), minval=-c.init_yaw_range, maxval=c.init_yaw_range)
    q = self.default_q * jax.random.uniform(k_q, (12,), minval=c.joint_reset_scale[0],
                                       maxval=c.joint_reset_scale[1])
    # the highest ground under the base and the four feet (spawning off a pad, no foot starts inside a step)
    c_y, s_y = jnp.cos(yaw), jnp.sin(yaw)
    fb = jnp.asarray(self.foot_xy_body)
    fb = (fb[:, None, :] + jnp.asarray(SPAWN_FOOT_OFFSETS)[None]).reshape(-1, 2)  # a 10 cm square per foot
    feet = xy + jnp.stack([c_y * fb[:, 0] - s_y * fb[:, 1], s_y * fb[:, 0] + c_y * fb[:, 1]], -1)
    ground = jnp.max(terrain_lib.height(self.terrain, jnp.concatenate([xy[None], feet])))
    z = ground + self.stand_height + 0.02
    quat = jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
    qpos = jnp.concatenate([xy, z[None], quat, q]).astype(jnp.float32)
    qvel = jnp.zeros(18, jnp.float32)
    ref = jnp.concatenate([xy, yaw[None]]).astype(jnp.float32)
    if c.command_mode == "walk_straight":
      command = self._walk_straight_command(qpos, ref)
    else:
      command = self._sample_command(k_cmd)
    return qpos, qvel, {"t": jnp.zeros((), jnp.int32), "command": command, "ref": ref,
                        "tile": tile.astype(jnp.int32)}

  def advance_info(self, task_info: dict, key: jax.Array, phys: Phys) -> dict:
    """Step counter `t` + 1; the command follows walk_straight's P-laws or is resampled every `resample_steps`."""
    t = task_info["t"] + 1
    if self.cfg.command_mode == "walk_straight":
      command = self._walk_straight_command(phys["qpos"], task_info["ref"])
    else:
      command = jnp.where(t % self.resample_steps == 0, self._sample_command(key), task_info["command"])
    return dict(task_info, t=t, command=command)

  def action_to_ctrl(self, action: jax.Array, phys: Phys, params: Params) -> jax.Array:
    """PD targets: `action_scale * action + default pose`."""
    del phys, params
    return self.cfg.action_scale * action + self.default_q

  # ---- quantities -----------------------------------------------------------------------------------
  def base_frame(self, phys: Phys) -> dict:
    """Base pose/velocity quantities (body frame velocities, projected gravity, yaw)."""
    qpos, qvel = phys["qpos"], phys["qvel"]
    rot = quat_to_mat(qpos[3:7])
    return {"pos": qpos[:3], "rot": rot, "yaw": yaw_of(qpos[3:7]),
            "lin_vel": rot.T @ qvel[0:3],       # free-joint linear velocity is in the world frame
            "ang_vel": qvel[3:6],               # free-joint angular velocity is in the body frame
            "gravity": rot.T @ jnp.array([0.0, 0.0, -1.0])}

  def foot_heights(self, phys: Phys) -> jax.Array:
    """Height of each foot sphere's bottom above the terrain [4]."""
    p = phys["site_xpos"][self.foot_site_ids]
    return p[:, 2] - model_lib.FOOT_RADIUS - terrain_lib.height(self.terrain, p[:, :2])

  def foot_forces(self, phys: Phys) -> jax.Array:
    """Normal contact force on each foot [4] (touch sensors) [N]."""
    return phys["sensordata"][self.touch_adr]

  def last_action(self, phys: Phys, task_info: dict) -> jax.Array:
    """The action applied in the step that led to `phys` (recovered exactly from ctrl); 0 at reset."""
    a = (phys["ctrl"] - self.default_q) / self.cfg.action_scale
    return jnp.where(task_info["t"] > 0, a, jnp.zeros_like(a))

  def proprio(self, phys: Phys, task_info: dict) -> jax.Array:
    """Noise-free proprio [35]: body lin/ang velocity, gravity, joint offsets and velocities, gait phase cos/sin."""
    bf = self.base_frame(phys)
    phase = 2 * jnp.pi * task_info["t"] * self.ctrl_dt / self.cfg.gait_period
    return jnp.concatenate([bf["lin_vel"], bf["ang_vel"], bf["gravity"], phys["qpos"][7:] - self.default_q,
                            phys["qvel"][6:], jnp.stack([jnp.cos(phase), jnp.sin(phase)])])

  def scan(self, phys: Phys) -> jax.Array:
    """Noise-free height scan around the base, flattened [315]."""
    bf = self.base_frame(phys)
    return terrain_lib.height_scan(self.terrain, bf["pos"], bf["yaw"]).reshape(-1)

  def observe(self, phys: Phys, params: Params, task_info: dict, noise_key: jax.Array,
              sim_domain: Domain) -> dict:
    """Noisy [proprio, scan, command] state and the privileged state (clean features, contacts, normalized domain)."""
    prop = self.proprio(phys, task_info)
    scan = self.scan(phys)
    k_p, k_s = jax.random.split(noise_key)
    s = params["obs_noise_scale"]
    noisy_prop = prop + s * jnp.asarray(PROPRIO_NOISE) * jax.random.normal(k_p, prop.shape)
    noisy_scan = scan + s * SCAN_NOISE * jax.random.normal(k_s, scan.shape)
    cmd = task_info["command"]
    state = jnp.concatenate([noisy_prop, noisy_scan, cmd])
    priv = jnp.concatenate([prop, cmd, self.last_action(phys, task_info), 0.1 * self.foot_forces(phys),
                            self.foot_heights(phys), sim_domain.normalize(params), scan])
    return {"state": state.astype(jnp.float32), "privileged_state": priv.astype(jnp.float32)}

  def reward_terms(self, phys_prev: Phys, phys: Phys, action: jax.Array, task_info: dict) -> dict:
    """Unweighted reward terms (SimDist / IsaacLab definitions)."""
    bf = self.base_frame(phys)
    cmd = task_info["command"]
    a_prev = self.last_action(phys_prev, {"t": task_info["t"] - 1})
    lin_err = jnp.sum((cmd[:2] - bf["lin_vel"][:2]) ** 2)
    yaw_err = (cmd[2] - bf["ang_vel"][2]) ** 2
    moving = jnp.linalg.norm(cmd[:2]) > 0.1
    stance = gait_stance(task_info["t"] * self.ctrl_dt, self.cfg.gait_period)
    contact = self.foot_forces(phys) > CONTACT_FORCE_THRESHOLD
    fh = self.foot_heights(phys)
    swing_height = jnp.exp(-0.5 * ((fh - FEET_HEIGHT_TARGET) / FEET_HEIGHT_SIGMA) ** 2)
    hips = phys["qpos"][7:][0::3] - self.default_q[0::3]
    return {
        "tracking_lin_vel": jnp.exp(-lin_err / TRACKING_SIGMA2),
        "tracking_ang_vel": jnp.exp(-yaw_err / TRACKING_SIGMA2),
        "lin_vel_z": bf["lin_vel"][2] ** 2,
        "ang_vel_xy": jnp.sum(bf["ang_vel"][:2] ** 2),
        "torques": jnp.sum(phys["actuator_force"] ** 2),
        "dof_acc": jnp.sum(phys["qacc"][6:] ** 2),
        "action_rate": jnp.sum((action - a_prev) ** 2),
        "flat_orientation": jnp.sum(bf["gravity"][:2] ** 2),
        "hip_deviation": jnp.sum(jnp.abs(hips)),
        "gait": jnp.where(moving, jnp.sum(contact == stance).astype(jnp.float32), 0.0),
        "feet_height": jnp.where(moving, jnp.sum(jnp.where(stance, 0.0, swing_height)), 0.0),
    }

  def reward(self, phys_prev: Phys, phys: Phys, action: jax.Array, params: Params,
             task_info: dict) -> tuple[jax.Array, dict]:
    """Sum of the reward terms x reward scale x ctrl_dt; metrics are the weighted terms (`reward/<term>`)."""
    del params
    terms = self.reward_terms(phys_prev, phys, action, task_info)
    weighted = {k: self.reward_scales[k] * self.ctrl_dt * v for k, v in terms.items()}
    total = sum(weighted.values())
    return total, {f"reward/{k}": v for k, v in weighted.items()}

  def body_clearance(self, phys: Phys) -> jax.Array:
    """Height above the terrain of the trunk corners, the head's lowest point and the knees [13]."""
    bf = self.base_frame(phys)
    pts = bf["pos"] + jnp.asarray(self.body_points) @ bf["rot"].T
    knees = phys["xpos"][self.calf_body_ids]
    pts = jnp.concatenate([pts, knees])
    radius = jnp.concatenate([jnp.zeros(len(self.body_points)), jnp.full((4,), KNEE_RADIUS)])
    return pts[:, 2] - radius - terrain_lib.height(self.terrain, pts[:, :2])

  def terminated(self, phys: Phys, params: Params) -> jax.Array:
    """Whether the trunk tilts past MAX_TILT or a trunk, head or knee point is below the terrain."""
    del params
    g = self.base_frame(phys)["gravity"]
    tilted = g[2] > -np.cos(MAX_TILT)
    contact = jnp.any(self.body_clearance(phys) < 0.0)
    return tilted | contact
