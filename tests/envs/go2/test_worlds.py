"""Shifted worlds: they differ from sim in exactly the intended parameters; protocol smoke run."""

import math

import mujoco
import numpy as np
import pytest

from simdist_jax.config import load_config
from simdist_jax.envs.go2 import model as model_lib
from simdist_jax.envs.go2 import terrain
from simdist_jax.envs.go2 import worlds
from simdist_jax.envs.go2.task import PARAM_NAMES, Go2, Go2Config


def _geom(m, name):
  return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)


def test_world_domains_differ_from_sim_nominal_in_exactly_the_intended_parameters():
  diffs = {name: {k for k, v in w.domain_dict().items() if v != worlds.SIM_NOMINAL[k]}
           for name, w in worlds.WORLDS.items()}
  assert diffs == {"slippery_slope": {"foot_friction"}, "foam": set()}
  assert worlds.WORLDS["slippery_slope"].domain_dict()["foot_friction"] < 0.2  # below the sim DR range
  for w in worlds.WORLDS.values():
    assert tuple(w.real_domain().names) == PARAM_NAMES
    Go2(Go2Config(world=w.name)).validate_domain(w.real_domain())
  cfg = load_config("experiments/configs/go2.py:small")
  assert dict(cfg.domain.real) == worlds.WORLDS["slippery_slope"].domain_dict()


def test_protocols():
  s, f = worlds.WORLDS["slippery_slope"], worlds.WORLDS["foam"]
  assert (s.course_length, s.speeds, s.trials_per_speed) == (1.82, (0.1, 0.3, 0.5), 5)
  assert (f.course_length, f.speeds, f.trials_per_speed) == (3.00, (0.2, 0.7, 1.2), 5)


def test_slippery_slope_geometry_and_materials():
  ter = worlds.slippery_slope_terrain()
  ramps = [p for p in ter.panels if p.h0 != p.h1]
  angles = [math.degrees(math.atan((p.h1 - p.h0) / (p.x1 - p.x0))) for p in ramps]
  np.testing.assert_allclose(angles, [3.0, 5.7], atol=1e-9)
  assert ramps[-1].x1 == pytest.approx(1.82)  # the course ends at the top of the second panel
  m = model_lib.build_model(ter)
  # contact friction = max(foot, ground): the PTFE panels (0.01) leave the feet's 0.1; floor/landing 0.8
  np.testing.assert_allclose(m.geom_friction[_geom(m, "panel0"), 0], 0.01)
  np.testing.assert_allclose(m.geom_friction[_geom(m, "panel1"), 0], 0.01)
  np.testing.assert_allclose(m.geom_friction[_geom(m, "panel2"), 0], 0.8)
  np.testing.assert_allclose(m.geom_friction[_geom(m, "floor"), 0], 0.8)


def test_world_models_differ_from_sim_only_in_terrain_geoms():
  sim = model_lib.build_model(terrain.flat())
  for w in worlds.WORLDS.values():
    m = model_lib.build_model(w.terrain)
    robot = [g for g in range(m.ngeom) if m.geom_bodyid[g] != 0]
    robot_sim = [g for g in range(sim.ngeom) if sim.geom_bodyid[g] != 0]
    assert len(robot) == len(robot_sim)
    for f in ("geom_friction", "geom_solref", "geom_solimp", "geom_size", "geom_pos"):
      np.testing.assert_array_equal(getattr(m, f)[robot], getattr(sim, f)[robot_sim], err_msg=f)
    for f in ("body_mass", "body_inertia", "body_pos", "jnt_range", "dof_frictionloss", "actuator_gainprm",
              "actuator_biasprm"):
      np.testing.assert_array_equal(getattr(m, f), getattr(sim, f), err_msg=f)
    assert m.opt.timestep == sim.opt.timestep and m.opt.iterations == sim.opt.iterations


