"""Peg Insertion: stage kinematics, action interface, success predicate, DR, grids, worlds, a scripted insertion,
and (slow) MJX vs MuJoCo C agreement on an insertion trajectory."""

import pathlib

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax.envs import registry
from simdist_jax.envs.manipulation import grids, kinematics as kin, model as model_lib, peg, worlds
from simdist_jax.envs.real import RealEnv

CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs" / "peg_insertion.py")
D = model_lib.TIP_OFFSET
# jitted once per module (eager jnp dispatches op by op, which costs seconds on the 2-core CPU)
peg_tip = jax.jit(kin.peg_tip)
euler_to_mat = jax.jit(kin.euler_to_mat)
hand_from_tip = jax.jit(kin.hand_from_tip)


@pytest.fixture(scope="module")
def cfg():
  return config_lib.load_config(CONFIG + ":small")


@pytest.fixture(scope="module")
def task(cfg):
  return registry.make_task(cfg)


@pytest.fixture(scope="module")
def sim_env(cfg, task):
  sim = registry.make_domain(cfg, "sim", task)
  return RealEnv(task, sim, sim_domain=sim, episode_length=int(cfg.env.episode_length))


def _site(m, d, name):
  return d.site_xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, name)].copy()


# ---- kinematics --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("q, tip", [
    # identity orientation: the tip hangs TIP_OFFSET straight below the hand
    ((0.1, -0.2, 0.15, 0.0, 0.0, 0.0), (0.1, -0.2, 0.15 - D)),
    # pitch 0.4 about y: Ry(0.4) (0, 0, -D) = (-D sin 0.4, 0, -D cos 0.4)
    ((0.0, 0.0, 0.2, 0.0, 0.4, 0.0), (-D * np.sin(0.4), 0.0, 0.2 - D * np.cos(0.4))),
    # yaw pi/2 then roll 0.3: Rx(0.3) (0, 0, -D) = (0, D sin 0.3, -D cos 0.3); Rz(pi/2) maps (x, y) -> (-y, x)
    ((0.05, 0.05, 0.1, np.pi / 2, 0.0, 0.3), (0.05 - D * np.sin(0.3), 0.05, 0.1 - D * np.cos(0.3))),
    # yaw 0.2, pitch -0.3, roll 0.25: tip = p + Rz Ry Rx (0, 0, -D) written out by hand
    ((-0.1, 0.2, 0.3, 0.2, -0.3, 0.25),
     (-0.1 - D * (np.cos(0.2) * np.sin(-0.3) * np.cos(0.25) + np.sin(0.2) * np.sin(0.25)),
      0.2 - D * (np.sin(0.2) * np.sin(-0.3) * np.cos(0.25) - np.cos(0.2) * np.sin(0.25)),
      0.3 - D * np.cos(-0.3) * np.cos(0.25))),
])
def test_stage_kinematics_match_hand_computed(task, q, tip):
  m = task.mj_model()
  d = mujoco.MjData(m)
  d.qpos[:] = q
  mujoco.mj_kinematics(m, d)
  np.testing.assert_allclose(_site(m, d, "peg_tip"), tip, atol=1e-9)        # MuJoCo's kinematics
  np.testing.assert_allclose(np.asarray(peg_tip(jnp.asarray(q))), tip, atol=1e-6)  # the task's (jnp)
  np.testing.assert_allclose(_site(m, d, "tcp"), q[:3], atol=1e-12)          # the hand origin is q[0:3]
  hand = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "hand")
  np.testing.assert_allclose(d.xmat[hand].reshape(3, 3), np.asarray(euler_to_mat(jnp.asarray(q[3:]))),
                             atol=1e-6)
  # and back: the joints that put the tip there with this orientation
  np.testing.assert_allclose(np.asarray(hand_from_tip(jnp.asarray(tip), jnp.asarray(q[3:]))), q, atol=1e-6)


