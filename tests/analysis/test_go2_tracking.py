"""`simdist_jax.analysis.go2_tracking`: the masked privileged observation and a short flat-tracking run."""

import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.analysis import go2_tracking
from simdist_jax.config import load_config
from simdist_jax.envs.domain import Domain
from simdist_jax.envs.go2 import worlds
from simdist_jax.envs.go2.task import PARAM_NAMES


@pytest.fixture(scope="module")
def cfg():
  return load_config("experiments/configs/go2.py:small")


def test_masked_flattens_the_scan_and_sets_the_nominal_domain(cfg):
  seen = []
  priv = np.arange(380, dtype=np.float32)
  go2_tracking.masked(lambda obs: seen.append(obs["privileged_state"]) or np.zeros(12, np.float32), cfg)(
      {"state": np.zeros(3), "privileged_state": priv})
  got = seen[0]
  np.testing.assert_array_equal(got[:58], priv[:58])                    # proprio, command, action, feet
  np.testing.assert_array_equal(got[65:], np.full(315, 65 + 5 * 15 + 7))  # every cell = the one under the base
  sim = Domain.from_config("sim", dict(cfg.domain.sim), PARAM_NAMES)
  nominal = np.asarray(sim.normalize({k: jnp.float32(v) for k, v in worlds.SIM_NOMINAL.items()}))
  np.testing.assert_allclose(got[58:65], nominal, rtol=1e-6)
  assert not np.allclose(got[58:65], priv[58:65])
  np.testing.assert_array_equal(priv, np.arange(380))                   # the caller's obs is not modified


def test_flat_tracking_standing_still(cfg):
  # zero joint targets for 0.2 s: the robot does not walk, so the tracking kernel at cmd vx = 0.5 is about
  # exp(-0.5^2 / 0.25) = 0.37 and the forward speed about 0.
  rows = go2_tracking.flat_tracking(lambda obs: np.zeros(12, np.float32), cfg, [0.5], episodes=1, duration_s=0.2,
                                    settle_s=0.04, seed=0, log=None)
  (row,) = rows
  ep = row["episodes"][0]
  assert row["cmd"] == 0.5 and row["fall_rate"] == 0.0 and not ep["fell"]
  assert ep["steps"] == 10  # 0.2 s at the 0.02 s control step
  assert abs(row["forward_speed"]) < 0.3, row
  assert 0.2 < row["kernel"] < 0.5, row
