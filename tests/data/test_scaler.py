"""Streaming scaler equals numpy over the whole data; floor and scalar keys."""

import numpy as np
import pytest

from simdist_jax.data.scaler import Moments, compute_stats, finalize_stats


def test_streaming_merge_equals_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(loc=[3.0, -1e3, 0.0], scale=[0.5, 10.0, 1e-6], size=(1000, 3))
  m = Moments.empty(3)
  for chunk in np.array_split(x, [1, 17, 400, 401, 999]):  # includes 1-row and uneven chunks
    m = m.update(chunk)
  assert m.count == 1000
  np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(np.sqrt(m.m2 / m.count), x.std(0), rtol=1e-9)
  s = m.finalize(std_floor=1e-4)
  assert s["mean"].dtype == np.float32
  np.testing.assert_allclose(s["std"], [x[:, 0].std(), x[:, 1].std(), 1e-4], rtol=1e-6)  # third is floored
  # Merge order does not matter.
  a, b = Moments.of(x[:300]), Moments.of(x[300:])
  np.testing.assert_allclose(b.merge(a).mean, a.merge(b).mean, rtol=1e-14)
  # JSON round trip is exact.
  r = Moments.from_json(m.to_json())
  np.testing.assert_array_equal(r.mean, m.mean)
  np.testing.assert_array_equal(r.m2, m.m2)


def test_hand_worked_and_scalar_keys():
  m = Moments.of(np.array([[1.0], [2.0], [3.0], [4.0]]))
  s = finalize_stats({"reward": m, "proprio": m}, 1e-4)
  assert s["reward"]["mean"].shape == () and float(s["reward"]["mean"]) == 2.5
  assert float(s["reward"]["std"]) == pytest.approx(np.sqrt(1.25))
  assert s["proprio"]["std"].shape == (1,)
  c = compute_stats({"reward": np.array([0.0, 2.0]), "proprio": np.ones((2, 3))}, 0.5, ("reward", "proprio"))
  assert float(c["reward"]["std"]) == 1.0 and np.all(c["proprio"]["std"] == 0.5)
  with pytest.raises(ValueError, match="zero samples"):
    Moments.empty(2).finalize(1e-4)
