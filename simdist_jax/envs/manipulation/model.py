"""Our own MJCF for the manipulation tasks: a Cartesian end-effector stage holding a square peg over a hole fixture.

Why a Cartesian stage and not a 6-DoF UR5e arm (docs/manipulation.md): the action is a relative end-effector pose
target, so the arm's inverse kinematics and joint-space impedance only sit between the action and the peg. On the
2-core CPU an arm would cost 6 extra link bodies in every MJX substep (a 0.2 s control step at 5 Hz is 40 substeps)
and stiff joint-space PD at the UR5e's link inertias needs a smaller timestep; the stage gives the same action
interface with a Cartesian impedance (PD per axis) that the domain's gain parameters scale. No mocap: every axis is
an actuated joint, so the controller's compliance is part of the physics in both backends.

Kinematic chain (all joints actuated by position servos, PD gains `KP`, `KD` x the domain's scales):
  world -> slide x -> slide y -> slide z -> hinge yaw (z) -> hinge pitch (y) -> hinge roll (x) -> hand.
qpos[0:3] is the wrist centre (the hand frame's origin, the grasp point) in the world frame, qpos[3:6] (yaw, pitch,
roll) its orientation R = Rz(yaw) Ry(pitch) Rx(roll). The peg hangs rigidly from the hand (a grasp that cannot slip):
its tip is `TIP_OFFSET` below the hand origin along the hand's -z, so tip = qpos[:3] + R @ (0, 0, -TIP_OFFSET).
The stage bodies are gravity-compensated (`gravcomp`, as a robot controller compensates its own links); the peg is
the uncompensated payload, so its mass (a domain parameter) sags the stage by m g / kp_z.

Peg and hole (primitive geoms, a static contact set of 5 pairs: the peg box against 4 wall boxes and the table
plane): a 16 mm square peg, 50 mm long (Factory's 16 mm square peg task), and a square hole of side 16 mm +
clearance (diametral clearance c, a domain parameter), 25 mm deep, made of 4 boxes 20 mm thick standing on the table
(the table is the hole's floor). The fixture is a static body whose position and yaw are domain parameters; the
clearance moves the 4 walls (their sizes stay, so their bounding volumes stay valid in both backends). Only the peg
collides (contype 1, conaffinity 0; fixture and table conaffinity 1), so no other pair enters MJX's contact set.
Friction: the fixture and table geoms carry friction `BASE_FRICTION` (0.05) and the peg the domain's friction; under
MuJoCo's max-mixing every peg contact uses the domain's value.

Solver: dt 0.005 s (40 substeps per 0.2 s control step), Euler (joint damping, the servos' D term, is integrated
implicitly), Newton, 8 iterations, 8 line-search steps, pyramidal cones, condim 3.
"""

from __future__ import annotations

import numpy as np

# ---- geometry [m] ----
PEG_HALF = 0.008            # half side of the square peg (16 mm)
PEG_HALF_LEN = 0.025        # half length (50 mm peg)
TIP_OFFSET = 0.040          # hand origin (grasp point) -> peg tip, along the hand's -z
HOLE_DEPTH = 0.025          # wall height = hole depth
WALL_HALF_T = 0.010         # half wall thickness (20 mm walls)
WALL_HALF_L = 0.030         # half wall length (60 mm frame)
FIXTURE_POS = (0.0, 0.0)    # nominal fixture (hole axis) position on the table
NOMINAL_CLEARANCE = 0.001   # diametral clearance of the nominal model (the domain sets the episode's)
BASE_FRICTION = 0.05        # fixture and table friction (the peg's, larger, wins under max-mixing)
NOMINAL_PEG_MASS = 0.05     # kg (the domain sets the episode's)

