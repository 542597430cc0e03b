"""Our own Unitree Go2 MJCF, built from primitive geoms and the public model facts.

Sources: /work/shared/reference/go2_model_facts.md (Menagerie `unitree_go2` numbers and the SimDist official
code). The trunk mass/COM/inertia, the link masses, the link offsets, the joint ranges and the home pose are
the facts sheet's. The facts sheet gives no inertia for hip/thigh/calf; we use the diagonal of Menagerie's
full inertia tensors (approximate, off-diagonal terms dropped) with their COM offsets. Only the four foot
spheres collide (with the terrain); the other geoms are visual/termination shapes (`contype=conaffinity=0`):
base/thigh contact is detected analytically against the terrain height function (see `task.py`), which keeps
MJX's static contact set at 4 feet x terrain geoms.

Joint and actuator order is SimDist's (Unitree) order: FR, FL, RR, RL x (hip/abduction, thigh, calf); the
bodies are declared in that order so `qpos[7:19]`, `qvel[6:18]`, `ctrl` and `actuator_force` all use it.

Actuation: position-like `general` actuators (gain Kp, affine bias (0, -Kp, -Kd)), i.e. the SimDist PD
Kp 25, Kd 0.5, torque-clipped at +-23.5 Nm (the DC motor's saturation; its torque-speed curve is not
modelled). Passive joint damping 0, armature 0.01, joint dry friction (`frictionloss`) nominal 0.01 > 0 so
MJX keeps the constraint rows (see envs/base.py notes).

Solver (MJX-friendly): dt 0.005 (4 substeps -> 50 Hz), Newton, iterations 4, ls_iterations 8, pyramidal
cone, impratio 100 (go2_mjx.xml), condim 3 on the feet, Euler integrator with `eulerdamp` disabled (valid:
there is no passive joint damping for it to act on).

Foot contact parameters are domain parameters (friction, restitution via solref damping ratio). Terrain
geoms use friction 0.01 and solmix 1e-6 so that, under MuJoCo's mixing rules (friction: max; solref/solimp:
solmix-weighted average), the foot's material sets the contact; a terrain element can override that with its
own friction and a large solmix (e.g. the foam pads of `worlds.py`).
"""

from __future__ import annotations

import numpy as np

from simdist_jax.envs.go2 import terrain as terrain_lib

LEGS = ("FR", "FL", "RR", "RL")  # Unitree order
# (x sign, y sign) of each leg's hip.
LEG_SIGNS = {"FR": (1.0, -1.0), "FL": (1.0, 1.0), "RR": (-1.0, -1.0), "RL": (-1.0, 1.0)}
JOINTS_PER_LEG = ("hip", "thigh", "calf")
JOINT_NAMES = tuple(f"{leg}_{j}_joint" for leg in LEGS for j in JOINTS_PER_LEG)

# Home pose per leg (abduction, hip pitch, knee), Menagerie's "home" keyframe.
HOME_LEG = (0.0, 0.9, -1.8)
HOME_POSE = np.array(HOME_LEG * 4, np.float64)
# SimDist's default joint pose (official code `ISAAC_DEFAULT_JOINT_ANGLES`, Unitree order): hip +-0.1 (right
# legs -0.1), front thigh 0.8, rear thigh 1.0, calf -1.5. The PD target offset and the joint-position
# observation reference of SimDist. Under Kp 25 the crouched Menagerie home pose sags and tips over in our
# model (see docs/go2.md), while this more extended pose stands.
ISAAC_DEFAULT_POSE = np.array([-0.1, 0.8, -1.5, 0.1, 0.8, -1.5, -0.1, 1.0, -1.5, 0.1, 1.0, -1.5], np.float64)
DEFAULT_POSES = {"isaac": ISAAC_DEFAULT_POSE, "home": HOME_POSE}

# Masses [kg] (facts sheet).
BASE_MASS = 6.921
HIP_MASS = 0.678
THIGH_MASS = 1.152
CALF_MASS = 0.241352
TOTAL_MASS = BASE_MASS + 4 * (HIP_MASS + THIGH_MASS + CALF_MASS)  # 15.206408
BASE_IPOS = (0.021112, 0.0, -0.005366)
BASE_INERTIA = (0.107027, 0.0980771, 0.0244531)