def test_foam_pads_are_soft_and_feet_sink():
  m = model_lib.build_model(worlds.foam_terrain())
  for name in ("panel0", "panel1"):
    g = _geom(m, name)
    np.testing.assert_allclose(m.geom_solref[g], worlds.FOAM_SOLREF)
    np.testing.assert_allclose(m.geom_solimp[g, :3], worlds.FOAM_SOLIMP)
    assert m.geom_solmix[g] == worlds.FOAM_SOLMIX
    np.testing.assert_allclose(m.geom_size[g, 2] * 2 + terrain.BOX_BOTTOM, 0.05)  # top at 5 cm
  kw = dict(friction=worlds.FOAM_FRICTION, solref=worlds.FOAM_SOLREF, solimp=worlds.FOAM_SOLIMP,
            solmix=worlds.FOAM_SOLMIX)
  sink = {}
  for name, ter, h in (("floor", terrain.flat(), 0.0),
                       ("foam", terrain.Terrain("pad", (terrain.Panel(-1, 1, -1, 1, 0.05, 0.05, **kw),)), 0.05)):
    task = Go2(terrain=ter)
    m = task.mj_model()
    d = mujoco.MjData(m)
    d.qpos[3] = 1.0
    d.qpos[7:] = task.default_q_np
    d.qpos[2] = h + task.stand_height + 0.02
    d.ctrl[:] = task.default_q_np
    for _ in range(400):
      mujoco.mj_step(m, d)
    sink[name] = h - (d.site_xpos[task.foot_site_ids, 2] - model_lib.FOOT_RADIUS).mean()
  assert abs(sink["floor"]) < 0.003, sink
  assert 0.012 < sink["foam"] < 0.04, sink


def test_evaluate_protocol_smoke():
  cfg = load_config("experiments/configs/go2.py:small")
  calls = []

  def policy(obs):
    calls.append(obs["state"].shape)
    return np.zeros(12, np.float32)

  out = worlds.evaluate_protocol(policy, "foam", cfg, speeds=(0.7,), trials_per_speed=2, max_steps=5)
  assert out["metric"] == "mean_forward_progress_m" and out["world"] == "foam"
  assert len(out["trials"]) == 2 and all(t["steps"] == 5 for t in out["trials"])
  assert calls[0] == (353,) and len(calls) == 10
  assert 0.0 <= out["mean_progress_m"] <= 3.0 and set(out["per_speed"]) == {0.7}
  with pytest.raises(ValueError, match="unknown world"):
    worlds.get_world("ice")


def test_flat_reference_differs_from_sim_nominal_in_nothing():
  cfg = load_config("experiments/configs/go2.py:small")  # flat training terrain
  sim_task = Go2(Go2Config.from_env_cfg(cfg.env))
  for name, w in worlds.WORLDS.items():
    ref = worlds.flat_reference(name)
    assert ref.domain_dict() == worlds.SIM_NOMINAL
    assert ref.terrain == sim_task.terrain == terrain.flat()
    assert worlds.world_task(ref, cfg.env, 0.5)._xml == sim_task._xml  # same MJCF as the sim env's
    assert (ref.course_length, ref.speeds, ref.trials_per_speed, ref.timeout_factor) == (
        w.course_length, w.speeds, w.trials_per_speed, w.timeout_factor)
    assert ref.name not in worlds.WORLDS


def test_world_key_is_validated_at_load_and_must_match_the_real_domain():
  from simdist_jax.config import ConfigError
  with pytest.raises(ConfigError, match=r"env.world must be one of \['foam', 'slippery_slope'\], got 'lava'"):
    load_config("experiments/configs/go2.py:small", ["env.world=lava"])
  # switching the world without its fixed values would run the twin with the slope's PTFE friction on foam
  with pytest.raises(ConfigError, match=r"domain.real.foot_friction=0.1: .*foam.*--config.domain.real.foot_friction=0.8"):
    load_config("experiments/configs/go2.py:small", ["env.world=foam"])
  cfg = load_config("experiments/configs/go2.py:small", ["env.world=foam", "domain.real.foot_friction=0.8"])
  assert dict(cfg.domain.real) == worlds.WORLDS["foam"].domain_dict()
