"""`simdist_jax.analysis.ranking`: the latent R^2 on hand-worked cases (rank statistics: test_stats.py)."""

import numpy as np
import pytest

from simdist_jax.analysis import ranking


def test_z_r2():
  z = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, 3.0]])
  assert ranking.z_r2(z, z + 5.0) == pytest.approx(1.0)  # a constant offset is not action-induced variation
  assert ranking.z_r2(z, np.zeros_like(z)) == pytest.approx(0.0)  # predicts no variation at all
  # halved variation: residual = 0.5 * centred z, R2 = 1 - 0.25 = 0.75
  assert ranking.z_r2(z, 0.5 * z) == pytest.approx(0.75)
