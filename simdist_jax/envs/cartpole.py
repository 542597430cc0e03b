"""CartPole swing-up: a cart on a rail with a hinged pole and a motor on the cart.

Our own MJCF (no collisions; the pole's inertia is set explicitly so the pole length and mass are domain
parameters). Physics dt 0.01 s, 2 substeps -> 50 Hz control. The constraint solver (the hinge's dry friction and the rail
limits are constraints) is capped at 4 iterations / 16 line-search steps: MJX's float32 line search rarely meets
the default tolerance and ran to the default cap of 50, which made MJX 2x slower (`benchmarks/solver_cap.py`:
30.7k vs 63.5k env steps/s at batch 256 on the 2-core CPU, observations within 2.4e-5 over 200 steps) without changing
the physics (MuJoCo C follows the default-option trajectory exactly, `tests/envs/test_cartpole_env.py`). The pole starts hanging down (theta = pi, where
theta = 0 is upright), with the cart position and pole angle drawn uniformly around that state
(`env.init_cart_range`, `env.init_angle_range`). Reward: dm_control's smooth swing-up reward in [0, 1]:
  r = (cos(theta) + 1)/2 * (1 + centered)/2 * (4 + small_control)/5 * (1 + small_velocity)/2
with `tolerance` shaping (gaussian, value 0.1 at the margin) for centered (|x|, margin 2) and small_velocity
(|theta_dot|, margin 5), and quadratic (0 at the margin) for small_control (|u|, margin 1).

Observation `state` (P = 5): [x, cos(theta), sin(theta), x_dot, theta_dot] plus Gaussian noise whose std
is the episode's `obs_noise` domain parameter. E = 0, C = 0.
`privileged_state` (S = 5 + K): the noise-free state and the K domain parameters normalized to [-1, 1] over
the sim ranges.

Domain parameters (K = 7): pole_mass [kg], pole_length [m], cart_damping [N s/m], hinge_damping [N m s/rad],
hinge_friction [N m] (dry friction, `dof_frictionloss`, must stay > 0), motor_gain [N per unit action], obs_noise [std].
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from simdist_jax.envs.base import Phys, Task
from simdist_jax.envs.domain import Domain, Params

PARAM_NAMES = ("pole_mass", "pole_length", "cart_damping", "hinge_damping", "hinge_friction",
               "motor_gain", "obs_noise")

_XML = """
<mujoco model="simdist_cartpole">
  <option timestep="0.01" integrator="Euler" iterations="4" ls_iterations="16">
    <flag contact="disable"/>
  </option>
  <worldbody>
    <geom name="rail" type="capsule" fromto="-3 0 0 3 0 0" size="0.02" contype="0" conaffinity="0"/>
    <body name="cart" pos="0 0 0">
      <joint name="slider" type="slide" axis="1 0 0" limited="true" range="-2.5 2.5" damping="0.0"/>
      <inertial pos="0 0 0" mass="1.0" diaginertia="0.01 0.01 0.01"/>
      <geom name="cart" type="box" size="0.2 0.15 0.1" contype="0" conaffinity="0"/>
      <body name="pole" pos="0 0 0">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="0.0" frictionloss="0.001"/>
        <inertial pos="0 0 0.5" mass="0.1" diaginertia="0.00833 0.00833 0.00001"/>
        <geom name="pole" type="capsule" fromto="0 0 0 0 0 1" size="0.045" contype="0" conaffinity="0"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="slide" joint="slider" gear="1" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


def _tolerance_gaussian(x: jax.Array, margin: float, value_at_margin: float = 0.1) -> jax.Array:
  """dm_control `tolerance(x, bounds=(0, 0), margin, sigmoid='gaussian')`."""
  scale = jnp.sqrt(-2.0 * jnp.log(value_at_margin))
  return jnp.exp(-0.5 * (x / margin * scale) ** 2)


def _tolerance_quadratic(x: jax.Array, margin: float) -> jax.Array:
  """dm_control `tolerance(x, bounds=(0, 0), margin, sigmoid='quadratic', value_at_margin=0)`."""
  return jnp.maximum(1.0 - (x / margin) ** 2, 0.0)


