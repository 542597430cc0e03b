"""Terrains as lists of panels: one analytic height function, one MJCF, the same geometry for both.

A terrain is the ground plane z = 0 plus `Panel`s. A panel covers the rectangle [x0, x1] x [y0, y1] and its
top surface is linear in x, from h0 at x0 to h1 at x1 (h0 == h1: a box/step; h0 != h1: a ramp/slope along x).
The ground height is

    h(x, y) = max(0, max_i { top_i(x) : (x, y) inside panel i })

computed in pure jnp (`height`), and each panel is written to MJCF as a box geom whose top face is exactly
the panel's top (ramps: a box pitched about y, 0.05 m half-thickness, so for slopes < 45 deg the box material
below the top never rises above the neighbouring panels' tops when ramps are chained). Hence the analytic
height scan is exact for the geometry the feet collide with (MJX: sphere-plane and sphere-box pairs).

Limitations (documented in docs/go2.md): slopes only along x; no pits below z = 0 (inverted stairs are
expressed as descending stairs from a raised plateau); one terrain per model (MJX's contact set is static),
so the terrain mix of SimDist is obtained by building one env per terrain type/difficulty, not per episode.
MJX cost grows with the number of panels (4 feet x panels sphere-box pairs per physics step).

A `HeightField` is the other terrain kind: heights on a regular grid, written to MJCF as one MuJoCo hfield
geom and interpolated exactly as MuJoCo and MJX triangulate it (each cell split along the diagonal from its
(x0, y0) corner to its (x1, y1) corner), so `height` is again the collision geometry itself. It is what the
per-episode tile grid of `tiles.py` builds (one static MJX model holding every tile; MJX collides each foot
with the few cells under it, so the cost does not grow with the number of tiles).

Generators (difficulty d in [0, 1], SimDist/IsaacLab ranges scaled by d):
  flat, slope (pyramid: up-ramp, plateau, down-ramp, slope 0.4 d), stairs (pyramid stairs, step 0.05 +
  0.18 d m), boxes (random boxes 0.025 + 0.075 d m on a 0.45 m grid), rough (random tiles 0.01 + 0.05 d m
  on a 0.3 m grid). All keep a flat 1.2 m x 1.2 m spawn pad at the origin.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

TERRAIN_TYPES = ("flat", "slope", "stairs", "boxes", "rough")
RAMP_HALF_THICKNESS = 0.05
BOX_BOTTOM = -0.05  # flat panels extend down to this z (below the plane, hidden)


@dataclasses.dataclass(frozen=True)
class Panel:
  """A box/ramp (see module docstring). Optional contact overrides (None: the terrain default)."""

  x0: float
  x1: float
  y0: float
  y1: float
  h0: float
  h1: float
  friction: float | None = None   # sliding friction (mixed with the foot's by max)
  solref: tuple[float, float] | None = None
  solimp: tuple[float, float, float] | None = None
  solmix: float | None = None     # large: this panel's solref/solimp dominate the foot's

  def __post_init__(self):
    if not (self.x1 > self.x0 and self.y1 > self.y0):
      raise ValueError(f"panel needs x1 > x0 and y1 > y0, got {self}")
    if min(self.h0, self.h1) < 0.0:
      raise ValueError(f"panel heights must be >= 0 (no pits below the ground plane), got {self}")
    if abs(self.h1 - self.h0) >= (self.x1 - self.x0):
      raise ValueError(f"panel slope must be < 45 degrees, got {self}")


@dataclasses.dataclass(frozen=True)
class Terrain:
  """Ground plane + panels. `plane_friction`: friction of the plane (None: terrain default)."""

  name: str
  panels: tuple[Panel, ...] = ()
  plane_friction: float | None = None

  def arrays(self) -> dict:
    """Panel parameters as float32 arrays [N] (x0, x1, y0, y1, h0, h1)."""
    cols = ("x0", "x1", "y0", "y1", "h0", "h1")
    if not self.panels:
      return {c: np.zeros((0,), np.float32) for c in cols}
    return {c: np.array([getattr(p, c) for p in self.panels], np.float32) for c in cols}


@dataclasses.dataclass(frozen=True, eq=False)
class HeightField:
  """Ground heights on a grid: `heights[r, c]` [m] at x = x0 + c * cell, y = y0 + r * cell (row = y).

  `spawns` [N, 2]: episode spawn points (tile centres) and `spawn_labels` (one name per spawn, e.g.
  "stairs_up/2"); `base` [m]: the hfield's solid thickness below its lowest point (MuJoCo's size[3]).
  Outside the grid there is no ground (a robot that walks off falls and its episode terminates).
  """

  name: str
  heights: np.ndarray
  cell: float
  x0: float
  y0: float
  spawns: np.ndarray
  spawn_labels: tuple[str, ...]
  base: float = 0.1

  def __post_init__(self):
    h = np.asarray(self.heights)
    if h.ndim != 2 or min(h.shape) < 2:
      raise ValueError(f"height field '{self.name}': heights must be [nrow >= 2, ncol >= 2], got {h.shape}")
    if not np.all(np.isfinite(h)):
      raise ValueError(f"height field '{self.name}': heights contain non-finite values")
    if not self.cell > 0.0:
      raise ValueError(f"height field '{self.name}': cell must be > 0, got {self.cell}")
    sp = np.asarray(self.spawns)
    if sp.ndim != 2 or sp.shape[1] != 2 or len(sp) != len(self.spawn_labels) or len(sp) == 0:
      raise ValueError(f"height field '{self.name}': spawns must be [N >= 1, 2] with one label each, got "
                       f"{sp.shape} and {len(self.spawn_labels)} labels")

  @property
  def shape(self) -> tuple[int, int]:
    """(nrow, ncol)."""
    return tuple(np.shape(self.heights))

  @property
  def extent(self) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the grid [m]."""
    nrow, ncol = self.shape
    return (self.x0, self.x0 + (ncol - 1) * self.cell, self.y0, self.y0 + (nrow - 1) * self.cell)


