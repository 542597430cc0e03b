"""Terrain: analytic heights and height scan against hand values and against MuJoCo ray casts."""

import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from simdist_jax.envs.go2 import model as model_lib
from simdist_jax.envs.go2 import terrain
from simdist_jax.envs.go2 import worlds


def test_height_of_known_slope_and_step():
  ter = terrain.Terrain("t", (terrain.Panel(1.0, 3.0, -1.0, 1.0, 0.0, 0.5),      # ramp: 0.25 m per m
                              terrain.Panel(3.0, 4.0, -1.0, 1.0, 0.5, 0.5),      # plateau
                              terrain.Panel(-2.0, -1.0, -1.0, 1.0, 0.12, 0.12)))  # 12 cm step
  pts = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.5], [2.6, -0.9], [3.5, 0.0], [4.5, 0.0],
                  [2.0, 1.5], [-1.5, 0.0], [-0.99, 0.0]], np.float32)
  want = [0.0, 0.0, 0.25, 0.4, 0.5, 0.0, 0.0, 0.12, 0.0]
  np.testing.assert_allclose(terrain.height(ter, jnp.asarray(pts)), want, atol=1e-6)
  np.testing.assert_allclose(terrain.height_np(ter, pts), want, atol=1e-9)


def test_height_scan_layout_on_flat_ground():
  pts = terrain.scan_points_body()
  assert pts.shape == (21, 15, 2)
  np.testing.assert_allclose(pts[0, 0], [-0.5, -0.7], atol=1e-6)
  np.testing.assert_allclose(pts[20, 14], [1.5, 0.7], atol=1e-6)
  np.testing.assert_allclose(pts[10, 7], [0.5, 0.0], atol=1e-6)
  scan = terrain.height_scan(terrain.flat(), jnp.array([3.0, -2.0, 0.32]), jnp.float32(1.0))
  np.testing.assert_allclose(scan, np.full((21, 15), 0.02), atol=1e-6)
  # clipping at +-2
  scan = terrain.height_scan(terrain.flat(), jnp.array([0.0, 0.0, 5.0]), jnp.float32(0.0))
  np.testing.assert_allclose(scan, 2.0)


def test_height_scan_of_slope_and_step_equals_hand_values():
  slope = terrain.Terrain("s", (terrain.Panel(0.0, 10.0, -5.0, 5.0, 0.0, 1.0),))  # 0.1 m rise per m along x
  base = jnp.array([2.0, 0.0, 0.6])
  # yaw 0: row i is x = 2.0 + 0.5 + 0.1 (i - 10) -> ground 0.1 x; value = 0.6 - 0.1 x - 0.3
  scan = np.asarray(terrain.height_scan(slope, base, jnp.float32(0.0)))
  x = 2.5 + 0.1 * (np.arange(21) - 10)
  np.testing.assert_allclose(scan, np.repeat((0.3 - 0.1 * x)[:, None], 15, 1), atol=1e-5)
  # yaw 90 deg: forward = +y, lateral (left) = -x: column j is x = 2.0 - 0.1 (j - 7)
  scan = np.asarray(terrain.height_scan(slope, base, jnp.float32(np.pi / 2)))
  xw = 2.0 - 0.1 * (np.arange(15) - 7)
  np.testing.assert_allclose(scan, np.repeat((0.3 - 0.1 * xw)[None, :], 21, 0), atol=1e-5)
  # a 0.15 m step starting 1.0 m ahead of the base (rows with x >= 1.0: forward offset >= 1.0 -> i >= 15)
  step = terrain.Terrain("st", (terrain.Panel(1.0, 5.0, -5.0, 5.0, 0.15, 0.15),))
  scan = np.asarray(terrain.height_scan(step, jnp.array([0.0, 0.0, 0.35]), jnp.float32(0.0)))
  want = np.where(np.arange(21) >= 15, 0.35 - 0.15 - 0.3, 0.35 - 0.3)
  np.testing.assert_allclose(scan, np.repeat(want[:, None], 15, 1), atol=1e-5)


@pytest.mark.parametrize("ter", [terrain.make("slope", 0.8), terrain.make("stairs", 0.5),
                                 terrain.make("boxes", 0.6, seed=3), terrain.make("rough", 1.0, seed=1),
                                 worlds.slippery_slope_terrain(),
                                 worlds.foam_terrain()], ids=lambda t: t.name)
def test_mjcf_geometry_matches_the_height_function(ter):
  """Ray casts down on the compiled MJCF hit exactly the analytic ground height."""
  m = model_lib.build_model(ter)
  d = mujoco.MjData(m)
  mujoco.mj_forward(m, d)
  rng = np.random.default_rng(0)
  pts = rng.uniform([-2.5, -1.4], [5.5, 1.4], size=(300, 2))
  geomgroup = np.array([1, 0, 0, 0, 0, 0], np.uint8)  # terrain geoms only (group 0)
  geomid = np.zeros(1, np.int32)
  hit = []
  for x, y in pts:
    dist = mujoco.mj_ray(m, d, np.array([x, y, 5.0]), np.array([0.0, 0.0, -1.0]), geomgroup, 1, -1, geomid)
    hit.append(5.0 - dist)
  want = terrain.height_np(ter, pts)
  # away from vertical edges (within 1 mm of an edge a ray may hit either side)
  np.testing.assert_allclose(np.array(hit), want, atol=1e-6)
  assert len(ter.panels) > 0 and np.ptp(want) > 0.02


def test_terrain_generators_keep_spawn_pad_flat_and_scale_with_difficulty():
  pad = np.stack(np.meshgrid(np.linspace(-0.55, 0.55, 12), np.linspace(-0.55, 0.55, 12)), -1).reshape(-1, 2)
  for kind in terrain.TERRAIN_TYPES:
    np.testing.assert_allclose(terrain.height_np(terrain.make(kind, 1.0), pad), 0.0)
  assert terrain.make("stairs", 1.0).panels[0].h0 == pytest.approx(0.23)
  assert terrain.make("stairs", 0.0).panels[0].h0 == pytest.approx(0.05)
  s = terrain.make("slope", 1.0).panels[0]
  assert (s.h1 - s.h0) / (s.x1 - s.x0) == pytest.approx(0.4)
  with pytest.raises(ValueError, match="unknown terrain"):
    terrain.make("lava")
