"""`simdist_jax.analysis.probes.action_probe` on a stand-in model with exact dynamics z_{t+1} = z_t + a_t."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from simdist_jax.analysis import probes


class _Ctx(NamedTuple):
  z: jnp.ndarray


class _Integrator:
  """E(p, e) = p; predicted z_{t+k} = z_t + sum_{j < k} a_{t+j}: exact for windows with p_{t+1} = p_t + a_t."""

  def encode(self, variables, p, e):
    del variables, e
    return p

  def context(self, variables, ph, ah, p_t, e_t):
    del ph, ah
    return _Ctx(self.encode(variables, p_t, e_t))

  def predict_latents(self, variables, ctx, actions):
    del variables
    return ctx.z[None] + jnp.cumsum(actions, axis=0)


def test_action_probe_on_exact_dynamics():
  H, T, B = 2, 3, 3
  L = H + T + 1
  c = np.array([1.0, -1.0, 2.0])  # window b applies the constant action c_b
  action = np.repeat(c[:, None, None], L, 1).astype(np.float32)                # [B, L, 1]
  proprio = (np.arange(L)[None, :, None] * action).astype(np.float32)          # p_t = t c_b
  batch = {"proprio": proprio, "extero": np.zeros((B, L, 0), np.float32), "action": action,
           "command": np.zeros((B, L, 0), np.float32), "reward": np.zeros((B, L), np.float32),
           "value": np.zeros((B, L), np.float32), "expert_flag": np.ones((B, L), np.float32)}
  out = probes.action_probe(_Integrator(), None, batch, H, T, seed=0)
  k = np.arange(1, T + 1)
  np.testing.assert_allclose(out["true"], 0.0, atol=1e-6)                       # exact model
  np.testing.assert_allclose(out["zero"], 2.0 * k ** 2, rtol=1e-6)              # mean_b (k c_b)^2 = 2 k^2
  np.testing.assert_allclose(out["persistence"], 2.0 * k ** 2, rtol=1e-6)             # z_t: the same as zero actions
  # seed 0 permutes the windows as (2, 0, 1): action errors 2 - 1, 1 - (-1), -1 - 2 -> mean (1 + 4 + 9) / 3 k^2
  assert list(np.random.default_rng(0).permutation(B)) == [2, 0, 1]
  expected = 14.0 / 3.0 * k ** 2
  np.testing.assert_allclose(out["shuffled"], expected, rtol=1e-6)
  assert set(out) == {"true", "shuffled", "zero", "persistence"} and out["true"].shape == (T,)
