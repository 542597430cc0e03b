"""Per-episode terrain: one static height field laid out as a grid of tiles (kinds x difficulty levels).

SimDist (IsaacLab's terrain generator, as legged_gym) trains on a grid of terrain tiles and spawns each episode
on one tile. Here the whole grid is ONE MuJoCo hfield (`terrain.HeightField`), so the MJX contact set is static
(4 feet x 1 hfield) and its cost does not grow with the number of tiles; `terrain.height` interpolates it
exactly as the collision code does, so the height scan, foot heights and termination checks are right on every
tile. Each episode draws a spawn tile (`Go2.initial_state`): uniformly over all tiles and levels, as the official
data generation does, or during PPO by the difficulty curriculum `Go2.next_tile` (`expert.curriculum`).

Layout: column j = kind `kinds[j]`, row i = level i (difficulty d_i = i / (levels - 1), or 0 with one level);
tile (i, j) is a `tile_size` square centred at (j * tile_size, i * tile_size) with its spawn point at the
centre, surrounded by a flat border of width `border`. Every tile has a flat 1.2 m x 1.2 m spawn pad at its
centre and is at height 0 on its outer rim, so neighbouring tiles meet without a cliff. With
r = max(|dx|, |dy|) the distance from the centre (square rings, like IsaacLab's pyramids):
  flat         h = 0
  pyramid      slope s = 0.4 d (0 .. 21.8 deg; level 1 of 5 = 5.7 deg, the Slippery Slope's steeper panel):
               up from the pad over a ramp, a plateau ring, down to 0 at the rim
  pit          -pyramid (down first, then up)
  stairs_up    n = 5 steps of tread 0.3 m and rise 0.05 + 0.18 d m up from the pad, a plateau, 5 down to the rim
  stairs_down  -stairs_up
  boxes        random boxes on a 0.45 m grid, half the cells, heights U(0.025, 0.025 + 0.075 d)
  rough        random tiles on a 0.3 m grid, heights U(0, 0.01 + 0.05 d)
Rasterized at `resolution` m: a vertical edge (step, box side) becomes a one-cell ramp in the height field.
"""

from __future__ import annotations

import numpy as np

from simdist_jax.envs.go2 import terrain as terrain_lib

TILE_KINDS = ("flat", "pyramid", "pit", "stairs_up", "stairs_down", "boxes", "rough")
PAD_HALF = 0.6        # m: flat spawn pad half-size
PLATEAU = 0.6         # m: width of the plateau ring of pyramids
TREAD, N_STEPS = 0.3, 5
RIM = 0.3             # m: boxes/rough keep the outer rim flat


def _pyramid(r: np.ndarray, d: float, half: float) -> np.ndarray:
  run = max(0.0, (half - PAD_HALF - PLATEAU) / 2)
  return 0.4 * d * np.minimum(np.clip(r - PAD_HALF, 0.0, run), np.clip(half - r, 0.0, run))


def _stairs(r: np.ndarray, d: float, half: float) -> np.ndarray:
  rise = 0.05 + 0.18 * d
  up = np.clip(np.floor((r - PAD_HALF) / TREAD) + 1, 0, N_STEPS)
  down = np.clip(np.floor((half - r) / TREAD), 0, N_STEPS)
  return rise * np.minimum(up, down)


def _cells(dx: np.ndarray, dy: np.ndarray, half: float, cell: float, lo: float, hi: float, fill: float,
           rng: np.random.Generator) -> np.ndarray:
  n = int(np.ceil(2 * half / cell))
  values = np.where(rng.uniform(size=(n, n)) < fill, rng.uniform(lo, hi, size=(n, n)), 0.0)
  ix = np.clip(np.floor((dx + half) / cell).astype(int), 0, n - 1)
  iy = np.clip(np.floor((dy + half) / cell).astype(int), 0, n - 1)
  h = values[iy, ix]
  r = np.maximum(np.abs(dx), np.abs(dy))
  return np.where((r <= PAD_HALF) | (r >= half - RIM), 0.0, h)


