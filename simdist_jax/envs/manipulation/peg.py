"""Peg Insertion (SimDist's manipulation task, Factory-like 16 mm square peg) for the MJX env and the MuJoCo C twin.

Shapes: A = 7 actions, P = 24 proprio, E = 0, C = 0, S = 24 + K privileged, K = 9 domain parameters.
Control at 5 Hz (ctrl_dt 0.2 s = 40 physics substeps of 5 ms). The peg is held from the start (model.py).

Action a [7] in [-1, 1] (clipped): a relative end-effector pose target, SimDist's interface:
  a[0:3] translation of the hand target x `pos_scale` [m] (world frame), a[3:6] a rotation vector x `rot_scale`
  [rad] applied in the world frame on the left of the target orientation, a[6] the gripper command. The peg is
  grasped rigidly at the start and the grasp cannot open or slip, so a[6] has no physical effect (it is kept so the
  interface is the paper's 6-D pose + gripper; it enters nothing but the action history the world model sees).
  The target is integrated (as a robot's servo set-point): target_t = q_t + clip(target_{t-1} - q_t, +-lead) +
  delta, i.e. it may lead the measured pose by at most `max_lead_pos` / `max_lead_rot` (which bounds the contact
  force to about kp x lead), then is clipped to the joint ranges. At the episode's first step target_{-1} = q_0.
  Orientation targets are composed as R_target = exp([rot_scale a[3:6]]) R(target_{t-1}) and written back as the
  stage's (yaw, pitch, roll) servo targets.
Observation `state` = proprio [24] (E = C = 0):
  stage joints q [6] (hand position [m] and yaw, pitch, roll [rad]), velocities [6], servo set-point lead
  target - q [6] (0 at reset), and "what a camera stack would give", as state: the peg tip's position in the hole
  frame [3] (origin at the centre of the opening's top, fixture yaw) and the rotation vector of the peg relative to
  the fixture [3]. Perception noise: N(0, obs_noise^2) on the tip position and N(0, (ROT_NOISE_PER_M obs_noise)^2)
  on the rotation vector, a fresh draw every step; small fixed encoder noise `JOINT_NOISE` on q and q_dot. No
  images (a batched renderer is out of reach on CPU): the world model's extero slot (E, its CNN branch) stays
  free for an image encoder.
`privileged_state` [S = 24 + K], noise-free: the clean proprio | domain parameters normalized to [-1, 1] over
  the sim ranges.
Domain parameters (K = 9, per episode): friction (the peg's sliding friction, which every peg contact uses),
  peg_mass [kg], kp_scale and kd_scale (servo stiffness and damping x scale: the controller's compliance),
  fixture_dx, fixture_dy [m] and fixture_yaw [rad] (the fixture's pose offset from nominal), clearance [m]
  (diametral, opening side = 16 mm + clearance) and obs_noise [m] (perception noise std).
Reward (dense, for the expert): weighted sum of the terms of `reward_terms` (REWARD_TERMS); metrics `reward/<term>`
  plus success, depth, lateral, orient_err, keypoint_dist.
Success (`success_depth` d): the tip is at least d below the hole's top and within the opening (|x|, |y| < 8 mm from
  the hole axis in the hole frame; outside the fixture the table is 25 mm below the hole's top, so depth alone
  would count a peg beside the fixture).
Initial states: training draws (`initial_state`) "far" starts over the Wide span, "near" starts above the hole, and
  "inserted" starts partly in the hole (OmniReset-style diverse resets, probabilities `init_probs`); evaluations
  start from the fixed grids of grids.py (`initial_state_at`).
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
from simdist_jax.envs.manipulation import grids as grids_lib
from simdist_jax.envs.manipulation import kinematics as kin
from simdist_jax.envs.manipulation import model as model_lib

PARAM_NAMES = ("friction", "peg_mass", "kp_scale", "kd_scale", "fixture_dx", "fixture_dy", "fixture_yaw",
               "clearance", "obs_noise")
REWARD_TERMS = ("keypoint", "align", "depth", "success", "orientation", "action")
DEFAULT_REWARD_SCALES = {"keypoint": 0.5, "align": 0.5, "depth": 1.0, "success": 1.0, "orientation": -0.5,
                         "action": -0.01}
KEYPOINT_SCALE = 0.05   # m: keypoint = 1 - tanh(|tip - seat| / 0.05)
ALIGN_SCALE = 0.005     # m: align = 1 - tanh(lateral / 0.005)
ROT_NOISE_PER_M = 10.0  # rad of rotation-vector noise per m of position noise (1 mm <-> 0.01 rad)
JOINT_NOISE = np.array((1e-4,) * 3 + (1e-3,) * 3 + (1e-3,) * 3 + (1e-2,) * 3, np.float32)  # q, q_dot
PROPRIO = 24


@dataclasses.dataclass(frozen=True)
class PegConfig:
  """Static task settings (from `config.env`; experiments/configs/peg_insertion.py documents each)."""

  ctrl_dt: float = 0.2
  pos_scale: float = 0.02
  rot_scale: float = 0.05
  max_lead_pos: float = 0.02
  max_lead_rot: float = 0.1
  success_depth: float = 0.02
  init_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)   # far, near, inserted
  init_far_xy: float = 0.175       # far starts: tip xy ~ U(+-r) around the nominal hole axis [m]
  init_near_xy: float = 0.01       # near starts: U(+-r) [m]
  init_height: tuple[float, float] = (0.01, 0.08)  # far / near starts: tip above the hole's top [m]
  init_rot: float = 0.05           # far / near starts: yaw, pitch, roll ~ U(+-r) [rad]
  init_inserted_depth: tuple[float, float] = (0.0, 0.015)  # inserted starts: tip depth in the hole [m]
  grid_height: float = grids_lib.GRID_START_HEIGHT
  world: str | None = "tight_sticky"  # the shifted world whose fixed values domain.real must hold (worlds.py)
  reward_scales: tuple[tuple[str, float], ...] = tuple(DEFAULT_REWARD_SCALES.items())

  @classmethod
  def from_env_cfg(cls, env_cfg) -> "PegConfig":
    """Builds from a `config.env` mapping; keys that are not fields (episode_length, ...) are ignored."""
    return base.fields_from_env_cfg(cls, env_cfg, REWARD_TERMS, number=float)


class PegInsertion(Task):
  """Peg insertion with a Cartesian end-effector stage (module docstring)."""

  name = "peg_insertion"
  param_names = PARAM_NAMES
  domain_fields = ("body_pos", "body_quat", "geom_pos", "geom_friction", "body_mass", "body_inertia",
                   "body_subtreemass", "actuator_gainprm", "actuator_biasprm", "dof_damping")
  phys_fields = ("qpos", "qvel", "ctrl", "time")
  condition_grids = tuple(grids_lib.GRIDS)

  def __init__(self, cfg: PegConfig | None = None):
    self.cfg = cfg or PegConfig()
    from simdist_jax.envs.manipulation import worlds  # pylint: disable=import-outside-toplevel
    if self.cfg.world is not None and self.cfg.world not in worlds.WORLDS:
      raise ValueError(f"env.world must be one of {sorted(worlds.WORLDS)}, got {self.cfg.world!r}")
    scales = dict(self.cfg.reward_scales)
    if set(scales) != set(REWARD_TERMS):
      raise ValueError(f"reward_scales must have exactly the terms {REWARD_TERMS}, got {sorted(scales)}")
    probs = np.asarray(self.cfg.init_probs, np.float64)
    if probs.shape != (3,) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
      raise ValueError(f"init_probs must be 3 non-negative numbers summing to 1, got {self.cfg.init_probs}")
    if not 0.0 < self.cfg.success_depth <= model_lib.HOLE_DEPTH:
      raise ValueError(f"success_depth must lie in (0, {model_lib.HOLE_DEPTH}], got {self.cfg.success_depth}")
    self.reward_scales = scales
    self.ctrl_dt = float(self.cfg.ctrl_dt)
    self._xml = model_lib.build_xml()
    m = self.mj_model()
    ids = lambda t, n: mujoco.mj_name2id(m, t, n)  # noqa: E731
    self.fixture_id = ids(mujoco.mjtObj.mjOBJ_BODY, "fixture")
    self.peg_body_id = ids(mujoco.mjtObj.mjOBJ_BODY, "peg")
    self.peg_geom_id = ids(mujoco.mjtObj.mjOBJ_GEOM, "peg")
    self.wall_ids = np.array([ids(mujoco.mjtObj.mjOBJ_GEOM, f"wall_{n}") for n in ("px", "nx", "py", "ny")])
    anc, b = [], self.peg_body_id
    while b > 0:
      anc.append(b)
      b = int(m.body_parentid[b])
    self.peg_ancestors = np.array(anc + [0])  # the peg and every body above it, world included
    lo = [r[0] for r in model_lib.SLIDE_RANGE] + [model_lib.HINGE_RANGE[0]] * 3
    hi = [r[1] for r in model_lib.SLIDE_RANGE] + [model_lib.HINGE_RANGE[1]] * 3
    self.q_low, self.q_high = np.array(lo, np.float32), np.array(hi, np.float32)

  # ---- Task API -------------------------------------------------------------------------------------
  def mj_model(self) -> mujoco.MjModel:
    """The stage, peg and fixture model (model.py)."""
    return mujoco.MjModel.from_xml_string(self._xml)

  @property
  def dims(self) -> dict:
    """P = 24, E = 0, A = 7, C = 0, S = 24 + K."""
    return {"proprio": PROPRIO, "extero": 0, "extero_shape": (), "action": 7, "command": 0,
            "privileged": PROPRIO + len(PARAM_NAMES)}

  def validate_domain(self, domain: Domain) -> None:
    """Also: friction, peg_mass, kp/kd_scale > 0; clearance in (0, 4 mm]; |fixture offset| <= 5 cm and
    |yaw| <= 0.3 rad; obs_noise >= 0; the `real` domain must hold exactly env.world's fixed values."""
    super().validate_domain(domain)
    if domain.name == "real" and self.cfg.world is not None:
      from simdist_jax.envs.manipulation import worlds  # pylint: disable=import-outside-toplevel
      domain.check_holds(worlds.get_world(self.cfg.world).domain_dict(), self.cfg.world)
    lo = {n: l for n, l, _ in domain.ranges}
    hi = {n: h for n, _, h in domain.ranges}
    for n in ("friction", "peg_mass", "kp_scale", "kd_scale"):
      if lo[n] <= 0.0:
        raise ValueError(f"domain '{domain.name}': {n} must be > 0 (got low {lo[n]})")
    if lo["clearance"] <= 0.0 or hi["clearance"] > 0.004:
      raise ValueError(f"domain '{domain.name}': clearance must lie in (0, 0.004] m, got "
                       f"({lo['clearance']}, {hi['clearance']})")
    for n, bound in (("fixture_dx", 0.05), ("fixture_dy", 0.05), ("fixture_yaw", 0.3)):
      if max(abs(lo[n]), abs(hi[n])) > bound:
        raise ValueError(f"domain '{domain.name}': |{n}| must be <= {bound}, got ({lo[n]}, {hi[n]})")
    if lo["obs_noise"] < 0.0:
      raise ValueError(f"domain '{domain.name}': obs_noise must be >= 0")

  def domain_updates(self, nominal: Mapping[str, jax.Array], params: Params) -> dict:
    """Fixture pose, wall positions (clearance), peg friction and mass (inertia of a uniform box), servo gains."""
    fx, fy = model_lib.FIXTURE_POS
    yaw = params["fixture_yaw"]
    body_pos = nominal["body_pos"].at[self.fixture_id].set(
        jnp.stack([fx + params["fixture_dx"], fy + params["fixture_dy"], jnp.float32(0.0)]))
    body_quat = nominal["body_quat"].at[self.fixture_id].set(
        jnp.stack([jnp.cos(yaw / 2), jnp.float32(0.0), jnp.float32(0.0), jnp.sin(yaw / 2)]))
    w = model_lib.PEG_HALF + 0.5 * params["clearance"] + model_lib.WALL_HALF_T
    z = jnp.float32(0.5 * model_lib.HOLE_DEPTH)
    zero = jnp.float32(0.0)
    walls = jnp.stack([jnp.stack([w, zero, z]), jnp.stack([-w, zero, z]), jnp.stack([zero, w, z]),
                       jnp.stack([zero, -w, z])])
    geom_pos = nominal["geom_pos"].at[self.wall_ids].set(walls)
    friction = nominal["geom_friction"].at[self.peg_geom_id, 0].set(params["friction"])
    m = params["peg_mass"]
    body_mass = nominal["body_mass"].at[self.peg_body_id].set(m)
    body_inertia = nominal["body_inertia"].at[self.peg_body_id].set(jnp.asarray(model_lib.peg_inertia(1.0)) * m)
    subtree = nominal["body_subtreemass"].at[self.peg_ancestors].add(m - model_lib.NOMINAL_PEG_MASS)
    kp = jnp.asarray(model_lib.KP, jnp.float32) * params["kp_scale"]
    kd = jnp.asarray(model_lib.KD, jnp.float32) * params["kd_scale"]
    gain = nominal["actuator_gainprm"].at[:, 0].set(kp)
    bias = nominal["actuator_biasprm"].at[:, 1].set(-kp)
    return {"body_pos": body_pos, "body_quat": body_quat, "geom_pos": geom_pos, "geom_friction": friction,
            "body_mass": body_mass, "body_inertia": body_inertia, "body_subtreemass": subtree,
            "actuator_gainprm": gain, "actuator_biasprm": bias, "dof_damping": kd}

  def _start(self, tip: jax.Array, ypr: jax.Array):
    qpos = jnp.clip(kin.hand_from_tip(tip, ypr), self.q_low, self.q_high).astype(jnp.float32)
    return qpos, jnp.zeros(6, jnp.float32), {"t": jnp.zeros((), jnp.int32)}

  def initial_state(self, key: jax.Array, params: Params, previous: dict | None = None):
    """A diverse reset (module docstring): far (tip over the Wide span, 1-8 cm above the hole's top), near (within
    +-1 cm of the nominal axis) or inserted (aligned with the episode's fixture, tip 0-15 mm into the hole).
    No curriculum: `previous` is ignored."""
    del previous
    c = self.cfg
    k_kind, k_xy, k_h, k_rot, k_d = jax.random.split(key, 5)
    kind = jax.random.choice(k_kind, 3, p=jnp.asarray(c.init_probs, jnp.float32))
    u = jax.random.uniform(k_xy, (2,), minval=-1.0, maxval=1.0)
    xy = jnp.where(kind == 0, c.init_far_xy, c.init_near_xy) * u
    top = jnp.float32(model_lib.HOLE_DEPTH)
    h = jax.random.uniform(k_h, (), minval=c.init_height[0], maxval=c.init_height[1])
    fx, fy = model_lib.FIXTURE_POS
    tip_free = jnp.stack([fx + xy[0], fy + xy[1], top + h])
    ypr_free = jax.random.uniform(k_rot, (3,), minval=-c.init_rot, maxval=c.init_rot)
    # inserted: on the episode's (offset, rotated) hole axis, aligned with the fixture
    depth = jax.random.uniform(k_d, (), minval=c.init_inserted_depth[0], maxval=c.init_inserted_depth[1])
    origin, _ = kin.fixture_frame(params["fixture_dx"], params["fixture_dy"], params["fixture_yaw"])
    tip_in = origin + jnp.stack([jnp.float32(0.0), jnp.float32(0.0), -depth])
    ypr_in = jnp.stack([params["fixture_yaw"], jnp.float32(0.0), jnp.float32(0.0)])
    inserted = kind == 2
    return self._start(jnp.where(inserted, tip_in, tip_free), jnp.where(inserted, ypr_in, ypr_free))

  def initial_conditions(self, grid: str) -> np.ndarray:
    """The Narrow / Wide grid (grids.py): [N, 2] start offsets (dx, dy) of the tip from the nominal hole axis."""
    return grids_lib.get_grid(grid)

  def initial_state_at(self, key: jax.Array, params: Params, condition: jax.Array):
    """Grid start: tip at the nominal hole axis + condition (dx, dy), `grid_height` above the hole's top, peg
    upright and aligned with the nominal fixture. Deterministic (`key` unused)."""
    del key, params
    fx, fy = model_lib.FIXTURE_POS
    tip = jnp.stack([fx + condition[0], fy + condition[1],
                     jnp.float32(model_lib.HOLE_DEPTH + self.cfg.grid_height)])
    return self._start(tip, jnp.zeros(3, jnp.float32))

  def advance_info(self, task_info: dict, key: jax.Array, phys: Phys) -> dict:
    """Increments the step counter `t`."""
    del key, phys
    return {"t": task_info["t"] + 1}

  def previous_target(self, phys: Phys) -> jax.Array:
    """The servo set-point in force before this step (q itself at the episode's first step, time 0)."""
    return jnp.where(phys["time"] <= 0.0, phys["qpos"], phys["ctrl"])

  def action_to_ctrl(self, action: jax.Array, phys: Phys, params: Params) -> jax.Array:
    """Integrated relative pose target (module docstring) -> the 6 servo targets; a[6] (gripper) is unused."""
    del params
    c = self.cfg
    a = jnp.clip(action, -1.0, 1.0)
    q = phys["qpos"]
    prev = self.previous_target(phys)
    pos = q[:3] + jnp.clip(prev[:3] - q[:3], -c.max_lead_pos, c.max_lead_pos) + c.pos_scale * a[:3]
    ang = q[3:6] + jnp.clip(prev[3:6] - q[3:6], -c.max_lead_rot, c.max_lead_rot)
    r = kin.rotvec_to_mat(c.rot_scale * a[3:6]) @ kin.euler_to_mat(ang)
    target = jnp.concatenate([pos, kin.mat_to_euler(r)])
    return jnp.clip(target, self.q_low, self.q_high)

  # ---- quantities -----------------------------------------------------------------------------------
  def relative_pose(self, phys: Phys, params: Params) -> tuple[jax.Array, jax.Array]:
    """True (tip in the hole frame [3], relative rotation vector [3]) of the episode's fixture."""
    return kin.relative_pose(phys["qpos"], params["fixture_dx"], params["fixture_dy"], params["fixture_yaw"])

  def clean_proprio(self, phys: Phys, params: Params) -> jax.Array:
    """Noise-free proprio [24]: q, q_dot, set-point lead (0 at time 0), tip in the hole frame, relative rotation."""
    q = phys["qpos"]
    lead = jnp.where(phys["time"] <= 0.0, jnp.zeros(6), phys["ctrl"] - q)
    tip, rot = self.relative_pose(phys, params)
    return jnp.concatenate([q, phys["qvel"], lead, tip, rot])

  def observe(self, phys: Phys, params: Params, task_info: dict, noise_key: jax.Array,
              sim_domain: Domain) -> dict:
    """Noisy proprio (encoder noise on q, q_dot; perception noise on the relative pose) and the privileged state."""
    del task_info
    s = self.clean_proprio(phys, params)
    k_j, k_p = jax.random.split(noise_key)
    sig = params["obs_noise"]
    joint = jnp.asarray(JOINT_NOISE) * jax.random.normal(k_j, (12,))
    pose = jnp.concatenate([jnp.full(3, sig), jnp.full(3, ROT_NOISE_PER_M * sig)]) * jax.random.normal(k_p, (6,))
    noise = jnp.concatenate([joint, jnp.zeros(6), pose])
    priv = jnp.concatenate([s, sim_domain.normalize(params)])
    return {"state": (s + noise).astype(jnp.float32), "privileged_state": priv.astype(jnp.float32)}

  def insertion(self, tip_rel: jax.Array) -> dict:
    """Depth below the hole's top, lateral distance from the axis, and the success predicate of a tip position in
    the hole frame."""
    depth = -tip_rel[2]
    lateral = jnp.linalg.norm(tip_rel[:2])
    inside = jnp.max(jnp.abs(tip_rel[:2])) < model_lib.PEG_HALF
    success = inside & (depth >= self.cfg.success_depth)
    return {"depth": depth, "lateral": lateral, "success": success.astype(jnp.float32)}

  def reward_terms(self, phys: Phys, action: jax.Array, params: Params) -> tuple[dict, dict]:
    """Unweighted terms and the insertion metrics."""
    tip, rot = self.relative_pose(phys, params)
    ins = self.insertion(tip)
    seat = jnp.array([0.0, 0.0, -model_lib.HOLE_DEPTH])
    dist = jnp.linalg.norm(tip - seat)
    orient = jnp.linalg.norm(rot)
    a = jnp.clip(action, -1.0, 1.0)
    terms = {"keypoint": 1.0 - jnp.tanh(dist / KEYPOINT_SCALE),
             "align": 1.0 - jnp.tanh(ins["lateral"] / ALIGN_SCALE),
             "depth": jnp.clip(ins["depth"] / model_lib.HOLE_DEPTH, 0.0, 1.0) * (ins["lateral"] < model_lib.PEG_HALF),
             "success": ins["success"],
             "orientation": orient,
             "action": jnp.sum(a[:6] ** 2)}
    metrics = {"success": ins["success"], "depth": ins["depth"], "lateral": ins["lateral"],
               "orient_err": orient, "keypoint_dist": dist}
    return terms, metrics

  def reward(self, phys_prev: Phys, phys: Phys, action: jax.Array, params: Params,
             task_info: dict) -> tuple[jax.Array, dict]:
    """Sum of the weighted terms; metrics: `reward/<term>` and the insertion metrics."""
    del phys_prev, task_info
    terms, metrics = self.reward_terms(phys, action, params)
    weighted = {k: self.reward_scales[k] * v for k, v in terms.items()}
    total = sum(weighted.values())
    return total, {**metrics, **{f"reward/{k}": v for k, v in weighted.items()}}

  def success(self, metrics: Mapping[str, float]) -> bool:
    """The peg is seated: the `success` metric (depth >= success_depth inside the opening)."""
    return bool(metrics["success"] > 0.5)

  def reference_controllers(self) -> dict:
    """Zero action and `scripted_insertion` (move above the perceived hole, align, descend) on the observed state."""
    return {**super().reference_controllers(), "scripted_insertion": scripted_insertion(self.cfg)}


