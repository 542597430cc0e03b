"""Does the world model's dynamics use the actions? Latent prediction error on held-out windows.

`action_probe(wm, variables, batch, H, T)`: for each horizon step k, the mean squared latent error
||z_hat_{t+k} - E(o_{t+k})||^2 / Z with (a) the recorded future actions, (b) the actions of another window
(shuffled), (c) zero actions, and (d) the persistence baseline z_hat_{t+k} = z_t. A model that uses the actions
is clearly better with (a) than with (b)/(c), and beats (d).

Dimension letters: B windows, H history, T horizon, Z latent, A actions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.world_model.losses import split_window


def action_probe(wm: Any, variables: Any, batch: dict, H: int, T: int, seed: int = 0) -> dict:
  """Latent MSE per horizon step with true, shuffled and zero actions, and persistence.

  Args:
    wm: the world model (`context`, `predict_latents`, `encode`).
    variables: its variables.
    batch: windows as the dataset samples them ({"action" [B, H+T, A], ...}, the keys `split_window` reads).
    H: history length.
    T: horizon.
    seed: seed of the shuffle permutation over the B windows.

  Returns:
    {"true", "shuffled", "zero", "persistence"}: each [T], the mean over windows at step k = 1..T.
  """
  def one(win, actions):
    w = split_window(win, H, T)
    ctx = wm.context(variables, w.proprio_hist, w.action_hist, w.proprio_t, w.extero_t)
    z_hat = wm.predict_latents(variables, ctx, actions)
    z_true = jax.vmap(lambda p, e: wm.encode(variables, p, e))(w.proprio_next, w.extero_next)
    return jnp.mean((z_hat - z_true) ** 2, -1), jnp.mean((ctx.z[None] - z_true) ** 2, -1)

  f = jax.jit(jax.vmap(one))
  actions = batch["action"][:, H:H + T]
  err, persist = f(batch, actions)
  shuffled, _ = f(batch, actions[np.random.default_rng(seed).permutation(actions.shape[0])])
  zero, _ = f(batch, jnp.zeros_like(actions))
  return {k: np.asarray(v).mean(0) for k, v in
          (("true", err), ("shuffled", shuffled), ("zero", zero), ("persistence", persist))}