def spawn_points(terrain) -> np.ndarray:
  """Episode spawn points [N, 2]: the tile centres of a HeightField, the origin (spawn pad) of a Terrain."""
  if isinstance(terrain, HeightField):
    return np.asarray(terrain.spawns, np.float32)
  return np.zeros((1, 2), np.float32)


def _field_height(xp, heights, cell, x0, y0, xy):
  """Triangulated height-field interpolation (numpy or jax.numpy `xp`); see the module docstring."""
  nrow, ncol = heights.shape
  fx = (xy[..., 0] - x0) / cell
  fy = (xy[..., 1] - y0) / cell
  ci = xp.clip(xp.floor(fx), 0, ncol - 2).astype(np.int32)
  ri = xp.clip(xp.floor(fy), 0, nrow - 2).astype(np.int32)
  u = xp.clip(fx - ci, 0.0, 1.0)
  v = xp.clip(fy - ri, 0.0, 1.0)
  h00, h10 = heights[ri, ci], heights[ri, ci + 1]          # h10: one cell along +x
  h01, h11 = heights[ri + 1, ci], heights[ri + 1, ci + 1]  # h01: one cell along +y
  upper = h00 + v * (h01 - h00) + u * (h11 - h01)          # triangle (0,0) (1,1) (0,1)
  lower = h00 + u * (h10 - h00) + v * (h11 - h10)          # triangle (0,0) (1,0) (1,1)
  return xp.where(v > u, upper, lower)


