"""Planner tests, and a linear-quadratic stand-in world model with the `WorldModel` interface.

Stand-in (single example, raw units):
  z_0 = C o_t;  z_{k+1} = F z_k + G a_k;  r_k = -(z_k' Q z_k + a_k' R a_k);  V_{k+1} = -z_{k+1}' P z_{k+1};
  policy_chunk = open-loop rollout of a_k = -K z_k.
With gamma the planner's return is a concave quadratic in the action sequence, so its optimum is the
discounted finite-horizon LQR solution (see `lqr_first_action`).
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Context(NamedTuple):
  tokens: jax.Array  # [2H+1, P+A]
  z: jax.Array  # [Z]


class LinearWorldModel(NamedTuple):
  context: Callable[..., Context]
  predict_latents: Callable[..., jax.Array]
  predict_returns: Callable[..., tuple[jax.Array, jax.Array]]
  policy_chunk: Callable[..., jax.Array]


def make_linear_model(horizon: int, traces: list | None = None) -> LinearWorldModel:
  """Builds the stand-in. `traces` (if given) gets one entry per trace of `predict_latents`."""

  def context(variables, proprio_hist, action_hist, proprio_t, extero_t):
    del extero_t
    p, a = proprio_hist.shape[-1], action_hist.shape[-1]
    tokens = jnp.concatenate([jnp.pad(proprio_hist, ((0, 0), (0, a))), jnp.pad(action_hist, ((0, 0), (p, 0))),
                              jnp.pad(proprio_t[None], ((0, 0), (0, a)))], axis=0)
    return Context(tokens=tokens, z=variables["params"]["encoder"]["C"] @ proprio_t)

  def predict_latents(variables, ctx, actions):
    if traces is not None:
      traces.append(actions.shape)
    assert actions.shape[0] == horizon, actions.shape
    dyn = variables["params"]["dynamics"]
    z, z_hat = ctx.z, []
    for k in range(horizon):  # unrolled (T is tiny): compiles faster than a scan under vmap
      z = dyn["F"] @ z + dyn["G"] @ actions[k]
      z_hat.append(z)
    return jnp.stack(z_hat)

  def predict_returns(variables, ctx, z_hat, actions, commands):
    assert commands.shape[0] == horizon + 1, commands.shape
    q, r = variables["params"]["reward"]["Q"], variables["params"]["reward"]["R"]
    p = variables["params"]["value"]["P"]
    zs = jnp.concatenate([ctx.z[None], z_hat[:-1]], axis=0)
    rewards = -(jnp.einsum("ti,ij,tj->t", zs, q, zs) + jnp.einsum("ti,ij,tj->t", actions, r, actions))
    values = -jnp.einsum("ti,ij,tj->t", z_hat, p, z_hat)
    # NaN return for candidates with a_0[0] > nan_above (+inf by default: never).
    nan_above = variables["params"]["reward"]["nan_above"]
    rewards = rewards.at[0].set(jnp.where(actions[0, 0] > nan_above, jnp.nan, rewards[0]))
    return rewards, values

  def policy_chunk(variables, ctx, commands):
    del commands
    dyn, k = variables["params"]["dynamics"], variables["params"]["policy"]["K"]
    z, actions = ctx.z, []
    for _ in range(horizon):
      actions.append(-k @ z)
      z = dyn["F"] @ z + dyn["G"] @ actions[-1]
    return jnp.stack(actions)

  return LinearWorldModel(context, predict_latents, predict_returns, policy_chunk)


def make_variables(f, g, q, r, p, k=None, c=None, nan_above: float = np.inf) -> dict[str, Any]:
  """Flax-style variables dict for the stand-in; returns are NaN for candidates with a_0[0] > nan_above."""
  f, g = jnp.asarray(f, jnp.float32), jnp.asarray(g, jnp.float32)
  z_dim, a_dim = g.shape
  return {"params": {
      "encoder": {"C": jnp.eye(z_dim) if c is None else jnp.asarray(c, jnp.float32)},
      "history": {},
      "dynamics": {"F": f, "G": g},
      "reward": {"Q": jnp.asarray(q, jnp.float32), "R": jnp.asarray(r, jnp.float32),
                 "nan_above": jnp.asarray(nan_above, jnp.float32)},
      "value": {"P": jnp.asarray(p, jnp.float32)},
      "policy": {"K": jnp.zeros((a_dim, z_dim)) if k is None else jnp.asarray(k, jnp.float32)},
  }, "scaler": {}}


def lqr_gains(f, g, q, r, p_terminal, horizon: int, gamma: float) -> list[np.ndarray]:
  """Discounted finite-horizon LQR (Riccati); gains K_0..K_{h-1} with a_k = -K_k z_k.

  Maximizes sum_k gamma^k r_k + gamma^h V_h, i.e. minimizes sum_k gamma^k (z'Qz + a'Ra) + gamma^h z'P z;
  scale p_terminal by gamma for the gamma^(h+1) bootstrap.
  """
  f, g, q, r = (np.asarray(x, np.float64) for x in (f, g, q, r))
  p = np.asarray(p_terminal, np.float64)
  gains = []
  for _ in range(horizon):
    k = np.linalg.solve(r + gamma * g.T @ p @ g, gamma * g.T @ p @ f)
    p = q + gamma * f.T @ p @ (f - g @ k)
    gains.append(k)
  return gains[::-1]


def lqr_plan(f, g, q, r, p_terminal, horizon: int, gamma: float, z0) -> np.ndarray:
  """Optimal open-loop action sequence [h, A] from z0 (equals the closed-loop LQR rollout)."""
  z = np.asarray(z0, np.float64)
  actions = []
  for k in lqr_gains(f, g, q, r, p_terminal, horizon, gamma):
    a = -k @ z
    actions.append(a)
    z = np.asarray(f) @ z + np.asarray(g) @ a
  return np.stack(actions)
