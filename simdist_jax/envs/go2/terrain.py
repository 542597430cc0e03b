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


def height(terrain: Terrain, xy: jax.Array) -> jax.Array:
  """Ground height at points `xy` [..., 2] -> [...] (pure jnp; terrain is a static constant)."""
  xy = jnp.asarray(xy)
  if not terrain.panels:
    return jnp.zeros(xy.shape[:-1], xy.dtype)
  a = {k: jnp.asarray(v) for k, v in terrain.arrays().items()}
  x, y = xy[..., 0:1], xy[..., 1:2]  # [..., 1] broadcast against [N]
  inside = (x >= a["x0"]) & (x <= a["x1"]) & (y >= a["y0"]) & (y <= a["y1"])
  frac = (x - a["x0"]) / (a["x1"] - a["x0"])
  top = a["h0"] + (a["h1"] - a["h0"]) * frac
  top = jnp.where(inside, top, 0.0)
  return jnp.maximum(jnp.max(top, axis=-1), 0.0).astype(xy.dtype)


def height_np(terrain: Terrain, xy) -> np.ndarray:
  """Numpy version of `height` (host-side, for hand checks and spawn placement)."""
  xy = np.asarray(xy, np.float64)
  out = np.zeros(xy.shape[:-1])
  for p in terrain.panels:
    x, y = xy[..., 0], xy[..., 1]
    inside = (x >= p.x0) & (x <= p.x1) & (y >= p.y0) & (y <= p.y1)
    top = p.h0 + (p.h1 - p.h0) * (x - p.x0) / (p.x1 - p.x0)
    out = np.maximum(out, np.where(inside, top, 0.0))
  return out


def to_mjcf(terrain: Terrain) -> str:
  """MJCF `<geom>` lines (inside `<worldbody>`, class `terrain`)."""
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
  """Terrain by name (see TERRAIN_TYPES)."""
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


def height_scan(terrain: Terrain, base_pos: jax.Array, yaw: jax.Array) -> jax.Array:
  """Height scan [21, 15] (row: forward, column: lateral, left positive) = clip(base_z - h - 0.3, +-2)."""
  pts = jnp.asarray(scan_points_body())
  c, s = jnp.cos(yaw), jnp.sin(yaw)
  wx = base_pos[0] + c * pts[..., 0] - s * pts[..., 1]
  wy = base_pos[1] + s * pts[..., 0] + c * pts[..., 1]
  h = height(terrain, jnp.stack([wx, wy], -1))
  return jnp.clip(base_pos[2] - h - SCAN_OFFSET, -SCAN_CLIP, SCAN_CLIP)