def height(terrain, xy: jax.Array) -> jax.Array:
  """Ground height at points `xy` [..., 2] -> [...] (pure jnp; terrain is a static constant)."""
  xy = jnp.asarray(xy)
  if isinstance(terrain, HeightField):
    hf = jnp.asarray(terrain.heights, jnp.float32)
    return _field_height(jnp, hf, terrain.cell, terrain.x0, terrain.y0, xy).astype(xy.dtype)
  if not terrain.panels:
    return jnp.zeros(xy.shape[:-1], xy.dtype)
  a = {k: jnp.asarray(v) for k, v in terrain.arrays().items()}
  x, y = xy[..., 0:1], xy[..., 1:2]  # [..., 1] broadcast against [N]
  inside = (x >= a["x0"]) & (x <= a["x1"]) & (y >= a["y0"]) & (y <= a["y1"])
  frac = (x - a["x0"]) / (a["x1"] - a["x0"])
  top = a["h0"] + (a["h1"] - a["h0"]) * frac
  top = jnp.where(inside, top, 0.0)
  return jnp.maximum(jnp.max(top, axis=-1), 0.0).astype(xy.dtype)


def height_np(terrain, xy) -> np.ndarray:
  """Numpy version of `height` (host-side, for hand checks and spawn placement)."""
  xy = np.asarray(xy, np.float64)
  if isinstance(terrain, HeightField):
    return _field_height(np, np.asarray(terrain.heights, np.float64), terrain.cell, terrain.x0, terrain.y0, xy)
  out = np.zeros(xy.shape[:-1])
  for p in terrain.panels:
    x, y = xy[..., 0], xy[..., 1]
    inside = (x >= p.x0) & (x <= p.x1) & (y >= p.y0) & (y <= p.y1)
    top = p.h0 + (p.h1 - p.h0) * (x - p.x0) / (p.x1 - p.x0)
    out = np.maximum(out, np.where(inside, top, 0.0))
  return out


def _field_layout(hf: HeightField) -> dict:
  """MuJoCo hfield numbers: size (rx, ry, z range, base), geom centre (the lowest point's z); elevation data
  [nrow, ncol] normalized to [0, 1] = (heights - z min) / z range (`write_model_data`)."""
  nrow, ncol = hf.shape
  zmin, zmax = float(np.min(hf.heights)), float(np.max(hf.heights))
  zrange = zmax - zmin if zmax - zmin > 1e-9 else 1.0
  rx, ry = 0.5 * hf.cell * (ncol - 1), 0.5 * hf.cell * (nrow - 1)
  return {"nrow": nrow, "ncol": ncol, "size": (rx, ry, zrange, hf.base), "pos": (hf.x0 + rx, hf.y0 + ry, zmin)}


def mjcf_assets(terrain) -> str:
  """MJCF `<asset>` lines the terrain needs (a HeightField's hfield; none for panels)."""
  if not isinstance(terrain, HeightField):
    return ""
  lay = _field_layout(terrain)
  size = " ".join(f"{v:.9g}" for v in lay["size"])
  return f'    <hfield name="terrain" nrow="{lay["nrow"]}" ncol="{lay["ncol"]}" size="{size}"/>'


def write_model_data(terrain, model) -> None:
  """Writes a HeightField's elevation data into a compiled `mujoco.MjModel` (no-op for panel terrains).
  Every model built from `to_mjcf`'s XML must go through this (the XML carries no elevation values)."""
  if not isinstance(terrain, HeightField):
    return
  lay = _field_layout(terrain)
  if model.nhfield != 1 or model.hfield_nrow[0] != lay["nrow"] or model.hfield_ncol[0] != lay["ncol"]:
    raise ValueError(f"model has no {lay['nrow']} x {lay['ncol']} hfield for terrain '{terrain.name}' "
                     f"(was it built from this terrain's MJCF?)")
  zmin, zrange = lay["pos"][2], lay["size"][2]
  model.hfield_data[:] = ((np.asarray(terrain.heights, np.float64) - zmin) / zrange).astype(np.float32).reshape(-1)


