"""Rotations and the stage's forward kinematics, as pure jnp (shared by the task, its tests and scripted controllers).

Conventions: rotation matrices map body -> world; Euler angles are intrinsic z-y-x (yaw, pitch, roll):
R = Rz(yaw) Ry(pitch) Rx(roll), the stage's hinge order (model.py). Rotation vectors are axis * angle.
"""

from __future__ import annotations

import jax.numpy as jnp

from simdist_jax.envs.manipulation import model as model_lib


def rot_x(a):
  """Rotation by angle `a` [rad] about the x axis [3, 3]."""
  c, s = jnp.cos(a), jnp.sin(a)
  return jnp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a):
  """Rotation by angle `a` [rad] about the y axis [3, 3]."""
  c, s = jnp.cos(a), jnp.sin(a)
  return jnp.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a):
  """Rotation by angle `a` [rad] about the z axis [3, 3]."""
  c, s = jnp.cos(a), jnp.sin(a)
  return jnp.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def euler_to_mat(ypr) -> jnp.ndarray:
  """(yaw, pitch, roll) -> Rz(yaw) Ry(pitch) Rx(roll) [3, 3]."""
  return rot_z(ypr[0]) @ rot_y(ypr[1]) @ rot_x(ypr[2])


def mat_to_euler(r) -> jnp.ndarray:
  """Inverse of `euler_to_mat` for |pitch| < pi / 2: [yaw, pitch, roll]."""
  yaw = jnp.arctan2(r[1, 0], r[0, 0])
  pitch = jnp.arcsin(jnp.clip(-r[2, 0], -1.0, 1.0))
  roll = jnp.arctan2(r[2, 1], r[2, 2])
  return jnp.stack([yaw, pitch, roll])


def rotvec_to_mat(v) -> jnp.ndarray:
  """Rodrigues: rotation vector [3] -> matrix [3, 3] (exact at 0)."""
  theta2 = jnp.sum(v * v)
  theta = jnp.sqrt(theta2 + 1e-30)
  small = theta2 < 1e-12
  a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
  b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / (theta * theta))
  k = jnp.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
  return jnp.eye(3) + a * k + b * (k @ k)


def mat_to_rotvec(r) -> jnp.ndarray:
  """Rotation matrix -> rotation vector [3] (angles below pi; exact at the identity)."""
  cos = jnp.clip(0.5 * (jnp.trace(r) - 1.0), -1.0, 1.0)
  theta = jnp.arccos(cos)
  vee = 0.5 * jnp.stack([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
  sin = jnp.sin(theta)
  factor = jnp.where(theta < 1e-4, 1.0 + theta * theta / 6.0, theta / jnp.where(theta < 1e-4, 1.0, sin))
  return factor * vee


def hand_pose(qpos) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(position [3], rotation [3, 3]) of the hand frame (the wrist centre / grasp point) from the stage joints."""
  return qpos[:3], euler_to_mat(qpos[3:6])


def peg_tip(qpos) -> jnp.ndarray:
  """World position of the peg tip (bottom face centre) [3]: hand origin + R (0, 0, -TIP_OFFSET)."""
  p, r = hand_pose(qpos)
  return p + r @ jnp.array([0.0, 0.0, -model_lib.TIP_OFFSET])


def hand_from_tip(tip, ypr) -> jnp.ndarray:
  """Stage joint positions [6] that put the peg tip at `tip` with orientation (yaw, pitch, roll) `ypr`."""
  r = euler_to_mat(ypr)
  return jnp.concatenate([tip + r @ jnp.array([0.0, 0.0, model_lib.TIP_OFFSET]), jnp.asarray(ypr)])


def fixture_frame(dx, dy, yaw) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(origin [3], rotation [3, 3]) of the hole frame: the centre of the hole's top opening, z up, rotated by the
  fixture's yaw, for a fixture offset (dx, dy) from its nominal position."""
  fx, fy = model_lib.FIXTURE_POS
  return jnp.stack([fx + dx, fy + dy, jnp.asarray(model_lib.HOLE_DEPTH, jnp.float32)]), rot_z(yaw)


def relative_pose(qpos, dx, dy, yaw) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The peg relative to the hole: (tip position in the hole frame [3], rotation vector of R_hole^T R_peg [3])."""
  o, rf = fixture_frame(dx, dy, yaw)
  _, rp = hand_pose(qpos)
  return rf.T @ (peg_tip(qpos) - o), mat_to_rotvec(rf.T @ rp)
