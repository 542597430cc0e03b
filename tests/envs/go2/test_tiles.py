"""Per-episode tile grid: the height field's triangulation, every tile kind against hand values and MuJoCo ray
casts, spawn sampling, and the errors on bad layouts."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from simdist_jax.envs.go2 import model as model_lib
from simdist_jax.envs.go2 import terrain, tiles
from simdist_jax.envs.go2.task import Go2, Go2Config

GEOMGROUP = np.array([1, 0, 0, 0, 0, 0], np.uint8)  # terrain geoms only (group 0)


def _ray_heights(m, pts):
  d = mujoco.MjData(m)
  mujoco.mj_forward(m, d)
  gid = np.zeros(1, np.int32)
  return np.array([10.0 - mujoco.mj_ray(m, d, np.array([x, y, 10.0]), np.array([0.0, 0.0, -1.0]), GEOMGROUP,
                                        1, -1, gid) for x, y in pts])


def test_height_field_interpolates_on_mujocos_triangles():
  """2 x 2 cells of 1 m: each cell is split along its (x0, y0)-(x1, y1) diagonal, as MuJoCo collides it."""
  h = np.array([[0.0, 1.0, 0.0],     # row 0: y = 0
                [2.0, 3.0, 0.0],     # row 1: y = 1
                [0.0, 0.0, 0.0]])    # row 2: y = 2
  hf = terrain.HeightField("t", h, 1.0, 0.0, 0.0, np.zeros((1, 2)), ("c",))
  # cell (0, 0): h00 = 0, h10 (x + 1) = 1, h01 (y + 1) = 2, h11 = 3
  pts = np.array([[0.75, 0.25],   # below the diagonal: 0 + 0.75 * 1 + 0.25 * (3 - 1) = 1.25
                  [0.25, 0.75],   # above: 0 + 0.75 * 2 + 0.25 * (3 - 2) = 1.75
                  [0.5, 0.5],     # on the diagonal: 1.5 either way
                  [1.0, 1.0],     # a vertex: 3
                  [1.5, 0.0]])    # edge y = 0 between x = 1 (1.0) and x = 2 (0.0): 0.5
  want = [1.25, 1.75, 1.5, 3.0, 0.5]
  np.testing.assert_allclose(terrain.height_np(hf, pts), want, atol=1e-12)
  np.testing.assert_allclose(terrain.height(hf, jnp.asarray(pts, jnp.float32)), want, atol=1e-6)
  m = model_lib.build_model(hf)
  np.testing.assert_allclose(_ray_heights(m, pts + [0.0, 1e-4]), terrain.height_np(hf, pts + [0.0, 1e-4]),
                             atol=1e-6)


def test_tile_kinds_have_the_documented_heights():
  g = tiles.grid(levels=5, tile_size=8.0, resolution=0.05, border=2.0, seed=0)
  kinds = tiles.TILE_KINDS
  assert g.shape == (int((5 * 8 + 4) / 0.05) + 1, int((len(kinds) * 8 + 4) / 0.05) + 1)
  assert len(g.spawns) == 5 * len(kinds) and g.spawn_labels[len(kinds) + 3] == f"{kinds[3]}/1"
  np.testing.assert_allclose(g.spawns[len(kinds) + 3], [3 * 8.0, 8.0])

  def at(kind, level, dx, dy):
    return float(terrain.height_np(g, np.array([[kinds.index(kind) * 8.0 + dx, level * 8.0 + dy]]))[0])

  for i in range(5):
    for k in kinds:
      pad = [at(k, i, dx, dy) for dx in (-0.55, 0.0, 0.55) for dy in (-0.55, 0.3, 0.55)]
      rim = [at(k, i, 4.0, dy) for dy in (-3.0, 0.0, 2.0)] + [at(k, i, dx, -4.0) for dx in (-2.0, 1.0)]
      np.testing.assert_allclose(pad + rim, 0.0, atol=1e-9, err_msg=f"{k}/{i}")
  # pyramid, level 1 (d = 0.25, slope 0.1 = 5.7 deg): 0.5 m up the ramp from the pad edge -> 0.05 m;
  # the ramp runs (4 - 0.6 - 0.6) / 2 = 1.4 m to a 0.14 m plateau, then down to 0 at the rim
  assert at("pyramid", 1, 1.1, 0.0) == pytest.approx(0.05, abs=1e-6)
  assert at("pyramid", 1, 0.0, -2.3) == pytest.approx(0.14, abs=1e-6)
  assert at("pyramid", 4, 2.3, 0.0) == pytest.approx(0.56, abs=1e-6)   # d = 1: slope 0.4
  assert at("pit", 4, 2.3, 0.0) == pytest.approx(-0.56, abs=1e-6)
  assert at("pyramid", 0, 2.3, 1.0) == 0.0                              # d = 0: flat
  # stairs, level 2 (d = 0.5): rise 0.05 + 0.09 = 0.14; the third tread (r in [1.2, 1.5)) is step 3
  assert at("stairs_up", 2, 1.3, 0.0) == pytest.approx(0.42, abs=1e-6)
  assert at("stairs_up", 2, 0.0, 2.2) == pytest.approx(0.70, abs=1e-6)  # top: 5 steps
  assert at("stairs_down", 2, 1.3, 0.0) == pytest.approx(-0.42, abs=1e-6)
  # boxes / rough: heights within the level's range, about half / all cells raised
  for k, lo, hi, fill in (("boxes", 0.025, 0.1, 0.5), ("rough", 0.0, 0.06, 1.0)):
    xs = np.linspace(-3.4, 3.4, 60)
    pts = np.array([[kinds.index(k) * 8.0 + x, 4 * 8.0 + y] for x in xs for y in xs
                    if max(abs(x), abs(y)) > 0.8])
    h = terrain.height_np(g, pts)
    assert h.min() >= 0.0 and h.max() <= hi + 1e-6 and h.max() > 0.8 * hi, k
    raised = np.mean(h > lo - 1e-6) if lo > 0 else np.mean(h > 0)
    assert abs(raised - fill) < 0.2, (k, raised)


@pytest.mark.parametrize("kind", tiles.TILE_KINDS)
def test_every_tile_kind_matches_mujoco_ray_casts(kind):
  """The compiled hfield is exactly the height function (MuJoCo C rays) on every kind at its hardest level."""
  g = tiles.grid(kinds=(kind, "pyramid" if kind == "flat" else "flat"), levels=2, tile_size=6.0, resolution=0.05, border=1.0, seed=1)
  m = model_lib.build_model(g)
  assert m.nhfield == 1 and m.ngeom > 0
  rng = np.random.default_rng(2)
  pts = rng.uniform([-3.5, 2.5], [3.5, 9.5], size=(400, 2))    # tile (level 1, column 0) and its border
  want = terrain.height_np(g, pts)
  np.testing.assert_allclose(_ray_heights(m, pts), want, atol=1e-6)
  np.testing.assert_allclose(terrain.height(g, jnp.asarray(pts, jnp.float32)), want, atol=5e-5)
  if kind != "flat":
    assert np.ptp(want) > 0.02


def test_episodes_spawn_on_every_tile_standing_above_the_ground():
  cfg = Go2Config(terrain="grid", grid_kinds=("stairs_up", "boxes"), grid_levels=3, grid_tile_size=6.0,
                  grid_border=1.0, init_xy_range=2.0)
  task = Go2(cfg)
  assert task.spawns.shape == (6, 2)
  init = jax.jit(jax.vmap(lambda k: task.initial_state(k, None)))
  qpos, _, info = init(jax.random.split(jax.random.PRNGKey(0), 240))
  tile = np.asarray(info["tile"])
  counts = np.bincount(tile, minlength=6)
  assert counts.min() >= 20, counts                                  # uniform over the 6 tiles
  off = np.asarray(qpos[:, :2]) - np.asarray(task.spawns)[tile]
  assert np.abs(off).max() <= 2.0 + 1e-5 and np.abs(off).max() > 1.5
  # every foot starts above the ground under it (the spawn height is the highest ground under base and feet)
  m = task.mj_model()
  d = mujoco.MjData(m)
  lowest = []
  for q in np.asarray(qpos):
    d.qpos[:] = q
    mujoco.mj_kinematics(m, d)
    feet = d.site_xpos[task.foot_site_ids]
    lowest.append((feet[:, 2] - model_lib.FOOT_RADIUS - terrain.height_np(task.terrain, feet[:, :2])).min())
  assert min(lowest) > 0.0 and max(lowest) > 0.05


def test_bad_layouts_and_models_name_the_key():
  with pytest.raises(ValueError, match="env.grid_kinds"):
    tiles.grid(kinds=("flat", "lava"))
  with pytest.raises(ValueError, match="env.grid_resolution"):
    tiles.grid(tile_size=8.0, resolution=0.3)
  with pytest.raises(ValueError, match="env.grid_levels"):
    tiles.grid(levels=0)
  with pytest.raises(ValueError, match="env.terrain"):
    Go2(Go2Config(terrain="gird"))
  hf = tiles.grid(kinds=("flat",), levels=1, tile_size=3.0, resolution=0.5, border=0.0)
  with pytest.raises(ValueError, match="hfield"):
    terrain.write_model_data(hf, model_lib.build_model(terrain.flat()))
  with pytest.raises(ValueError, match="non-finite"):
    terrain.HeightField("x", np.array([[0.0, np.nan], [0.0, 0.0]]), 1.0, 0.0, 0.0, np.zeros((1, 2)), ("c",))


def test_curriculum_moves_the_level_by_the_distance_walked():
  cfg = Go2Config(terrain="grid", grid_kinds=("flat", "stairs_up", "boxes"), grid_levels=4, grid_tile_size=6.0,
                  grid_border=1.0)
  task = Go2(cfg)
  kinds = len(cfg.grid_kinds)

  def nxt(tile, walked, vx=1.0, steps=250, key=0):
    ref = np.concatenate([np.asarray(task.spawns[tile]), [0.3]]).astype(np.float32)
    qpos = np.zeros(19, np.float32)
    qpos[:2] = ref[:2] + [walked * 0.6, walked * 0.8]
    prev = {"task": {"tile": jnp.int32(tile), "ref": jnp.asarray(ref), "t": jnp.int32(steps),
                     "command": jnp.array([vx, 0.0, 0.2])}, "qpos": jnp.asarray(qpos)}
    return int(task.next_tile(jax.random.PRNGKey(key), prev))

  stairs_1 = 1 * kinds + 1
  assert nxt(stairs_1, walked=3.5) == 2 * kinds + 1      # > half a tile (3 m): up one level, same kind
  assert nxt(stairs_1, walked=2.0) == 0 * kinds + 1      # asked 1 m/s x 5 s = 5 m, walked < 2.5 m: down
  assert nxt(stairs_1, walked=2.6) == stairs_1           # neither: stay
  assert nxt(stairs_1, walked=0.0, vx=0.0) == stairs_1   # standing command: asked 0 m, stays
  assert nxt(0 * kinds + 2, walked=0.1) == 0 * kinds + 2  # level 0 cannot go down
  top = [nxt(3 * kinds + 1, walked=4.0, key=k) for k in range(40)]   # past the top: a random level, same kind
  assert all(t % kinds == 1 for t in top) and len({t // kinds for t in top}) >= 3
  # with `previous`, initial_state spawns on the curriculum's tile
  prev = {"task": {"tile": jnp.int32(stairs_1), "ref": jnp.asarray([*np.asarray(task.spawns[stairs_1]), 0.0]),
                   "t": jnp.int32(250), "command": jnp.array([1.0, 0.0, 0.0])},
          "qpos": jnp.zeros(19).at[:2].set(task.spawns[stairs_1] + 3.5)}
  qpos, _, info = task.initial_state(jax.random.PRNGKey(1), None, prev)
  assert int(info["tile"]) == 2 * kinds + 1
  np.testing.assert_allclose(np.asarray(qpos[:2]), np.asarray(task.spawns[2 * kinds + 1]), atol=1e-6)