def swingup_reward(x: jax.Array, cos_theta: jax.Array, theta_dot: jax.Array, u: jax.Array) -> jax.Array:
  """Smooth swing-up reward in [0, 1] (see module docstring)."""
  upright = (cos_theta + 1.0) / 2.0
  centered = (1.0 + _tolerance_gaussian(x, 2.0)) / 2.0
  small_control = (4.0 + _tolerance_quadratic(u, 1.0)) / 5.0
  small_velocity = (1.0 + _tolerance_gaussian(theta_dot, 5.0)) / 2.0
  return upright * centered * small_control * small_velocity


class CartPole(Task):
  """CartPole swing-up task (see module docstring)."""

  name = "cartpole"
  param_names = PARAM_NAMES
  domain_fields = ("body_mass", "body_ipos", "body_inertia", "dof_damping", "dof_frictionloss",
                   "actuator_gainprm")
  phys_fields = ("qpos", "qvel", "ctrl", "time")

  def __init__(self, ctrl_dt: float = 0.02, init_noise: float = 0.01, init_cart_range: float = 0.0,
               init_angle_range: float = 0.0, solver_iterations: int = 4, solver_ls_iterations: int = 16):
    """Initial state: x_0 ~ U[-init_cart_range, init_cart_range], theta_0 ~ pi + U[-init_angle_range,
    init_angle_range], plus N(0, init_noise^2) on both positions and both velocities.

    `solver_iterations` / `solver_ls_iterations`: the constraint solver's caps in `mj_model()` (both backends);
    the shipped 4 / 16 are the XML's (MuJoCo's defaults are 100 / 50; benchmarks/solver_cap.py compares them)."""
    if min(solver_iterations, solver_ls_iterations) < 1:
      raise ValueError(f"solver_iterations ({solver_iterations}) and solver_ls_iterations "
                       f"({solver_ls_iterations}) must be >= 1")
    if min(init_noise, init_cart_range, init_angle_range) < 0:
      raise ValueError(f"init_noise ({init_noise}), init_cart_range ({init_cart_range}) and init_angle_range "
                       f"({init_angle_range}) must be >= 0")
    if init_cart_range >= 2.5:
      raise ValueError(f"init_cart_range {init_cart_range} must be < 2.5 (the rail limit)")
    self.ctrl_dt = ctrl_dt
    self.init_noise = init_noise
    self.init_cart_range = init_cart_range
    self.init_angle_range = init_angle_range
    self.solver_iterations = int(solver_iterations)
    self.solver_ls_iterations = int(solver_ls_iterations)

  def validate_domain(self, domain: Domain) -> None:
    """Also requires hinge_friction > 0, the other ranges >= 0 and pole_mass, pole_length, motor_gain > 0."""
    super().validate_domain(domain)
    lo = dict((n, l) for n, l, _ in domain.ranges)
    if lo["hinge_friction"] <= 0.0:
      # MJX keeps the friction-loss constraint row of the nominal model; MuJoCo C drops rows whose
      # frictionloss is 0, so the backends only agree when it stays strictly positive.
      raise ValueError(f"domain '{domain.name}': hinge_friction must be > 0 (got low {lo['hinge_friction']})")
    for n, l, _ in domain.ranges:
      if n != "hinge_friction" and l < 0.0:
        raise ValueError(f"domain '{domain.name}': {n} must be >= 0 (got low {l})")
    if lo["pole_mass"] <= 0.0 or lo["pole_length"] <= 0.0 or lo["motor_gain"] <= 0.0:
      raise ValueError(f"domain '{domain.name}': pole_mass, pole_length and motor_gain must be > 0")

  def mj_model(self) -> mujoco.MjModel:
    """The cart-pole MuJoCo model (from the XML above, with the constructor's solver caps)."""
    model = mujoco.MjModel.from_xml_string(_XML)
    model.opt.iterations = self.solver_iterations
    model.opt.ls_iterations = self.solver_ls_iterations
    return model

  @property
  def dims(self) -> dict:
    """P = 5, E = 0, A = 1, C = 0, S = 5 + number of domain parameters."""
    return {"proprio": 5, "extero": 0, "extero_shape": (), "action": 1, "command": 0,
            "privileged": 5 + len(PARAM_NAMES)}

  def domain_updates(self, nominal: Mapping[str, jax.Array], params: Params) -> dict:
    """Pole mass, length (COM and inertia of a thin rod), joint damping, hinge friction and motor gain of `params`."""
    pole = 2  # body ids: 0 world, 1 cart, 2 pole
    m, length = params["pole_mass"], params["pole_length"]
    i_t = m * length ** 2 / 12.0
    body_mass = nominal["body_mass"].at[pole].set(m)
    body_ipos = nominal["body_ipos"].at[pole].set(jnp.array([0.0, 0.0, 0.5]) * length)
    body_inertia = nominal["body_inertia"].at[pole].set(jnp.stack([i_t, i_t, jnp.float32(1e-5)]))
    dof_damping = jnp.stack([params["cart_damping"], params["hinge_damping"]])
    dof_frictionloss = jnp.stack([jnp.float32(0.0), params["hinge_friction"]])
    gainprm = nominal["actuator_gainprm"].at[0, 0].set(params["motor_gain"])
    return {"body_mass": body_mass, "body_ipos": body_ipos, "body_inertia": body_inertia,
            "dof_damping": dof_damping, "dof_frictionloss": dof_frictionloss, "actuator_gainprm": gainprm}

  def initial_state(self, key: jax.Array, params: Params, previous: dict | None = None):
    """Pole hanging down (theta = pi) at the rail centre, spread and noise as set in `__init__`; task_info {"t": 0}.
    No curriculum: `previous` is ignored."""
    del params, previous
    k1, k2, k3 = jax.random.split(key, 3)
    spread = jnp.array([self.init_cart_range, self.init_angle_range])
    qpos = (jnp.array([0.0, jnp.pi]) + spread * jax.random.uniform(k3, (2,), minval=-1.0, maxval=1.0)
            + self.init_noise * jax.random.normal(k1, (2,)))
    qvel = self.init_noise * jax.random.normal(k2, (2,))
    return qpos, qvel, {"t": jnp.zeros((), jnp.int32)}

  def advance_info(self, task_info: dict, key: jax.Array, phys: Phys) -> dict:
    """Increments the step counter `t`."""
    del key, phys
    return {"t": task_info["t"] + 1}

  def success(self, metrics: Mapping[str, float]) -> bool:
    """The pole is up: cos(theta) > 0.9, i.e. the `upright` metric (cos + 1) / 2 > 0.95."""
    return bool(metrics["upright"] > 0.95)

  def reference_controllers(self) -> dict:
    """Zero action and the one-line energy pump a = clip(-3 theta_dot cos theta, -1, 1) on the observed state."""
    def energy_pump(obs):
      return np.clip(np.asarray([-3.0 * obs[4] * obs[1]], np.float32), -1.0, 1.0)
    return {**super().reference_controllers(), "energy_pump": energy_pump}

  def clean_state(self, phys: Phys) -> jax.Array:
    """Noise-free [x, cos, sin, x_dot, theta_dot]."""
    x, th = phys["qpos"][0], phys["qpos"][1]
    return jnp.stack([x, jnp.cos(th), jnp.sin(th), phys["qvel"][0], phys["qvel"][1]])

  def observe(self, phys: Phys, params: Params, task_info: dict, noise_key: jax.Array,
              sim_domain: Domain) -> dict:
    """Noisy clean state (per-episode `obs_noise` sigma) and privileged [clean state, normalized domain parameters]."""
    del task_info
    s = self.clean_state(phys)
    noisy = s + params["obs_noise"] * jax.random.normal(noise_key, s.shape)
    priv = jnp.concatenate([s, sim_domain.normalize(params)])
    return {"state": noisy.astype(jnp.float32), "privileged_state": priv.astype(jnp.float32)}

  def reward(self, phys_prev: Phys, phys: Phys, action: jax.Array, params: Params,
             task_info: dict) -> tuple[jax.Array, dict]:
    """The swing-up reward of the clipped action, and metrics `upright` ((cos + 1) / 2) and `cart_pos_abs`."""
    del phys_prev, params, task_info
    u = jnp.clip(action[0], -1.0, 1.0)
    x, th, th_dot = phys["qpos"][0], phys["qpos"][1], phys["qvel"][1]
    r = swingup_reward(x, jnp.cos(th), th_dot, u)
    return r, {"upright": (jnp.cos(th) + 1.0) / 2.0, "cart_pos_abs": jnp.abs(x)}
