"""Go2 task: observation layout, per-episode DR, reward terms on constructed states, terminations, commands."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from simdist_jax.config import load_config
from simdist_jax.envs import registry
from simdist_jax.envs.domain import Domain
from simdist_jax.envs.go2 import model as model_lib
from simdist_jax.envs.go2.task import PARAM_NAMES, Go2, restitution_to_dampratio

DT = 0.02


@pytest.fixture(scope="module")
def cfg():
  return load_config("experiments/configs/go2.py:small")


@pytest.fixture(scope="module")
def task(cfg):
  return registry.make_task(cfg)


@pytest.fixture(scope="module")
def sim(cfg, task):
  return registry.make_domain(cfg, "sim", task)


@pytest.fixture(scope="module")
def real_env(cfg, task, sim):
  from simdist_jax.envs.real import RealEnv
  return RealEnv(task, sim, sim_domain=sim, episode_length=10)


def _phys(task, qpos=None, qvel=None, **override):
  """Phys dict of a constructed state (MuJoCo C forward), with fields overridden."""
  m = task.mj_model()
  d = mujoco.MjData(m)
  d.qpos[:] = 0.0
  d.qpos[2] = 0.3
  d.qpos[3] = 1.0
  d.qpos[7:] = task.default_q_np
  if qpos is not None:
    d.qpos[:] = qpos
  if qvel is not None:
    d.qvel[:] = qvel
  d.ctrl[:] = task.default_q_np
  mujoco.mj_forward(m, d)
  phys = task.physics(d)
  phys.update({k: jnp.asarray(v, jnp.float32) for k, v in override.items()})
  return phys


def _yaw_quat(yaw):
  return [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]


def test_registered_dims_and_config(cfg, task):
  assert isinstance(task, Go2)
  assert task.dims == {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3,
                       "privileged": 380}
  assert cfg.env.ctrl_dt == 0.02 and task.mj_model().opt.timestep == 0.005
  paper = load_config("experiments/configs/go2.py:paper")
  assert paper.env.episode_length == 1000 and paper.env.terrain == "grid"
  for c in (cfg, paper):
    assert set(c.keys()) >= {"task", "preset", "env", "domain", "expert", "data", "model", "planner", "adapt",
                             "run"}


def test_restitution_mapping():
  # zeta = -ln e / sqrt(pi^2 + ln^2 e)
  np.testing.assert_allclose(restitution_to_dampratio(jnp.float32(0.3)), 1.2040 / np.sqrt(np.pi ** 2 + 1.2040 ** 2),
                             rtol=1e-3)
  assert 0.97 < float(restitution_to_dampratio(jnp.float32(0.0))) <= 1.0
  z = np.asarray(restitution_to_dampratio(jnp.linspace(0.0, 0.3, 7)))
  assert np.all(np.diff(z) < 0)


def test_dr_sampled_in_range_and_applied_to_model_fields(task, sim):
  keys = jax.random.split(jax.random.PRNGKey(1), 64)
  params = jax.vmap(sim.sample)(keys)
  m = task.mj_model()
  nominal = {f: jnp.asarray(getattr(m, f)) for f in task.domain_fields}
  upd = jax.vmap(lambda p: task.domain_updates(nominal, p))(params)
  lo, hi = sim.low, sim.high
  for i, n in enumerate(PARAM_NAMES):
    v = np.asarray(params[n])
    assert np.all(v >= lo[i]) and np.all(v <= hi[i]), n
    if hi[i] > lo[i]:
      assert np.ptp(v) > 0.5 * (hi[i] - lo[i]), n  # actually spread over the range
  b, feet = task.base_id, task.foot_geom_ids
  np.testing.assert_allclose(upd["body_mass"][:, b], 6.921 + params["base_mass_offset"], rtol=1e-6)
  np.testing.assert_allclose(upd["body_subtreemass"][:, 0], 15.206408 + params["base_mass_offset"], rtol=1e-6)
  np.testing.assert_allclose(upd["geom_friction"][:, feet, 0], np.repeat(params["foot_friction"][:, None], 4, 1))
  floor = 0
  np.testing.assert_allclose(upd["geom_friction"][:, floor, 0], model_lib.TERRAIN_FRICTION)
  np.testing.assert_allclose(upd["geom_solref"][:, feet, 1],
                             np.repeat(restitution_to_dampratio(params["foot_restitution"])[:, None], 4, 1))
  np.testing.assert_allclose(upd["actuator_gainprm"][:, :, 0], 25.0 * params["kp_scale"][:, None] * np.ones(12),
                             rtol=1e-6)
  np.testing.assert_allclose(upd["actuator_biasprm"][:, :, 1], -25.0 * params["kp_scale"][:, None] * np.ones(12),
                             rtol=1e-6)
  np.testing.assert_allclose(upd["actuator_biasprm"][:, :, 2], -0.5 * params["kd_scale"][:, None] * np.ones(12),
                             rtol=1e-6)
  np.testing.assert_allclose(upd["dof_frictionloss"][:, 6:], params["joint_friction"][:, None] * np.ones(12))
  np.testing.assert_allclose(upd["dof_frictionloss"][:, :6], 0.0)


def test_domain_validation(task):
  good = dict(base_mass_offset=(-1.0, 3.0), foot_friction=(0.2, 1.2), foot_restitution=(0.0, 0.3),
              kp_scale=(0.9, 1.1), kd_scale=(0.9, 1.1), joint_friction=(0.001, 0.05), obs_noise_scale=(0.5, 1.5))
  task.validate_domain(Domain.from_config("sim", good, PARAM_NAMES))
  with pytest.raises(ValueError, match="joint_friction must be > 0"):
    task.validate_domain(Domain.from_config("sim", {**good, "joint_friction": (0.0, 0.05)}, PARAM_NAMES))
  with pytest.raises(ValueError, match="foot_restitution"):
    task.validate_domain(Domain.from_config("sim", {**good, "foot_restitution": (0.0, 1.0)}, PARAM_NAMES))


def test_real_env_reset_applies_episode_domain_and_obs_layout(real_env, task, sim):
  for seed in (0, 1):
    obs = real_env.reset(jax.random.PRNGKey(seed))
    p = {k: float(v) for k, v in real_env.params.items()}
    assert sim.contains(p)
    m = real_env.model
    np.testing.assert_allclose(m.body_mass[task.base_id], 6.921 + p["base_mass_offset"], rtol=1e-6)
    np.testing.assert_allclose(m.geom_friction[task.foot_geom_ids, 0], p["foot_friction"], rtol=1e-6)
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], 25 * p["kp_scale"], rtol=1e-6)
    np.testing.assert_allclose(m.dof_frictionloss[6:], p["joint_friction"], rtol=1e-6)
    # PD with the episode's gains: tau = clip(Kp (target - q) - Kd qd, +-23.5) (MuJoCo C, C-only check)
    d = mujoco.MjData(m)
    d.qpos[:] = real_env.data.qpos
    d.qvel[6:] = np.linspace(-3, 3, 12)
    d.ctrl[:] = task.default_q_np + 0.25 * np.linspace(-1, 1, 12)
    mujoco.mj_forward(m, d)
    want = np.clip(25 * p["kp_scale"] * (d.ctrl - d.qpos[7:]) - 0.5 * p["kd_scale"] * d.qvel[6:], -23.5, 23.5)
    np.testing.assert_allclose(d.actuator_force, want, rtol=1e-5, atol=1e-6)
  s, priv = obs["state"], obs["privileged_state"]
  assert s.shape == (353,) and priv.shape == (380,) and s.dtype == np.float32
  prop, cmd = priv[:35], priv[35:38]
  np.testing.assert_allclose(prop[:6], 0.0, atol=1e-5)                   # at rest
  np.testing.assert_allclose(prop[6:9], [0, 0, -1], atol=1e-5)          # level
  np.testing.assert_allclose(prop[33:35], [1.0, 0.0], atol=1e-6)        # gait clock at t = 0
  np.testing.assert_allclose(s[35 + 315:], cmd)                          # command, noise-free
  np.testing.assert_allclose(priv[38:50], 0.0)                           # last action at reset
  np.testing.assert_allclose(priv[58:65], sim.normalize(real_env.params), atol=1e-6)
  scan = priv[65:]
  np.testing.assert_allclose(scan, real_env.data.qpos[2] - 0.3, atol=1e-5)  # flat ground
  noise = s[:35] - prop
  assert 0.0 < np.std(noise[21:33]) < 3.0  # joint-velocity channels carry the 0.75 x scale noise
  np.testing.assert_allclose(s[35:350] - scan, s[35:350] - scan)  # scan noise present but bounded:
  assert np.abs(s[35:350] - scan).max() < 0.2


def test_reward_terms_on_constructed_states(task):
  yaw = np.pi / 2
  qpos = np.concatenate([[0, 0, 0.3], _yaw_quat(yaw), task.default_q_np])
  qpos[7] += 0.1  # FR hip +0.1 from default
  qpos[10] -= 0.2  # FL hip -0.2
  qvel = np.zeros(18)
  qvel[:3] = [0.5, 0.2, 0.1]       # world frame -> body frame (yaw 90): (0.2, -0.5, 0.1)
  qvel[3:6] = [0.1, -0.2, 0.5]     # body frame
  tau = np.arange(12) * 0.5
  qacc = np.zeros(18)
  qacc[6:] = 100.0
  phys = _phys(task, qpos, qvel, actuator_force=tau, qacc=qacc, sensordata=np.array([20.0, 0.0, 0.0, 20.0]))
  a_prev, a = np.full(12, 0.4, np.float32), np.full(12, 0.1, np.float32)
  phys_prev = dict(phys, ctrl=jnp.asarray(task.default_q_np + 0.25 * a_prev, jnp.float32))
  info = {"t": jnp.int32(50), "command": jnp.array([0.2, -0.5, 0.3]), "ref": jnp.zeros(3)}  # t*dt = 1.0 s
  terms = task.reward_terms(phys_prev, phys, jnp.asarray(a), info)
  want = {
      "tracking_lin_vel": 1.0,
      "tracking_ang_vel": np.exp(-(0.3 - 0.5) ** 2 / 0.25),
      "lin_vel_z": 0.01,
      "ang_vel_xy": 0.01 + 0.04,
      "torques": np.sum(tau ** 2),
      "dof_acc": 12 * 100.0 ** 2,
      "action_rate": 12 * 0.3 ** 2,
      "flat_orientation": 0.0,
      "hip_deviation": 0.3,
      "gait": 4.0,           # phase 0 at t = 2 periods: FR, RL stance (in contact), FL, RR swing (no contact)
      "feet_height": 2 * np.exp(-0.5 * ((0.3 - 0.27 - 0.022 - 0.09 + 0.0) / 0.0225) ** 2) * 0,  # set below
  }
  fh = np.asarray(task.foot_heights(phys))
  want["feet_height"] = sum(np.exp(-0.5 * ((fh[i] - 0.09) / 0.0225) ** 2) for i in (1, 2))
  for k, v in want.items():
    np.testing.assert_allclose(terms[k], v, rtol=1e-4, atol=1e-6, err_msg=k)
  r, metrics = task.reward(phys_prev, phys, jnp.asarray(a), {}, info)
  assert set(metrics) == {f"reward/{k}" for k in want}
  scales = {"tracking_lin_vel": 1.5, "tracking_ang_vel": 0.75, "lin_vel_z": -2.0, "ang_vel_xy": -0.05,
            "torques": -2e-4, "dof_acc": -2.5e-7, "action_rate": -0.01, "flat_orientation": -4.0,
            "hip_deviation": -0.25, "gait": 0.05, "feet_height": 0.2}
  for k, s in scales.items():
    np.testing.assert_allclose(metrics[f"reward/{k}"], s * DT * want[k], rtol=1e-4, atol=1e-8, err_msg=k)
  np.testing.assert_allclose(r, sum(s * DT * want[k] for k, s in scales.items()), rtol=1e-4)


def test_gait_feet_height_orientation_and_first_step_action_rate(task):
  # feet exactly at 0.09 m in swing, all feet in contact, rolled by 0.3 rad, zero command
  roll = 0.3
  qpos = np.concatenate([[0, 0, 0.3], [np.cos(roll / 2), np.sin(roll / 2), 0, 0], task.default_q_np])
  phys = _phys(task, qpos, sensordata=np.full(4, 20.0))
  info = {"t": jnp.int32(1), "command": jnp.array([1.0, 0.0, 0.0]), "ref": jnp.zeros(3)}
  sites = np.asarray(phys["site_xpos"]).copy()
  sites[task.foot_site_ids, 2] = 0.09 + model_lib.FOOT_RADIUS
  phys["site_xpos"] = jnp.asarray(sites)
  a = jnp.full(12, 0.5)
  # t = 1 (first step after reset): previous action is 0; t*dt = 0.02 s: FR/RL stance, FL/RR swing
  terms = task.reward_terms(phys, phys, a, info)
  np.testing.assert_allclose(terms["action_rate"], 12 * 0.25, rtol=1e-6)
  np.testing.assert_allclose(terms["flat_orientation"], np.sin(roll) ** 2, rtol=1e-5)
  np.testing.assert_allclose(terms["gait"], 2.0)         # all in contact: the 2 stance feet match
  np.testing.assert_allclose(terms["feet_height"], 2.0, rtol=1e-5)  # 2 swing feet at the target height
  still = dict(info, command=jnp.array([0.05, 0.05, 0.5]))
  terms = task.reward_terms(phys, phys, a, still)
  assert float(terms["gait"]) == 0.0 and float(terms["feet_height"]) == 0.0


def test_terminations(task):
  def quat_pitch(p):
    return [np.cos(p / 2), 0, np.sin(p / 2), 0]
  up = _phys(task, np.concatenate([[0, 0, 0.3], quat_pitch(0.0), task.default_q_np]))
  assert not bool(task.terminated(up, {}))
  tilt50 = _phys(task, np.concatenate([[0, 0, 1.0], quat_pitch(np.radians(50)), task.default_q_np]))
  tilt70 = _phys(task, np.concatenate([[0, 0, 1.0], quat_pitch(np.radians(70)), task.default_q_np]))
  assert not bool(task.terminated(tilt50, {}))
  assert bool(task.terminated(tilt70, {}))
  low = _phys(task, np.concatenate([[0, 0, 0.05], quat_pitch(0.0), task.default_q_np]))
  assert bool(task.terminated(low, {}))  # trunk below the ground
  # knees below the ground: thighs vertical (knee 0.213 m below the hip), calves folded up, base 0.12 m up
  folded = np.array([0.0, 0.0, -2.7] * 4)
  knee = _phys(task, np.concatenate([[0, 0, 0.12], quat_pitch(0.0), folded]))
  clear = np.asarray(task.body_clearance(knee))
  assert clear[:9].min() > 0.0 and clear[9:].min() < 0.0
  assert bool(task.terminated(knee, {}))


def test_command_resampling_every_10s(task):
  _, _, info = task.initial_state(jax.random.PRNGKey(0), {})
  c0 = np.asarray(info["command"])
  assert -0.5 <= c0[0] <= 1.5 and -0.5 <= c0[1] <= 0.5 and -1 <= c0[2] <= 1
  phys = {"qpos": jnp.zeros(19)}
  advance = jax.jit(task.advance_info)
  key = jax.random.PRNGKey(1)
  cmds = []
  for t in range(1001):
    info = advance(info, jax.random.fold_in(key, t), phys)
    cmds.append(np.asarray(info["command"]))
  cmds = np.array(cmds)  # cmds[k] is the command after step k + 1
  changes = np.nonzero(np.any(np.diff(cmds, axis=0) != 0, axis=1))[0] + 2  # step counts at which it changed
  assert list(changes) == [500, 1000]
  np.testing.assert_allclose(cmds[0], c0)