def test_rotation_helpers_round_trip():
  @jax.jit
  def round_trip(ypr):
    r = kin.euler_to_mat(ypr)
    return r, kin.mat_to_euler(r), kin.rotvec_to_mat(kin.mat_to_rotvec(r)), kin.mat_to_rotvec(kin.rot_z(ypr[0]))
  for ypr in ((0.0, 0.0, 0.0), (0.3, -0.2, 0.1), (-0.7, 0.5, -0.6)):
    r, back, r2, rv = round_trip(jnp.asarray(ypr, jnp.float32))
    np.testing.assert_allclose(np.asarray(back), ypr, atol=1e-6)
    np.testing.assert_allclose(np.asarray(r2), np.asarray(r), atol=1e-5)
    np.testing.assert_allclose(np.asarray(rv), (0, 0, ypr[0]), atol=1e-6)


def test_hole_geometry_and_clearance(task):
  m = task.mj_model()
  d = mujoco.MjData(m)
  mujoco.mj_kinematics(m, d)
  gid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n)  # noqa: E731
  inner_px = d.geom_xpos[gid("wall_px")][0] - m.geom_size[gid("wall_px")][0]
  inner_ny = d.geom_xpos[gid("wall_ny")][1] + m.geom_size[gid("wall_ny")][1]
  half_open = model_lib.PEG_HALF + model_lib.NOMINAL_CLEARANCE / 2
  np.testing.assert_allclose([inner_px, -inner_ny], [half_open, half_open], atol=1e-12)
  assert np.isclose(d.geom_xpos[gid("wall_px")][2] + m.geom_size[gid("wall_px")][2], model_lib.HOLE_DEPTH)
  np.testing.assert_allclose(m.geom_size[gid("peg")], (0.008, 0.008, 0.025))   # 16 mm square peg, 50 mm long
  # only the peg collides: its contype pairs with the fixture's and the table's conaffinity, nothing else does
  colliding = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in range(m.ngeom) if m.geom_contype[g]]
  assert colliding == ["peg"]


# ---- action interface --------------------------------------------------------------------------------------------
def _phys(q, ctrl=None, time=0.0):
  q = jnp.asarray(q, jnp.float32)
  return {"qpos": q, "qvel": jnp.zeros(6), "ctrl": jnp.zeros(6) if ctrl is None else jnp.asarray(ctrl, jnp.float32),
          "time": jnp.float32(time)}


def test_action_is_an_integrated_relative_pose_target(task):
  c = task.cfg
  to_ctrl = jax.jit(task.action_to_ctrl)
  q = np.array([0.05, -0.02, 0.12, 0.1, 0.0, 0.0], np.float32)
  a0 = np.zeros(7, np.float32)
  # first step (time 0): the set-point starts at the measured pose; zero action holds it
  np.testing.assert_allclose(np.asarray(to_ctrl(a0, _phys(q), None)), q, atol=1e-6)
  # translation: + pos_scale per unit action; out-of-range actions are clipped to [-1, 1]
  a = a0.copy()
  a[:3] = (0.5, -2.0, 1.0)
  t = np.asarray(to_ctrl(a, _phys(q), None))
  np.testing.assert_allclose(t[:3], q[:3] + c.pos_scale * np.array([0.5, -1.0, 1.0]), atol=1e-6)
  # a world-z rotation adds to the yaw target; the gripper channel changes nothing
  a = a0.copy()
  a[5], a[6] = 1.0, -1.0
  t = np.asarray(to_ctrl(a, _phys(q), None))
  np.testing.assert_allclose(t, q + np.array([0, 0, 0, c.rot_scale, 0, 0]), atol=1e-6)
  a[6] = 1.0
  np.testing.assert_allclose(np.asarray(to_ctrl(a, _phys(q), None)), t, atol=1e-7)
  # later steps integrate from the previous set-point, which may lead q by at most max_lead_pos
  prev = q + np.array([0.005, 0.1, 0, 0, 0, 0], np.float32)
  t = np.asarray(to_ctrl(a0, _phys(q, prev, time=1.0), None))
  np.testing.assert_allclose(t[:3], q[:3] + np.array([0.005, c.max_lead_pos, 0.0]), atol=1e-6)