def tile_heights(kind: str, difficulty: float, dx: np.ndarray, dy: np.ndarray, half: float,
                 rng: np.random.Generator) -> np.ndarray:
  """Heights [m] of one tile at offsets (dx, dy) from its centre (see the module docstring)."""
  d = float(difficulty)
  r = np.maximum(np.abs(dx), np.abs(dy))
  if kind == "flat":
    return np.zeros_like(r)
  if kind == "pyramid":
    return _pyramid(r, d, half)
  if kind == "pit":
    return -_pyramid(r, d, half)
  if kind == "stairs_up":
    return _stairs(r, d, half)
  if kind == "stairs_down":
    return -_stairs(r, d, half)
  if kind == "boxes":
    return _cells(dx, dy, half, 0.45, 0.025, 0.025 + 0.075 * d, 0.5, rng)
  if kind == "rough":
    return _cells(dx, dy, half, 0.3, 0.0, 0.01 + 0.05 * d, 1.0, rng)
  raise ValueError(f"unknown tile kind {kind!r}; expected one of {TILE_KINDS}")


def grid(kinds: tuple[str, ...] = TILE_KINDS, levels: int = 5, tile_size: float = 8.0, resolution: float = 0.05,
         border: float = 4.0, seed: int = 0) -> terrain_lib.HeightField:
  """The tile grid as one HeightField (module docstring); spawn labels are "kind/level"."""
  kinds = tuple(kinds)
  bad = [k for k in kinds if k not in TILE_KINDS]
  if bad or not kinds or len(set(kinds)) != len(kinds):
    raise ValueError(f"env.grid_kinds must be distinct names from {TILE_KINDS}, got {list(kinds)}")
  if int(levels) < 1:
    raise ValueError(f"env.grid_levels must be >= 1, got {levels}")
  if not tile_size >= 2 * (PAD_HALF + RIM) + 0.6:
    raise ValueError(f"env.grid_tile_size must be >= {2 * (PAD_HALF + RIM) + 0.6} m, got {tile_size}")
  steps = tile_size / resolution
  if not (resolution > 0 and abs(steps - round(steps)) < 1e-6):
    raise ValueError(f"env.grid_resolution must divide env.grid_tile_size, got {resolution} and {tile_size}")
  if border < 0:
    raise ValueError(f"env.grid_border must be >= 0, got {border}")
  half = 0.5 * tile_size
  x0, y0 = -half - border, -half - border
  ncol = int(round((len(kinds) * tile_size + 2 * border) / resolution)) + 1
  nrow = int(round((int(levels) * tile_size + 2 * border) / resolution)) + 1
  xs, ys = x0 + resolution * np.arange(ncol), y0 + resolution * np.arange(nrow)
  heights = np.zeros((nrow, ncol))
  rng = np.random.default_rng(seed)
  spawns, labels = [], []

  def span(centre: float, origin: float) -> slice:  # grid indices of the closed interval centre +- half
    lo = int(np.ceil((centre - half - origin - 1e-9) / resolution))
    hi = int(np.floor((centre + half - origin + 1e-9) / resolution))
    return slice(max(lo, 0), hi + 1)

  for i in range(int(levels)):
    d = i / (int(levels) - 1) if levels > 1 else 0.0
    for j, kind in enumerate(kinds):
      cx, cy = j * tile_size, i * tile_size
      # the grid points on the tile's closed square; shared edges are at height 0 for every kind
      rows, cols = span(cy, y0), span(cx, x0)
      dx, dy = np.meshgrid(xs[cols] - cx, ys[rows] - cy)
      heights[rows, cols] = tile_heights(kind, d, dx, dy, half, rng)
      spawns.append((cx, cy))
      labels.append(f"{kind}/{i}")
  return terrain_lib.HeightField("grid", heights.astype(np.float32), float(resolution), float(x0), float(y0),
                                 np.asarray(spawns, np.float32), tuple(labels))
