"""Pure loss functions of the model-free baselines, one batch at a time (rlax style: arrays in, arrays out).

Dimension letters: B batch, A action, K ensemble members. Sources of each formula are given per function; every
one is checked on hand-worked numbers in tests/baselines/test_losses.py.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def masked_bc_loss(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared action error over the steps where `mask` is 1: pred/target [B, A], mask [B] -> [].

  Single-step BC of the clean expert (paper §5; SimDist's own BC term masks by the expert flag the same way). With
  no masked step the loss is 0 (not NaN), so an all-noised batch contributes no gradient."""
  assert pred.shape == target.shape and pred.ndim == 2, (pred.shape, target.shape)
  assert mask.shape == pred.shape[:1], (mask.shape, pred.shape)
  w = mask.astype(pred.dtype)
  per_step = jnp.mean((pred - target) ** 2, axis=-1)
  return jnp.sum(w * per_step) / jnp.maximum(jnp.sum(w), 1.0)


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
  """IQL's asymmetric L2 (Kostrikov et al. 2021, Eq. 5): |tau - 1(u < 0)| u^2 with u = Q(s, a) - V(s), elementwise.

  tau = 0.5 is half the squared error; tau -> 1 makes V an upper expectile of Q (the in-sample max)."""
  if not 0.0 < expectile < 1.0:
    raise ValueError(f"expectile must be in (0, 1), got {expectile}")
  weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
  return weight * diff ** 2


def awr_weights(advantage: jax.Array, temperature: float, max_weight: float = 100.0) -> jax.Array:
  """IQL's advantage-weighted regression weights exp(beta A) clipped at `max_weight` (IQL's code: 100)."""
  if temperature < 0.0:
    raise ValueError(f"temperature must be >= 0, got {temperature}")
  return jnp.minimum(jnp.exp(advantage * temperature), max_weight)


def td_target(reward: jax.Array, discount: float, not_done: jax.Array, next_value: jax.Array) -> jax.Array:
  """One-step bootstrapped target r + gamma (1 - d) V(s'), elementwise (`not_done` = 1 - terminal, not truncation)."""
  return reward + discount * not_done * next_value


def ensemble_subset_min(q: jax.Array, key: jax.Array, subset_size: int) -> jax.Array:
  """RLPD/REDQ target: the minimum over a random subset of `subset_size` of the K members (drawn without
  replacement, one subset for the whole batch as RLPD's code does): q [K, B] -> [B]."""
  assert q.ndim == 2, q.shape
  k = q.shape[0]
  if not 1 <= subset_size <= k:
    raise ValueError(f"subset_size must be in [1, {k}] (the ensemble size), got {subset_size}")
  idx = jax.random.choice(key, k, shape=(subset_size,), replace=False)
  return q[idx].min(axis=0)


def sac_temperature_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
  """SAC's temperature objective (Haarnoja et al. 2018b; RLPD's `temperature * (entropy - target)`):
  alpha (H - H_target) with H = -mean(log pi(a|s)) held fixed, so gradient descent on log alpha raises alpha when
  the policy's entropy is below the target and lowers it when above. log_prob [B] -> []."""
  entropy = jax.lax.stop_gradient(-jnp.mean(log_prob))
  return jnp.exp(log_alpha) * (entropy - target_entropy)


def polyak(target: Any, online: Any, tau: float) -> Any:
  """Soft target update theta' <- (1 - tau) theta' + tau theta over matching pytrees."""
  if not 0.0 <= tau <= 1.0:
    raise ValueError(f"tau must be in [0, 1], got {tau}")
  return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