# ---- success predicate -------------------------------------------------------------------------------------------
PARAMS = {"friction": 0.5, "peg_mass": 0.05, "kp_scale": 1.0, "kd_scale": 1.0, "fixture_dx": 0.007,
          "fixture_dy": -0.004, "fixture_yaw": 0.03, "clearance": 0.001, "obs_noise": 0.0}


def _state_at(tip_in_hole, yaw_rel=0.0):
  """Stage joints that put the tip at `tip_in_hole` (hole frame) with the peg rotated yaw_rel from the fixture."""
  p = {k: jnp.float32(v) for k, v in PARAMS.items()}
  origin, rf = kin.fixture_frame(p["fixture_dx"], p["fixture_dy"], p["fixture_yaw"])
  tip = origin + rf @ jnp.asarray(tip_in_hole, jnp.float32)
  q = kin.hand_from_tip(tip, jnp.stack([p["fixture_yaw"] + yaw_rel, jnp.float32(0.0), jnp.float32(0.0)]))
  return _phys(q, q, time=1.0), p


@pytest.fixture(scope="module")
def evaluate_state(task):
  """jit(tip in the hole frame, relative yaw -> (reward, metrics, relative tip, relative rotation))."""
  @jax.jit
  def fn(tip_in_hole, yaw_rel):
    phys, p = _state_at(tip_in_hole, yaw_rel)
    r, metrics = task.reward(phys, phys, jnp.zeros(7), p, {"t": jnp.int32(1)})
    rel_tip, rel_rot = task.relative_pose(phys, p)
    return r, metrics, rel_tip, rel_rot
  return lambda tip, yaw_rel=0.0: fn(jnp.asarray(tip, jnp.float32), jnp.float32(yaw_rel))


@pytest.mark.parametrize("tip, seated", [
    ((0.0, 0.0, -0.025), True),        # on the hole's floor
    ((0.0003, -0.0002, -0.021), True),  # 21 mm deep, off-axis within the clearance
    ((0.0, 0.0, -0.019), False),       # 19 mm: not yet seated to d = 20 mm
    ((0.0, 0.0, 0.010), False),        # hovering 1 cm above the opening, aligned
    ((0.012, 0.0, 0.0), False),        # resting on the +x wall's top
    ((0.05, 0.02, -0.025), False),     # beside the fixture on the table: 25 mm "deep" but outside the opening
])
def test_success_predicate_on_hand_built_states(task, evaluate_state, tip, seated):
  _, metrics, rel_tip, rel_rot = evaluate_state(tip)
  assert task.success({k: float(v) for k, v in metrics.items()}) is seated
  np.testing.assert_allclose(float(metrics["depth"]), -tip[2], atol=1e-6)
  np.testing.assert_allclose(np.asarray(rel_tip), tip, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rel_rot), 0.0, atol=1e-5)


def test_reward_prefers_seated_over_hovering_and_misaligned(evaluate_state):
  r = {name: float(evaluate_state(tip)[0]) for name, tip in (
      ("seated", (0, 0, -0.025)), ("half", (0, 0, -0.012)), ("hover", (0, 0, 0.02)), ("on_wall", (0.012, 0.0, 0.0)),
      ("far", (0.15, 0.1, 0.05)))}
  assert r["seated"] > r["half"] > r["hover"] > r["on_wall"] > r["far"]
  assert float(evaluate_state((0, 0, -0.025), 0.2)[0]) < r["seated"]


