"""`simdist_jax.analysis.stats`: the rank statistics on hand-worked cases."""

import numpy as np
import pytest

from simdist_jax.analysis import stats


def test_spearman_hand_cases():
  assert stats.spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(1.0)
  assert stats.spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
  # ranks (0,1,2,3) vs (0,2,1,3): sum d^2 = 2, rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
  assert stats.spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
  # a monotone transform keeps the ranks
  x = np.array([0.3, -1.0, 2.5, 0.0, 7.0])
  assert stats.spearman(x, np.exp(x)) == pytest.approx(1.0)
  assert np.isnan(stats.spearman(np.array([5.0]), np.array([1.0])))  # one sample: no ranking
  # a constant prediction ranks nothing (not the position order): undefined, NaN
  assert np.isnan(stats.spearman(np.zeros(4), np.array([1.0, 3.0, 2.0, 4.0])))
  # ties share their mean rank: (0.5, 0.5, 2, 3) vs (0, 1, 2, 3) -> Pearson of the ranks = 0.9487
  assert stats.spearman(np.array([1.0, 1.0, 2.0, 3.0]), np.arange(4.0)) == pytest.approx(3 / np.sqrt(10), rel=1e-6)


def test_rank_ties_share_their_mean_rank():
  np.testing.assert_array_equal(stats.rank(np.array([0.5, -2.0, 9.0])), [1.0, 0.0, 2.0])
  np.testing.assert_array_equal(stats.rank(np.array([2.0, 7.0, 2.0, 2.0])), [1.0, 3.0, 1.0, 1.0])
