"""Go2 MJCF: facts-sheet masses/inertias/offsets/ranges, actuators, solver options, standing under PD."""

import mujoco
import numpy as np
import pytest

from simdist_jax.envs.go2 import model as model_lib
from simdist_jax.envs.go2.task import Go2, Go2Config


@pytest.fixture(scope="module")
def m():
  return model_lib.build_model()


def _body(m, name):
  return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)


def test_masses_and_trunk_inertia_match_facts_sheet(m):
  # 6.921 + 4 x (0.678 + 1.152 + 0.241352) = 15.206408 kg
  np.testing.assert_allclose(m.body_mass.sum(), 15.206408, atol=1e-9)
  b = _body(m, "base")
  np.testing.assert_allclose(m.body_mass[b], 6.921)
  np.testing.assert_allclose(m.body_ipos[b], [0.021112, 0.0, -0.005366], atol=1e-9)
  np.testing.assert_allclose(m.body_inertia[b], [0.107027, 0.0980771, 0.0244531], rtol=1e-9)
  for leg in model_lib.LEGS:
    np.testing.assert_allclose(m.body_mass[_body(m, f"{leg}_hip")], 0.678)
    np.testing.assert_allclose(m.body_mass[_body(m, f"{leg}_thigh")], 1.152)
    np.testing.assert_allclose(m.body_mass[_body(m, f"{leg}_calf")], 0.241352)
  np.testing.assert_allclose(m.body_subtreemass[0], 15.206408, atol=1e-9)


def test_link_offsets_and_foot_spheres(m):
  np.testing.assert_allclose(m.body_pos[_body(m, "FR_hip")], [0.1934, -0.0465, 0.0])
  np.testing.assert_allclose(m.body_pos[_body(m, "RL_hip")], [-0.1934, 0.0465, 0.0])
  np.testing.assert_allclose(m.body_pos[_body(m, "FL_thigh")], [0.0, 0.0955, 0.0])
  np.testing.assert_allclose(m.body_pos[_body(m, "RR_thigh")], [0.0, -0.0955, 0.0])
  np.testing.assert_allclose(m.body_pos[_body(m, "FR_calf")], [0.0, 0.0, -0.213])
  for leg in model_lib.LEGS:
    g = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"{leg}_foot")
    assert m.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE
    np.testing.assert_allclose(m.geom_size[g, 0], 0.022)
    np.testing.assert_allclose(m.geom_pos[g], [-0.002, 0.0, -0.213])
    assert m.geom_condim[g] == 3 and m.geom_contype[g] == 1
  # only the feet (and terrain) take part in collisions
  colliding = {mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in range(m.ngeom)
               if m.geom_contype[g] or m.geom_conaffinity[g]}
  assert colliding == {"floor"} | {f"{leg}_foot" for leg in model_lib.LEGS}


def test_joint_order_ranges_and_home_keyframe(m):
  names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(1, m.njnt)]
  assert tuple(names) == model_lib.JOINT_NAMES
  assert names[:3] == ["FR_hip_joint", "FR_thigh_joint", "FR_calf_joint"]
  r = m.jnt_range[1:]
  np.testing.assert_allclose(r[0::3], [[-1.0472, 1.0472]] * 4)
  np.testing.assert_allclose(r[1::3], [[-1.5708, 3.4907]] * 4)
  np.testing.assert_allclose(r[2::3], [[-2.7227, -0.83776]] * 4)
  np.testing.assert_allclose(m.key_qpos[0][7:], [0.0, 0.9, -1.8] * 4)
  np.testing.assert_allclose(m.key_qpos[0][2], 0.27)
  assert np.all(m.dof_frictionloss[6:] > 0)  # MJX keeps these constraint rows
  np.testing.assert_allclose(m.dof_armature[6:], 0.01)


def test_pd_actuators_and_solver_options(m):
  np.testing.assert_allclose(m.actuator_gainprm[:, 0], 25.0)
  np.testing.assert_allclose(m.actuator_biasprm[:, :3], [[0.0, -25.0, -0.5]] * 12)
  np.testing.assert_allclose(m.actuator_forcerange, [[-23.5, 23.5]] * 12)
  assert list(m.actuator_trnid[:, 0]) == list(range(1, 13))
  assert m.opt.timestep == 0.005
  assert 1 <= m.opt.iterations <= 4 and 5 <= m.opt.ls_iterations <= 8
  assert m.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL
  assert m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_EULERDAMP
  assert m.nsensordata == 4  # foot touch sensors


def _stand(task, kp, seconds=2.0):
  m = task.mj_model()
  m.actuator_gainprm[:, 0] = kp
  m.actuator_biasprm[:, 1] = -kp
  d = mujoco.MjData(m)
  d.qpos[3] = 1.0
  d.qpos[7:] = task.default_q_np
  d.qpos[2] = task.stand_height + 0.02
  d.ctrl[:] = task.default_q_np
  min_z, max_tilt = np.inf, 0.0
  for _ in range(int(seconds / m.opt.timestep)):
    mujoco.mj_step(m, d)
    min_z = min(min_z, d.qpos[2])
    up = np.zeros(9)
    mujoco.mju_quat2Mat(up, d.qpos[3:7])
    max_tilt = max(max_tilt, np.degrees(np.arccos(np.clip(up[8], -1, 1))))
  return d, min_z, max_tilt


def test_stands_under_simdist_pd_for_2s():
  # SimDist's PD (Kp 25, Kd 0.5) about its default pose: stays up, level and nearly in place.
  task = Go2()
  d, min_z, max_tilt = _stand(task, kp=25.0)
  assert min_z > 0.24, min_z
  assert max_tilt < 10.0, max_tilt  # transient pitch while the soft PD takes the load
  assert np.linalg.norm(d.qpos[:2]) < 0.1
  assert np.all(d.sensordata > 10.0)  # all four feet loaded


def test_stands_at_menagerie_home_pose_with_menagerie_gain():
  # The crouched Menagerie home pose (0, 0.9, -1.8) needs Menagerie's Kp 50 (it sags and tips over at 25).
  task = Go2(Go2Config(default_pose="home"))
  d, min_z, max_tilt = _stand(task, kp=50.0)
  assert min_z > 0.22, min_z
  assert max_tilt < 10.0, max_tilt
  assert np.all(d.sensordata > 10.0)