# ---- domain randomization ----------------------------------------------------------------------------------------
def test_dr_ranges_honoured_per_episode(cfg, task, sim_env):
  sim = sim_env.domain
  lo, hi = dict(zip(sim.names, sim.low, strict=True)), dict(zip(sim.names, sim.high, strict=True))
  seen = []
  for s in range(6):
    sim_env.reset(jax.random.PRNGKey(s))
    p = {k: float(v) for k, v in sim_env.params.items()}
    assert sim.contains(p), p
    seen.append(p)
    m = sim_env.model  # the twin's model carries this episode's values
    assert np.isclose(m.body_mass[task.peg_body_id], p["peg_mass"], rtol=1e-6)
    assert np.isclose(m.geom_friction[task.peg_geom_id, 0], p["friction"], rtol=1e-6)
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], model_lib.KP * p["kp_scale"], rtol=1e-5)
    np.testing.assert_allclose(m.actuator_biasprm[:, 1], -model_lib.KP * p["kp_scale"], rtol=1e-5)
    np.testing.assert_allclose(m.dof_damping, model_lib.KD * p["kd_scale"], rtol=1e-5)
    np.testing.assert_allclose(m.body_pos[task.fixture_id, :2], [p["fixture_dx"], p["fixture_dy"]], atol=1e-7)
    mujoco.mj_kinematics(m, sim_env.data)
    wall = task.wall_ids[0]  # +x wall: inner face at half the opening, in the rotated fixture frame
    rel = sim_env.data.xmat[task.fixture_id].reshape(3, 3).T @ (
        sim_env.data.geom_xpos[wall] - sim_env.data.xpos[task.fixture_id])
    assert np.isclose(rel[0] - model_lib.WALL_HALF_T, model_lib.PEG_HALF + p["clearance"] / 2, atol=1e-7)
    yaw = np.arctan2(sim_env.data.xmat[task.fixture_id][3], sim_env.data.xmat[task.fixture_id][0])
    assert np.isclose(yaw, p["fixture_yaw"], atol=1e-6)
  for n in sim.names:  # a new draw every episode, spread over the range
    vals = np.array([p[n] for p in seen])
    if hi[n] > lo[n]:
      assert len(set(vals.round(9))) == len(vals) and np.ptp(vals) > 0.2 * (hi[n] - lo[n]), n
  # the MJX env applies the same values to its mjx.Model (no compile: model_for is eager jnp)
  env = registry.make_env(cfg, "sim")
  params, *_ = sim_env._start(jax.random.PRNGKey(2))  # the twin's jitted episode_start (same domain)
  mm = jax.jit(env.model_for)(params)
  assert np.isclose(float(mm.body_mass[task.peg_body_id]), float(params["peg_mass"]))
  assert np.isclose(float(mm.geom_friction[task.peg_geom_id, 0]), float(params["friction"]))
  np.testing.assert_allclose(np.asarray(mm.dof_damping), model_lib.KD * float(params["kd_scale"]), rtol=1e-5)


def test_privileged_state_holds_normalized_domain(task, sim_env):
  obs = sim_env.reset(jax.random.PRNGKey(4))
  k = len(peg.PARAM_NAMES)
  np.testing.assert_allclose(obs["privileged_state"][-k:], np.asarray(sim_env.domain.normalize(sim_env.params)),
                             atol=1e-6)
  assert np.all(np.abs(obs["privileged_state"][-k:]) <= 1.0 + 1e-6)
  assert obs["state"].shape == (task.dims["proprio"],) and obs["privileged_state"].shape == (task.dims["privileged"],)


# ---- worlds and config -------------------------------------------------------------------------------------------
def test_worlds_lie_outside_the_dr_ranges(cfg, task):
  for name, w in worlds.WORLDS.items():
    out = set(w.outside_sim())
    assert {"clearance", "friction", "kp_scale", "fixture_dx", "fixture_dy", "fixture_yaw", "peg_mass"} <= out, name
    task.validate_domain(w.real_domain()) if name == task.cfg.world else None
  assert w.domain_dict() != worlds.WORLDS["tight_sticky"].domain_dict()
  real = registry.make_domain(cfg, "real", task)
  assert real.ranges == worlds.get_world("tight_sticky").real_domain().ranges
  with pytest.raises(config_lib.ConfigError, match="does not hold env.world"):
    config_lib.load_config(CONFIG + ":small", ["--config.env.world=tight_sticky_heldout"])
  held = worlds.get_world("tight_sticky_heldout").domain_dict()
  ok = config_lib.load_config(CONFIG + ":small", ["--config.env.world=tight_sticky_heldout"]
                              + [f"--config.domain.real.{k}={v}" for k, v in held.items()])
  assert registry.make_domain(ok, "real").ranges == worlds.get_world("tight_sticky_heldout").real_domain().ranges