def to_mjcf(terrain) -> str:
  """MJCF `<geom>` lines (inside `<worldbody>`, class `terrain`)."""
  if isinstance(terrain, HeightField):
    pos = " ".join(f"{v:.9g}" for v in _field_layout(terrain)["pos"])
    return f'    <geom name="floor" class="terrain" type="hfield" hfield="terrain" pos="{pos}"/>'
  pf = f' friction="{terrain.plane_friction} 0.005 0.0001"' if terrain.plane_friction is not None else ""
  lines = [f'    <geom name="floor" class="terrain" type="plane" size="0 0 0.05"{pf}/>']
  for i, p in enumerate(terrain.panels):
    extra = ""
    if p.friction is not None:
      extra += f' friction="{p.friction} 0.005 0.0001"'
    if p.solref is not None:
      extra += f' solref="{p.solref[0]} {p.solref[1]}"'
    if p.solimp is not None:
      extra += f' solimp="{p.solimp[0]} {p.solimp[1]} {p.solimp[2]}"'
    if p.solmix is not None:
      extra += f' solmix="{p.solmix}"'
    cy, hy = 0.5 * (p.y0 + p.y1), 0.5 * (p.y1 - p.y0)
    if p.h0 == p.h1:
      cx, hx = 0.5 * (p.x0 + p.x1), 0.5 * (p.x1 - p.x0)
      hz = 0.5 * (p.h0 - BOX_BOTTOM)
      lines.append(f'    <geom name="panel{i}" class="terrain" type="box" pos="{cx:.9g} {cy:.9g} '
                   f'{p.h0 - hz:.9g}" size="{hx:.9g} {hy:.9g} {hz:.9g}"{extra}/>')
    else:
      dx, dh = p.x1 - p.x0, p.h1 - p.h0
      theta = np.arctan2(dh, dx)
      half_len = 0.5 * np.hypot(dx, dh)
      t = RAMP_HALF_THICKNESS
      normal = np.array([-np.sin(theta), np.cos(theta)])
      top_c = np.array([0.5 * (p.x0 + p.x1), 0.5 * (p.h0 + p.h1)])
      c = top_c - t * normal
      # MuJoCo: a positive rotation about +y tilts +x downwards, so a rising ramp has pitch -theta.
      lines.append(f'    <geom name="panel{i}" class="terrain" type="box" pos="{c[0]:.9g} {cy:.9g} '
                   f'{c[1]:.9g}" size="{half_len:.9g} {hy:.9g} {t}" euler="0 {-theta:.12g} 0"{extra}/>')
  return "\n".join(lines)


# ---- generators -----------------------------------------------------------------------------------------
def flat() -> Terrain:
  """Flat ground: the ground plane alone (no panels)."""
  return Terrain("flat")


def slope(difficulty: float, start: float = 1.0, length: float = 2.0, plateau: float = 1.0,
          half_width: float = 3.0) -> Terrain:
  """Pyramid slope along x: rises at slope 0.4 d from `start` over `length`, plateau, then descends."""
  s = 0.4 * float(difficulty)
  if s <= 0.0:
    return Terrain("slope")
  top = s * length
  x1, x2, x3 = start + length, start + length + plateau, start + 2 * length + plateau
  return Terrain("slope", (
      Panel(start, x1, -half_width, half_width, 0.0, top),
      Panel(x1, x2, -half_width, half_width, top, top),
      Panel(x2, x3, -half_width, half_width, top, 0.0)))


def stairs(difficulty: float, start: float = 0.8, tread: float = 0.3, n_steps: int = 5,
           plateau: float = 1.0, half_width: float = 3.0) -> Terrain:
  """Pyramid stairs along x: `n_steps` up (step 0.05 + 0.18 d m), a plateau, `n_steps` down."""
  rise = 0.05 + 0.18 * float(difficulty)
  panels = []
  for i in range(n_steps):  # step i covers everything from its front edge to the far foot of the stairs
    x0 = start + i * tread
    x1 = start + 2 * n_steps * tread + plateau - i * tread
    panels.append(Panel(x0, x1, -half_width, half_width, rise * (i + 1), rise * (i + 1)))
  return Terrain("stairs", tuple(panels))