# ---- stage ----
JOINT_NAMES = ("x", "y", "z", "yaw", "pitch", "roll")
SLIDE_RANGE = ((-0.40, 0.40), (-0.40, 0.40), (0.02, 0.40))
HINGE_RANGE = (-0.8, 0.8)   # yaw, pitch, roll [rad]
# Servo gains per joint: translation [N/m, N s/m], rotation [N m/rad, N m s/rad] (nominal; x kp_scale, kd_scale).
KP = np.array([1500.0, 1500.0, 1500.0, 20.0, 20.0, 20.0])
# D gains near critical damping of the moved masses (x: 6.65 kg, z: 2.65 kg with the peg; wrist ~3e-3 kg m^2 incl.
# armature): zeta ~ 0.9 (x, y), 0.8 (z), 0.9 (wrist), so a set-point step settles within one 0.2 s control step.
KD = np.array([150.0, 150.0, 100.0, 0.5, 0.5, 0.5])
FORCE_LIMIT = np.array([60.0, 60.0, 60.0, 3.0, 3.0, 3.0])   # servo force/torque saturation
ARMATURE = np.array([0.0, 0.0, 0.0, 0.002, 0.002, 0.002])
STAGE_MASSES = (2.0, 2.0, 1.5, 0.3, 0.3, 0.5)   # x, y, z carriages, yaw, pitch, hand bodies [kg]
TIMESTEP = 0.005


def wall_positions(clearance) -> np.ndarray:
  """Centres of the 4 wall boxes in the fixture frame [4, 3] (+x, -x, +y, -y) for a diametral clearance."""
  w = PEG_HALF + 0.5 * np.asarray(clearance, np.float64)
  d = w + WALL_HALF_T
  z = 0.5 * HOLE_DEPTH
  return np.array([[d, 0.0, z], [-d, 0.0, z], [0.0, d, z], [0.0, -d, z]])


