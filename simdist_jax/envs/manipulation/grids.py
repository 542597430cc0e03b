"""Fixed grids of initial conditions for the manipulation evaluations (SimDist's Narrow and Wide grids).

The paper draws the initial conditions of its UR5e trials from a Narrow grid spanning 2 cm x 2 cm and a Wide grid
spanning 35 cm x 35 cm (simdist_paper.md §4.1), 20 trials per evaluation. Here one condition is the start offset
(dx, dy) [m] of the peg tip from the NOMINAL hole axis (the fixture's position without the domain's offset), the tip
`GRID_START_HEIGHT` above the hole's top, the peg upright and aligned with the nominal fixture (yaw 0):
  narrow: 3 x 3 points, x, y in {-0.01, 0, 0.01} (1 cm spacing over 2 cm x 2 cm);
  wide:   5 x 4 points, x in linspace(-0.175, 0.175, 5) (8.75 cm spacing), y in linspace(-0.175, 0.175, 4)
          (11.67 cm spacing) over 35 cm x 35 cm.
Points are listed x-major (for x: for y:). An evaluation of n trials runs point i mod N in trial i
(`trial_conditions`): 20 trials are exactly one pass of the Wide grid, and two passes of the Narrow grid plus its
first two points again. Nothing here is random, so the lists are the same on every call and machine.
"""

from __future__ import annotations

import numpy as np

GRID_START_HEIGHT = 0.05  # m, peg tip above the hole's top at a grid start
NARROW_SPAN = 0.02
WIDE_SPAN = 0.35


def _grid(span_x: float, nx: int, span_y: float, ny: int) -> np.ndarray:
  xs = np.linspace(-span_x / 2, span_x / 2, nx)
  ys = np.linspace(-span_y / 2, span_y / 2, ny)
  return np.array([(x, y) for x in xs for y in ys], np.float32)


GRIDS = {
    "narrow": _grid(NARROW_SPAN, 3, NARROW_SPAN, 3),
    "wide": _grid(WIDE_SPAN, 5, WIDE_SPAN, 4),
}


def get_grid(name: str) -> np.ndarray:
  """The grid `name` as a fresh [N, 2] float32 array of (dx, dy) start offsets [m]."""
  if name not in GRIDS:
    raise ValueError(f"unknown grid {name!r}; known: {sorted(GRIDS)}")
  return GRIDS[name].copy()


def trial_conditions(name: str, n_trials: int) -> np.ndarray:
  """The conditions of an evaluation of `n_trials` trials on grid `name`: point i mod N for trial i [n, 2]."""
  g = get_grid(name)
  return g[np.arange(int(n_trials)) % len(g)]
