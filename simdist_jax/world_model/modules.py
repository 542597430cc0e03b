"""Building blocks of the world model (flax linen), all applied to ONE example (no batch dim).

Dimension letters: T tokens (queries), S context tokens, D token width, F input features.

- `Linear`: a dense layer that also accepts zero input features (C = 0, E = 0 tasks): it then reduces to a bias.
- `MLP`: GELU between layers, no activation on the output.
- `TransformerLayer`: post-LayerNorm block: self-attention (optionally causal), optional cross-attention to a context,
  then a GELU feed-forward, each followed by `LayerNorm(x + sublayer(x))`, as in the official SimDist `modules.py`.
- `Transformer`: a stack of `TransformerLayer`s (an encoder when `cross=False`, a decoder when `cross=True`).
- `SeqEmbedding`: `Linear(F -> D)` plus a learned positional table `[T, D]`.
- `HeightMapCNN`: 3x3 stride-2 SAME convs (8 -> 16 -> 32 by default) + learned row/col embedding + MLP.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Linear(nn.Module):
  """`Dense(features)` that degrades to a learned bias when the input has zero features."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[..., F] -> [..., features]`."""
    if x.shape[-1] == 0:
      bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
      return jnp.broadcast_to(bias, x.shape[:-1] + (self.features,))
    return nn.Dense(self.features, name="dense")(x)


class MLP(nn.Module):
  """GELU MLP `F -> hidden[0] -> ... -> out` (no activation on the output)."""

  hidden: Sequence[int]
  out: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[..., F] -> [..., out]`."""
    for i, width in enumerate(self.hidden):
      x = nn.gelu(nn.Dense(width, name=f"dense_{i}")(x))
    return nn.Dense(self.out, name=f"dense_{len(self.hidden)}")(x)


class TransformerLayer(nn.Module):
  """One post-LN transformer layer (self-attn [+ cross-attn] + FFN)."""

  num_heads: int
  mlp_dim: int
  dropout_attn: float = 0.0
  dropout_mlp: float = 0.0
  cross: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, ctx: jax.Array | None, mask: jax.Array | None, deterministic: bool
  ) -> jax.Array:
    """X `[T, D]`, ctx `[S, D]` (decoder only), mask `[1, T, T]` or None -> `[T, D]`."""
    width = x.shape[-1]
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, dropout_rate=self.dropout_attn, name="self_attn"
    )(x, mask=mask, deterministic=deterministic)
    x = nn.LayerNorm(name="ln_self")(x + y)
    if self.cross:
      y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout_attn, name="cross_attn"
      )(x, ctx, deterministic=deterministic)
      x = nn.LayerNorm(name="ln_cross")(x + y)
    y = nn.gelu(nn.Dense(self.mlp_dim, name="ffn_in")(x))
    y = nn.Dropout(self.dropout_mlp)(y, deterministic=deterministic)
    y = nn.Dense(width, name="ffn_out")(y)
    return nn.LayerNorm(name="ln_ffn")(x + y)


class Transformer(nn.Module):
  """Stack of post-LN layers; `causal` masks self-attention, `cross` adds cross-attention to `ctx`."""

  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout_attn: float = 0.0
  dropout_mlp: float = 0.0
  causal: bool = False
  cross: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, ctx: jax.Array | None = None, *, deterministic: bool = True) -> jax.Array:
    """X `[T, D]`, ctx `[S, D]` -> `[T, D]`."""
    assert x.ndim == 2, f"Transformer expects one example [T, D], got {x.shape}"
    mask = nn.make_causal_mask(jnp.ones(x.shape[:1])) if self.causal else None  # [1, T, T]
    for i in range(self.num_layers):
      x = TransformerLayer(
        num_heads=self.num_heads,
        mlp_dim=self.mlp_dim,
        dropout_attn=self.dropout_attn,
        dropout_mlp=self.dropout_mlp,
        cross=self.cross,
        name=f"layer_{i}",
      )(x, ctx, mask, deterministic)
    return x


class SeqEmbedding(nn.Module):
  """`Linear(F -> D)` + learned positional table `[T, D]` (init N(0, pos_init_std^2), as in the official code)."""

  width: int
  length: int
  pos_init_std: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[T, F] -> [T, D]`."""
    assert x.shape[0] == self.length, f"expected {self.length} steps, got {x.shape}"
    pos = self.param("pos", nn.initializers.normal(self.pos_init_std), (self.length, self.width))
    return Linear(self.width, name="proj")(x) + pos


class HeightMapCNN(nn.Module):
  """Height map `[R, C]` -> `[out]`: convs (3x3, stride 2, SAME, GELU) + row/col embedding + MLP."""

  channels: Sequence[int]
  hidden: Sequence[int]
  out: int

  @nn.compact
  def __call__(self, hm: jax.Array) -> jax.Array:
    """`[R, C] -> [out]`."""
    assert hm.ndim == 2, f"height map must be [R, C], got {hm.shape}"
    x = hm[..., None]
    for i, ch in enumerate(self.channels):
      x = nn.gelu(nn.Conv(ch, (3, 3), strides=(2, 2), padding="SAME", name=f"conv_{i}")(x))
    rows, cols, ch = x.shape
    init = nn.initializers.normal(0.02)
    x = x + self.param("row_embed", init, (rows, ch))[:, None, :] + self.param("col_embed", init, (cols, ch))[None]
    return MLP(self.hidden, self.out, name="mlp")(x.reshape(-1))