# Link offsets [m] (facts sheet).
HIP_OFFSET = (0.1934, 0.0465, 0.0)     # x sign by front/rear, y sign by left/right
THIGH_OFFSET_Y = 0.0955                 # y sign by left/right
CALF_OFFSET_Z = -0.213
FOOT_OFFSET = (-0.002, 0.0, -0.213)
FOOT_RADIUS = 0.022
HOME_HEIGHT = 0.27                      # Menagerie keyframe base height

# Joint ranges [rad] (facts sheet).
RANGE_HIP = (-1.0472, 1.0472)
RANGE_THIGH = (-1.5708, 3.4907)
RANGE_CALF = (-2.7227, -0.83776)

# Actuation (SimDist).
KP = 25.0
KD = 0.5
TORQUE_LIMIT = 23.5
ARMATURE = 0.01
JOINT_FRICTION_NOMINAL = 0.01  # must stay > 0 (MJX keeps the nominal model's constraint rows)

# Contact.
FOOT_FRICTION_NOMINAL = 0.8
FOOT_SOLREF_NOMINAL = (0.02, 1.0)       # (time constant, damping ratio); ratio < 1 = restitution
TERRAIN_FRICTION = 0.01                 # foot friction dominates (max rule)
TERRAIN_SOLMIX = 1e-6                   # foot solref/solimp dominate (weighted mix)
TOUCH_SITE_RADIUS = FOOT_RADIUS + 0.006

# Trunk shapes (facts sheet), used for visuals and the analytic base-contact termination.
TRUNK_HALF = (0.1881, 0.04675, 0.057)
HEAD_SPHERE_POS = (0.293, 0.0, -0.06)
HEAD_SPHERE_R = 0.047

# Diagonal inertias / COM offsets of the leg links (Menagerie, left-front frame; approximate).
_HIP_IPOS = (-0.0054, 0.00194, -0.000105)
_HIP_INERTIA = (0.00048, 0.000884, 0.000596)
_THIGH_IPOS = (-0.00374, -0.0223, -0.0327)
_THIGH_INERTIA = (0.00584, 0.0058, 0.00103)
_CALF_IPOS = (0.00629595, -0.000622121, -0.141417)
_CALF_INERTIA = (0.0014901, 0.00146356, 5.11494e-05)


def _v(x) -> str:
  return " ".join(f"{float(a):.9g}" for a in x)


def _leg_xml(leg: str) -> str:
  sx, sy = LEG_SIGNS[leg]
  hip_pos = (sx * HIP_OFFSET[0], sy * HIP_OFFSET[1], 0.0)
  hip_ipos = (sx * _HIP_IPOS[0], sy * _HIP_IPOS[1], _HIP_IPOS[2])
  thigh_ipos = (_THIGH_IPOS[0], sy * _THIGH_IPOS[1], _THIGH_IPOS[2])
  calf_ipos = (_CALF_IPOS[0], sy * _CALF_IPOS[1], _CALF_IPOS[2])
  return f"""
      <body name="{leg}_hip" pos="{_v(hip_pos)}">
        <inertial pos="{_v(hip_ipos)}" mass="{HIP_MASS}" diaginertia="{_v(_HIP_INERTIA)}"/>
        <joint name="{leg}_hip_joint" class="abduction"/>
        <geom class="visual" type="cylinder" size="0.046 0.02" pos="0 {sy * 0.03:.4f} 0" zaxis="0 1 0"/>
        <body name="{leg}_thigh" pos="0 {sy * THIGH_OFFSET_Y:.6g} 0">
          <inertial pos="{_v(thigh_ipos)}" mass="{THIGH_MASS}" diaginertia="{_v(_THIGH_INERTIA)}"/>
          <joint name="{leg}_thigh_joint" class="hip"/>
          <geom class="visual" type="capsule" size="0.0245" fromto="0 0 0 0 0 {CALF_OFFSET_Z}"/>
          <body name="{leg}_calf" pos="0 0 {CALF_OFFSET_Z}">
            <inertial pos="{_v(calf_ipos)}" mass="{CALF_MASS}" diaginertia="{_v(_CALF_INERTIA)}"/>
            <joint name="{leg}_calf_joint" class="knee"/>
            <geom class="visual" type="capsule" size="0.012" fromto="0 0 0 {_v(FOOT_OFFSET)}"/>
            <geom name="{leg}_foot" class="foot" pos="{_v(FOOT_OFFSET)}"/>
            <site name="{leg}_foot" pos="{_v(FOOT_OFFSET)}" type="sphere" size="{TOUCH_SITE_RADIUS}"/>
          </body>
        </body>
      </body>"""