def _grid(name: str, cell: float, n: int, h_lo: float, h_hi: float, fill: float, seed: int) -> Terrain:
  rng = np.random.default_rng(seed)
  panels = []
  half = n * cell / 2
  for i in range(n):
    for j in range(n):
      x0, y0 = -half + i * cell, -half + j * cell
      if x0 < 0.6 and x0 + cell > -0.6 and y0 < 0.6 and y0 + cell > -0.6:
        continue  # keeps the 1.2 m x 1.2 m spawn pad flat
      if rng.uniform() > fill:
        continue
      h = float(rng.uniform(h_lo, h_hi))
      panels.append(Panel(x0, x0 + cell, y0, y0 + cell, h, h))
  return Terrain(name, tuple(panels))


def boxes(difficulty: float, seed: int = 0, n: int = 8, cell: float = 0.45) -> Terrain:
  """Random boxes on an n x n grid of `cell` m, heights U(0.025, 0.025 + 0.075 d), half the cells filled."""
  hi = 0.025 + 0.075 * float(difficulty)
  return _grid("boxes", cell, n, 0.025, hi, 0.5, seed)


def rough(difficulty: float, seed: int = 0, n: int = 10, cell: float = 0.3) -> Terrain:
  """Random tiles on an n x n grid of `cell` m, heights U(0, 0.01 + 0.05 d)."""
  hi = 0.01 + 0.05 * float(difficulty)
  return _grid("rough", cell, n, 0.0, hi, 1.0, seed)


def make(kind: str, difficulty: float = 0.0, seed: int = 0) -> Terrain:
  """Panel terrain by name (see TERRAIN_TYPES; the per-episode tile grid is `tiles.grid`)."""
  if kind == "flat":
    return flat()
  if kind == "slope":
    return slope(difficulty)
  if kind == "stairs":
    return stairs(difficulty)
  if kind == "boxes":
    return boxes(difficulty, seed)
  if kind == "rough":
    return rough(difficulty, seed)
  raise ValueError(f"unknown terrain {kind!r}; expected one of {TERRAIN_TYPES}")


# ---- height scan ----------------------------------------------------------------------------------------
SCAN_SHAPE = (21, 15)        # (forward, lateral)
SCAN_RESOLUTION = 0.1        # m
SCAN_CENTER_AHEAD = 0.5      # m in front of the base
SCAN_OFFSET = 0.3            # m subtracted (value = base_z - ground_z - 0.3)
SCAN_CLIP = 2.0


def scan_points_body() -> np.ndarray:
  """Scan grid in the yaw-aligned base frame, [21, 15, 2]: x = 0.5 + (-1.0..1.0), y = -0.7..0.7."""
  nx, ny = SCAN_SHAPE
  xs = SCAN_CENTER_AHEAD + SCAN_RESOLUTION * (np.arange(nx) - (nx - 1) / 2)
  ys = SCAN_RESOLUTION * (np.arange(ny) - (ny - 1) / 2)
  gx, gy = np.meshgrid(xs, ys, indexing="ij")
  return np.stack([gx, gy], -1).astype(np.float32)


def height_scan(terrain, base_pos: jax.Array, yaw: jax.Array) -> jax.Array:
  """Height scan [21, 15] (row: forward, column: lateral, left positive) = clip(base_z - h - 0.3, +-2)."""
  pts = jnp.asarray(scan_points_body())
  c, s = jnp.cos(yaw), jnp.sin(yaw)
  wx = base_pos[0] + c * pts[..., 0] - s * pts[..., 1]
  wy = base_pos[1] + s * pts[..., 0] + c * pts[..., 1]
  h = height(terrain, jnp.stack([wx, wy], -1))
  return jnp.clip(base_pos[2] - h - SCAN_OFFSET, -SCAN_CLIP, SCAN_CLIP)