def scripted_insertion(cfg: PegConfig, hover: float = 0.01, align_tol: float = 0.001, gain: float = 0.6,
                       rot_gain: float | None = None):
  """A hand-written controller on the observed state (numpy): `fn(state [24]) -> action [7]`.

  Aligns the orientation with the fixture (gain `rot_gain`, default `gain`; 0: translation only), moves the tip `hover` above the perceived hole, and once the lateral error
  is below `align_tol` (or the tip is already in the hole) descends at half speed, correcting the lateral error on
  the way. Errors are read in the hole frame and rotated into the world frame with the perceived fixture yaw."""
  kr = gain if rot_gain is None else float(rot_gain)

  def fn(obs):
    obs = np.asarray(obs, np.float64)
    q, tip, rot = obs[0:6], obs[18:21], obs[21:24]
    yaw_fix = q[3] - rot[2]                       # small-angle: R_fix ~ Rz(yaw_peg - yaw_rel)
    c, s = np.cos(yaw_fix), np.sin(yaw_fix)
    lateral = np.hypot(tip[0], tip[1])
    in_hole = tip[2] < -0.002
    descend = in_hole or lateral < align_tol
    target_z = -model_lib.HOLE_DEPTH - 0.005 if descend else hover
    err_local = np.array([-tip[0], -tip[1], target_z - tip[2]])
    err = np.array([c * err_local[0] - s * err_local[1], s * err_local[0] + c * err_local[1], err_local[2]])
    move = gain * err / cfg.pos_scale
    if descend:
      move[2] = max(move[2], -0.5)
    a = np.zeros(7, np.float32)
    a[:3] = np.clip(move, -1.0, 1.0)
    a[3:6] = np.clip(-kr * rot / cfg.rot_scale, -1.0, 1.0)   # rotate back onto the fixture's frame
    return a

  return fn