def build_xml(terrain=None) -> str:
  """The Go2 MJCF on `terrain` (a Terrain or HeightField; default: flat ground). A HeightField's elevation
  data is not in the XML: compile with `build_model` (or call `terrain.write_model_data` on the model)."""
  terrain = terrain or terrain_lib.flat()
  assets = terrain_lib.mjcf_assets(terrain)
  assets = f"  <asset>\n{assets}\n  </asset>\n" if assets else ""
  legs = "".join(_leg_xml(leg) for leg in LEGS)
  actuators = "\n".join(
      f'    <general name="{j.replace("_joint", "")}" joint="{j}" class="pd"/>' for j in JOINT_NAMES)
  touch = "\n".join(f'    <touch name="{leg}_touch" site="{leg}_foot"/>' for leg in LEGS)
  return f"""
<mujoco model="simdist_go2">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.005" iterations="4" ls_iterations="8" cone="pyramidal" impratio="100"
          integrator="Euler" solver="Newton">
    <flag eulerdamp="disable"/>
  </option>
  <size memory="8M"/>
  <default>
    <joint damping="0" armature="{ARMATURE}" frictionloss="{JOINT_FRICTION_NOMINAL}"/>
    <geom contype="0" conaffinity="0" condim="3"/>
    <default class="abduction"><joint axis="1 0 0" range="{_v(RANGE_HIP)}"/></default>
    <default class="hip"><joint axis="0 1 0" range="{_v(RANGE_THIGH)}"/></default>
    <default class="knee"><joint axis="0 1 0" range="{_v(RANGE_CALF)}"/></default>
    <default class="visual"><geom contype="0" conaffinity="0" group="2" density="0"/></default>
    <default class="foot">
      <geom type="sphere" size="{FOOT_RADIUS}" contype="1" conaffinity="0" condim="3" density="0"
            friction="{FOOT_FRICTION_NOMINAL} 0.02 0.01" solref="{_v(FOOT_SOLREF_NOMINAL)}"
            solimp="0.9 0.95 0.001" solmix="1"/>
    </default>
    <default class="terrain">
      <geom contype="0" conaffinity="1" condim="3" friction="{TERRAIN_FRICTION} 0.005 0.0001"
            solmix="{TERRAIN_SOLMIX}" group="0"/>
    </default>
    <default class="pd">
      <general gaintype="fixed" biastype="affine" gainprm="{KP}" biasprm="0 {-KP} {-KD}"
               forcelimited="true" forcerange="{-TORQUE_LIMIT} {TORQUE_LIMIT}"/>
    </default>
  </default>
{assets}  <worldbody>
    <light pos="0 0 3" dir="0 0 -1" directional="true"/>
{terrain_lib.to_mjcf(terrain)}
    <body name="base" pos="0 0 {HOME_HEIGHT}">
      <freejoint name="root"/>
      <inertial pos="{_v(BASE_IPOS)}" mass="{BASE_MASS}" diaginertia="{_v(BASE_INERTIA)}"/>
      <geom name="trunk" class="visual" type="box" size="{_v(TRUNK_HALF)}"/>
      <geom name="head" class="visual" type="cylinder" size="0.05 0.045" pos="0.285 0 0.01" zaxis="0 1 0"/>
      <geom name="head_low" class="visual" type="sphere" size="{HEAD_SPHERE_R}" pos="{_v(HEAD_SPHERE_POS)}"/>
      <site name="imu" pos="-0.02557 0 0.04232"/>{legs}
    </body>
  </worldbody>
  <actuator>
{actuators}
  </actuator>
  <sensor>
{touch}
  </sensor>
  <keyframe>
    <key name="home" qpos="0 0 {HOME_HEIGHT} 1 0 0 0 {_v(HOME_POSE)}" ctrl="{_v(HOME_POSE)}"/>
  </keyframe>
</mujoco>
"""


def build_model(terrain=None):
  """Compiled `mujoco.MjModel` of `build_xml(terrain)`, with a HeightField's elevation data written in."""
  import mujoco  # pylint: disable=import-outside-toplevel
  m = mujoco.MjModel.from_xml_string(build_xml(terrain))
  terrain_lib.write_model_data(terrain or terrain_lib.flat(), m)
  return m
