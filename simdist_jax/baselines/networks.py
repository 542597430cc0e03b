"""Networks of the model-free baselines on SimDist's own encoder (paper §5: "the same encoders as SimDist, with an
MLP policy head and no action chunking").

Every module takes ONE example in z-scored units (callers vmap and scale with the world model's scaler functions,
`model.scale` / `model.unscale`). Dimension letters: P proprio, E extero, C command, A action, Z latent.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import modules


class Features(nn.Module):
  """phi(o, c) = [E(o^p, o^e), c]: the world model's encoder E (proprio MLP, height-map CNN when E > 0, latent MLP)
  built from the same `ModelSpec`, then the command. `[P], [E], [C] -> [Z + C]`."""

  spec: model_lib.ModelSpec

  @nn.compact
  def __call__(self, proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
    """`[P], [E], [C] -> [Z + C]`."""
    s = self.spec
    assert proprio.shape == (s.proprio,) and extero.shape == (s.extero,) and command.shape == (s.command,), (
        proprio.shape, extero.shape, command.shape)
    z = model_lib.Encoder(s, name="encoder")(proprio, extero)
    return jnp.concatenate([z, command])


class DeterministicActor(nn.Module):
  """pi(o, c) -> a: `Features` + GELU MLP read-out of one action (single-step, no chunk). `[P], [E], [C] -> [A]`."""

  spec: model_lib.ModelSpec
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
    """`[P], [E], [C] -> [A]` (z-scored action)."""
    f = Features(self.spec, name="features")(proprio, extero, command)
    return modules.MLP(tuple(self.hidden), self.spec.action, name="head")(f)