def test_config_presets(cfg):
  paper = config_lib.load_config(CONFIG + ":paper")
  for c in (cfg, paper):
    assert c.task == "peg_insertion" and c.env.ctrl_dt == 0.2
    assert c.model.history == 5 and c.model.horizon == 5
    assert tuple(c.data.noisy_len) == (1, 5) and tuple(c.data.clean_len) == (5, 10)  # the manipulation recipe
  assert paper.planner.init_std == 1.0 and paper.planner.inverse_temperature == 0.4 and paper.planner.prior_std == 0.1
  assert paper.env.episode_length == 225  # 45 s at 5 Hz
  assert cfg.env.eval_grid == "narrow"
  wide = config_lib.load_config(CONFIG + ":small", ["--config.env.eval_grid=wide"])
  assert wide.env.eval_grid == "wide"
  with pytest.raises(config_lib.ConfigError, match="env.eval_grid"):
    config_lib.load_config(CONFIG + ":small", ["--config.env.eval_grid=medium"])


# ---- grids and the initial-condition hook ------------------------------------------------------------------------
def test_grids_are_fixed_and_deterministic(task):
  n, w = grids.get_grid("narrow"), grids.get_grid("wide")
  assert n.shape == (9, 2) and w.shape == (20, 2)
  np.testing.assert_array_equal(n, grids.get_grid("narrow"))
  np.testing.assert_array_equal(task.initial_conditions("wide"), w)
  for g, span in ((n, 0.02), (w, 0.35)):
    np.testing.assert_allclose(g.max(0) - g.min(0), (span, span), atol=1e-7)
    assert len({tuple(p) for p in g.round(6)}) == len(g)
  np.testing.assert_allclose(sorted(set(n[:, 0].round(6))), (-0.01, 0.0, 0.01), atol=1e-7)
  conds = grids.trial_conditions("narrow", 20)
  np.testing.assert_array_equal(conds[:9], n)
  np.testing.assert_array_equal(conds[18:], n[:2])
  np.testing.assert_array_equal(grids.trial_conditions("wide", 20), w)
  with pytest.raises(ValueError, match="unknown grid"):
    grids.get_grid("medium")
  assert task.condition_grids == ("narrow", "wide")


def test_grid_starts_are_where_stated_and_key_independent(task, sim_env):
  cond = task.initial_conditions("wide")[7]
  tips = []
  for s in (0, 1):
    sim_env.reset(jax.random.PRNGKey(s), condition=cond)
    tips.append(_site(sim_env.model, sim_env.data, "peg_tip"))
  np.testing.assert_allclose(tips[0], tips[1], atol=1e-9)
  np.testing.assert_allclose(tips[0], (cond[0], cond[1], model_lib.HOLE_DEPTH + grids.GRID_START_HEIGHT), atol=1e-6)
  # the domain and noise streams do not depend on the condition (same key splits)
  k = jax.random.PRNGKey(9)
  p0, *_, r0 = sim_env._start(k)  # the twin's jitted episode_start, without and with a condition
  p1, *_, r1 = sim_env._start_at(k, jnp.asarray(cond))
  assert all(float(p0[n]) == float(p1[n]) for n in p0) and bool(jnp.all(r0 == r1))


