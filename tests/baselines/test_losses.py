"""The baselines' pure losses on hand-worked numbers (issue 20: expectile, AWR weights, SAC temperature, the
ensemble subset target)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.baselines import losses


def test_masked_bc_loss_hand_case():
  pred = jnp.array([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
  target = jnp.array([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]])
  # per step (1 + 4) / 2 = 2.5, (masked out), (4 + 4) / 2 = 4 -> mean over the two kept steps 3.25
  assert float(losses.masked_bc_loss(pred, target, jnp.array([1, 0, 1]))) == pytest.approx(3.25)
  assert float(losses.masked_bc_loss(pred, target, jnp.zeros(3))) == 0.0  # no expert step: 0, not NaN


def test_expectile_loss_hand_case():
  out = losses.expectile_loss(jnp.array([2.0, -2.0, 0.0]), 0.9)
  np.testing.assert_allclose(out, [0.9 * 4, 0.1 * 4, 0.0], rtol=1e-6)
  np.testing.assert_allclose(losses.expectile_loss(jnp.array([3.0, -3.0]), 0.5), [4.5, 4.5])  # half the L2
  with pytest.raises(ValueError, match="expectile"):
    losses.expectile_loss(jnp.zeros(2), 1.0)


def test_expectile_minimizer_is_the_upper_expectile():
  # argmin_v E[L_tau(q - v)] over q in {0, 1} equally likely: tau (1 - v) = (1 - tau) v -> v = tau.
  q = jnp.array([0.0, 1.0])
  v = jnp.linspace(0.0, 1.0, 1001)
  risk = jax.vmap(lambda x: losses.expectile_loss(q - x, 0.8).mean())(v)
  assert float(v[jnp.argmin(risk)]) == pytest.approx(0.8, abs=1e-3)


def test_awr_weights_hand_case():
  np.testing.assert_allclose(losses.awr_weights(jnp.array([0.0, 1.0, 10.0, -2.0]), 0.5),
                             [1.0, math.exp(0.5), 100.0, math.exp(-1.0)], rtol=1e-6)
  np.testing.assert_allclose(losses.awr_weights(jnp.array([10.0]), 0.5, max_weight=20.0), [20.0])


def test_td_target_hand_case():
  np.testing.assert_allclose(losses.td_target(jnp.array([1.0, 1.0]), 0.9, jnp.array([1.0, 0.0]),
                                              jnp.array([2.0, 2.0])), [2.8, 1.0], rtol=1e-6)


def test_ensemble_target_uses_the_configured_subset_size():
  q = jnp.arange(5.0)[:, None]  # K = 5 members with values 0..4, one batch entry
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  mins = {m: np.asarray(jax.vmap(lambda k, m=m: losses.ensemble_subset_min(q, k, m))(keys))[:, 0]
          for m in (1, 2, 5)}
  # min of M distinct members out of {0..4}: E = sum_{v>=1} P(min >= v) = sum_v C(5 - v, M) / C(5, M)
  assert mins[5].max() == 0.0                                   # the whole ensemble: always the minimum
  assert mins[1].mean() == pytest.approx(2.0, abs=0.08)         # one member: the uniform mean
  assert mins[2].mean() == pytest.approx((6 + 3 + 1) / 10, abs=0.05)
  assert set(np.unique(mins[2])) == {0.0, 1.0, 2.0, 3.0}        # two distinct members: never min = 4
  with pytest.raises(ValueError, match="subset_size"):
    losses.ensemble_subset_min(q, keys[0], 6)


def test_sac_temperature_moves_toward_the_entropy_target():
  log_prob = jnp.array([-1.0, -3.0])  # entropy estimate 2
  log_alpha = jnp.log(0.2)
  assert float(losses.sac_temperature_loss(log_alpha, log_prob, 1.0)) == pytest.approx(0.2 * (2 - 1), rel=1e-6)
  grad = jax.grad(losses.sac_temperature_loss)
  # entropy above the target: the gradient is positive, so descent lowers alpha (less entropy bonus) ...
  assert float(grad(log_alpha, log_prob, 1.0)) == pytest.approx(0.2, rel=1e-6)
  # ... below the target: alpha rises
  assert float(grad(log_alpha, log_prob, 3.0)) == pytest.approx(-0.2, rel=1e-6)
  # the policy's log-probs get no gradient through the temperature loss
  assert float(jnp.abs(jax.grad(losses.sac_temperature_loss, argnums=1)(log_alpha, log_prob, 1.0)).sum()) == 0.0


def test_polyak_hand_case():
  out = losses.polyak({"w": jnp.zeros(2)}, {"w": jnp.full(2, 10.0)}, 0.1)
  np.testing.assert_allclose(out["w"], [1.0, 1.0], rtol=1e-6)
  with pytest.raises(ValueError, match="tau"):
    losses.polyak({}, {}, 1.5)