def build_xml() -> str:
  """The task's MJCF (module docstring)."""
  walls = wall_positions(NOMINAL_CLEARANCE)
  # +-x walls are long in y, +-y walls long in x; they overlap at the corners (same body: no self-contacts)
  wall_sizes = [(WALL_HALF_T, WALL_HALF_L, 0.5 * HOLE_DEPTH)] * 2 + [(WALL_HALF_L, WALL_HALF_T, 0.5 * HOLE_DEPTH)] * 2
  wall_xml = "\n".join(
      f'      <geom name="wall_{n}" type="box" pos="{p[0]:.6f} {p[1]:.6f} {p[2]:.6f}" '
      f'size="{s[0]} {s[1]} {s[2]}" class="fixture"/>'
      for n, p, s in zip(("px", "nx", "py", "ny"), walls, wall_sizes, strict=True))
  (xlo, xhi), (ylo, yhi), (zlo, zhi) = SLIDE_RANGE
  m = STAGE_MASSES
  kp, kd, fl, arm = KP, KD, FORCE_LIMIT, ARMATURE
  act = "\n".join(
      f'    <position name="{j}" joint="{j}" kp="{kp[i]}" forcerange="{-fl[i]} {fl[i]}" forcelimited="true" '
      f'ctrllimited="false"/>' for i, j in enumerate(JOINT_NAMES))
  return f"""
<mujoco model="simdist_peg_insertion">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="Euler" solver="Newton" iterations="8" ls_iterations="8"
          cone="pyramidal"/>
  <default>
    <geom contype="0" conaffinity="0" condim="3" friction="{BASE_FRICTION} 0.005 0.0001"/>
    <default class="fixture">
      <geom contype="0" conaffinity="1" rgba="0.55 0.55 0.6 1"/>
    </default>
    <default class="visual">
      <geom contype="0" conaffinity="0" rgba="0.3 0.3 0.35 1"/>
    </default>
  </default>
  <worldbody>
    <light pos="0 0 1.5" dir="0 0 -1"/>
    <geom name="table" type="plane" size="0.6 0.6 0.01" class="fixture" rgba="0.8 0.75 0.65 1"/>
    <body name="fixture" pos="{FIXTURE_POS[0]} {FIXTURE_POS[1]} 0">
{wall_xml}
      <site name="hole_top" pos="0 0 {HOLE_DEPTH}" size="0.002"/>
    </body>
    <body name="stage_x" gravcomp="1">
      <joint name="x" type="slide" axis="1 0 0" range="{xlo} {xhi}" damping="{kd[0]}" armature="{arm[0]}"/>
      <inertial pos="0 0 0.5" mass="{m[0]}" diaginertia="0.01 0.01 0.01"/>
      <body name="stage_y" gravcomp="1">
        <joint name="y" type="slide" axis="0 1 0" range="{ylo} {yhi}" damping="{kd[1]}" armature="{arm[1]}"/>
        <inertial pos="0 0 0.5" mass="{m[1]}" diaginertia="0.01 0.01 0.01"/>
        <body name="stage_z" gravcomp="1">
          <joint name="z" type="slide" axis="0 0 1" range="{zlo} {zhi}" damping="{kd[2]}" armature="{arm[2]}"/>
          <inertial pos="0 0 0.1" mass="{m[2]}" diaginertia="0.005 0.005 0.005"/>
          <geom name="column" type="capsule" fromto="0 0 0.06 0 0 0.3" size="0.015" class="visual"/>
          <body name="wrist_yaw" gravcomp="1">
            <joint name="yaw" type="hinge" axis="0 0 1" range="{HINGE_RANGE[0]} {HINGE_RANGE[1]}"
                   damping="{kd[3]}" armature="{arm[3]}"/>
            <inertial pos="0 0 0.03" mass="{m[3]}" diaginertia="0.0003 0.0003 0.0003"/>
            <body name="wrist_pitch" gravcomp="1">
              <joint name="pitch" type="hinge" axis="0 1 0" range="{HINGE_RANGE[0]} {HINGE_RANGE[1]}"
                     damping="{kd[4]}" armature="{arm[4]}"/>
              <inertial pos="0 0 0.02" mass="{m[4]}" diaginertia="0.0003 0.0003 0.0003"/>
              <body name="hand" gravcomp="1">
                <joint name="roll" type="hinge" axis="1 0 0" range="{HINGE_RANGE[0]} {HINGE_RANGE[1]}"
                       damping="{kd[5]}" armature="{arm[5]}"/>
                <inertial pos="0 0 0.01" mass="{m[5]}" diaginertia="0.0005 0.0005 0.0005"/>
                <geom name="palm" type="box" pos="0 0 0.035" size="0.03 0.012 0.012" class="visual"/>
                <geom name="finger_l" type="box" pos="0 {PEG_HALF + 0.004} 0.005" size="0.008 0.004 0.02"
                      class="visual"/>
                <geom name="finger_r" type="box" pos="0 {-PEG_HALF - 0.004} 0.005" size="0.008 0.004 0.02"
                      class="visual"/>
                <site name="tcp" pos="0 0 0" size="0.003"/>
                <body name="peg" pos="0 0 {-(TIP_OFFSET - PEG_HALF_LEN)}">
                  <inertial pos="0 0 0" mass="{NOMINAL_PEG_MASS}"
                            diaginertia="{_box_inertia(NOMINAL_PEG_MASS)[0]:.3e} {_box_inertia(NOMINAL_PEG_MASS)[1]:.3e} {_box_inertia(NOMINAL_PEG_MASS)[2]:.3e}"/>
                  <geom name="peg" type="box" size="{PEG_HALF} {PEG_HALF} {PEG_HALF_LEN}" contype="1"
                        conaffinity="0" friction="0.5 0.005 0.0001" rgba="0.85 0.45 0.2 1"/>
                  <site name="peg_tip" pos="0 0 {-PEG_HALF_LEN}" size="0.002"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
{act}
  </actuator>
</mujoco>
"""


def _box_inertia(mass: float) -> np.ndarray:
  """Principal inertia of the peg box of `mass` about its centre [3]."""
  a, c = 2 * PEG_HALF, 2 * PEG_HALF_LEN
  ixx = mass * (a * a + c * c) / 12.0
  return np.array([ixx, ixx, mass * (2 * a * a) / 12.0])


def peg_inertia(mass):
  """Principal inertia of the peg box of `mass` (array-friendly: numpy or jnp) [3]."""
  return np.asarray(_box_inertia(1.0)) * mass