def test_training_resets_are_diverse(task, sim_env):
  tips = []
  for s in range(40):  # the twin's jitted episode_start: a domain draw and a training reset per key
    params, q, qv, *_ = sim_env._start(jax.random.PRNGKey(s))
    assert np.all(np.asarray(qv) == 0)
    o, rf = kin.fixture_frame(*(float(params[n]) for n in ("fixture_dx", "fixture_dy", "fixture_yaw")))
    tips.append(np.asarray(rf).T @ (np.asarray(peg_tip(q)) - np.asarray(o)))
  tips = np.array(tips)
  lateral = np.hypot(tips[:, 0], tips[:, 1])
  assert (tips[:, 2] < 0).any() and (tips[:, 2] < 0).mean() < 0.5     # some start inserted
  assert lateral[tips[:, 2] < 0].max() < 1e-5                          # ... on the hole's axis
  assert lateral.max() > 0.1 and (lateral[tips[:, 2] > 0] < 0.015).any()  # far and near starts


def test_evaluation_protocol_starts_episodes_on_the_grid(cfg, task, sim_env):
  """`evaluate_episodes(..., grid)` (the adaptation loop's and the baselines' protocol with `env.eval_grid`) starts
  episode i from grid point i mod N; the scripted controller seats the peg from each."""
  from simdist_jax.adapt import evaluation  # pylint: disable=import-outside-toplevel
  assert evaluation.eval_grid(cfg) == "narrow"
  starts = []

  class Probe(evaluation.FunctionController):
    def reset(self, key):
      starts.append(_site(sim_env.model, sim_env.data, "peg_tip"))

  length = sim_env.episode_length
  sim_env.episode_length = 15
  try:
    ev = evaluation.evaluate_episodes(sim_env, Probe(peg.scripted_insertion(task.cfg)), [7, 8, 9], grid="narrow")
  finally:
    sim_env.episode_length = length
  grid = task.initial_conditions("narrow")
  np.testing.assert_allclose(np.array(starts)[:, :2], grid[:3], atol=1e-6)
  assert ev["success_final"] == [1.0, 1.0, 1.0] and ev["grid"] == "narrow"
  conds = evaluation.episode_conditions(task, "wide", 22)
  np.testing.assert_array_equal(conds[20], task.initial_conditions("wide")[0])
  assert evaluation.episode_conditions(task, "", 3) == [None, None, None]


def test_grid_episodes_record_their_start_and_replay_exactly(tmp_path, task, sim_env):
  """The adaptation loop's real episodes on a grid record their condition, so the counterfactual instrument's
  exact replay (same key, same start, recorded actions) does not diverge."""
  from simdist_jax.adapt import evaluation, loop, recorder as rec  # pylint: disable=import-outside-toplevel
  cond = task.initial_conditions("narrow")[5]
  r = rec.EpisodeRecorder(tmp_path / "eps", task.dims)
  length = sim_env.episode_length
  sim_env.episode_length = 8
  try:
    evaluation.run_episode(sim_env, evaluation.FunctionController(peg.scripted_insertion(task.cfg)),
                           jax.random.PRNGKey(11), r, meta=loop._episode_meta(11, cond, purpose="heldout"),
                           condition=cond)
    ep = rec.load_episodes(tmp_path / "eps", task.dims)[0][0]
    assert ep["meta"]["condition"] == pytest.approx([float(x) for x in cond])
    w = evaluation.counterfactual_windows(sim_env, ep, H=2, T=2, sigma=0.3, num_points=2,
                                          rng=np.random.default_rng(0), chunks_per_point=1)
  finally:
    sim_env.episode_length = length
  assert w["acts"].shape == (2, 2, 7)
  assert loop._episode_meta(3, None, round=1) == {"seed": 3, "round": 1}  # tasks without grids: as before


# ---- the task is solvable ----------------------------------------------------------------------------------------
def test_scripted_controller_inserts_the_peg_in_sim(task, sim_env):
  """Move above the perceived hole, align, descend: seated within the episode from every Narrow point and the
  Wide grid's corners (C twin, sim domain: a new DR draw per episode)."""
  fn = peg.scripted_insertion(task.cfg)
  wide = task.initial_conditions("wide")
  conds = list(task.initial_conditions("narrow")) + [wide[0], wide[3], wide[16], wide[19]]
  for i, cond in enumerate(conds):
    obs = sim_env.reset(jax.random.PRNGKey(100 + i), condition=cond)
    steps = 0
    while steps < int(sim_env.episode_length):
      obs, _, _, info = sim_env.step(fn(obs["state"]))
      steps += 1
      if task.success(info["metrics"]):
        break
    assert task.success(info["metrics"]), (i, cond, info["metrics"])
    assert steps <= 30, (i, steps)
  # and the peg stays seated: the success holds on the following steps
  for _ in range(5):
    obs, _, _, info = sim_env.step(fn(obs["state"]))
    assert task.success(info["metrics"])


def test_zero_action_holds_the_peg(task, sim_env):
  """The integrated set-point holds the stage still; the uncompensated peg weight sags it by ~m g / kp_z."""
  sim_env.reset(jax.random.PRNGKey(5), condition=task.initial_conditions("narrow")[4])
  tip0 = _site(sim_env.model, sim_env.data, "peg_tip")
  for _ in range(10):
    sim_env.step(np.zeros(7, np.float32))
  tip = _site(sim_env.model, sim_env.data, "peg_tip")
  p = sim_env.params
  sag = float(p["peg_mass"]) * 9.81 / (model_lib.KP[2] * float(p["kp_scale"]))
  np.testing.assert_allclose(tip[:2], tip0[:2], atol=1e-5)
  assert abs((tip0[2] - tip[2]) - sag) < 0.3 * sag + 2e-5, (tip0[2] - tip[2], sag)


# ---- MJX vs MuJoCo C ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_mjx_and_c_agree_on_a_scripted_insertion(cfg, task):
  """The scripted insertion (actions from the C twin's observations, applied to both) from a Narrow and a Wide grid
  point in the sim domain. Stated tolerance (docs/manipulation.md): poses (stage joints, tip in the hole frame,
  relative rotation) within 1e-3 m / rad, velocities within 0.1, reward within 1e-2, the same success at every step.
  Free motion agrees to ~1e-7; the residual comes from the box-box contacts (MJX's and MuJoCo C's box-box routines
  place different contact points)."""
  env = registry.make_env(cfg, "sim")
  real = RealEnv(task, env.domain, sim_domain=env.sim_domain)
  reset, step = jax.jit(env.reset), jax.jit(env.step)
  fn = peg.scripted_insertion(task.cfg)
  pos_idx = np.r_[0:6, 18:24]
  vel_idx = np.r_[6:12]
  for i, cond in enumerate((task.initial_conditions("narrow")[2], task.initial_conditions("wide")[13])):
    key = jax.random.PRNGKey(3 + i)
    s = reset(key, None, jnp.asarray(cond))
    obs = real.reset(key, condition=cond)
    np.testing.assert_allclose(np.asarray(s.obs["privileged_state"]), obs["privileged_state"], atol=1e-6)
    pos_err, vel_err, r_err, succ = 0.0, 0.0, 0.0, []
    for _ in range(30):
      a = fn(obs["state"])
      s = step(s, jnp.asarray(a))
      obs, r, _, info = real.step(a)
      e = np.abs(np.asarray(s.obs["privileged_state"]) - obs["privileged_state"])
      pos_err, vel_err = max(pos_err, e[pos_idx].max()), max(vel_err, e[vel_idx].max())
      r_err = max(r_err, abs(float(s.reward) - r))
      succ.append((float(s.metrics["success"]), info["metrics"]["success"]))
    print(f"condition {cond}: max pose err {pos_err:.2e}, vel err {vel_err:.2e}, reward err {r_err:.2e}")
    assert pos_err < 1e-3 and vel_err < 0.1 and r_err < 1e-2
    assert all(a == b for a, b in succ) and succ[-1] == (1.0, 1.0)  # and MJX inserts the peg too
