"""Domain descriptions: ranges of physical parameters, sampled once per episode.

A `Domain` is a frozen mapping `name -> (low, high)`. The `sim` domain holds the domain-randomization (DR)
ranges; the `real` (shifted) domain holds fixed values (`low == high`) or narrow ranges outside them. The same
object drives both physics backends: `sample(key)` draws one episode's parameters (a dict of float32 scalars),
and the task's `domain_updates(nominal, params)` turns them into new values of model fields, which the MJX
env writes into `mjx.Model` (pytree leaves, inside the vmapped step) and the MuJoCo C twin writes into
`mujoco.MjModel` arrays. Sampling is uniform per parameter.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

Params = dict  # name -> scalar array


@dataclasses.dataclass(frozen=True)
class Domain:
  """Uniform ranges for named physical parameters.

  Attributes:
    name: label used in logs and errors (`sim`, `real`, ...).
    ranges: tuple of `(param_name, low, high)`, in the task's declared parameter order.
  """

  name: str
  ranges: tuple[tuple[str, float, float], ...]

  def __post_init__(self):
    for pname, lo, hi in self.ranges:
      if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"domain '{self.name}': parameter '{pname}' has a non-finite bound ({lo}, {hi})")
      if lo > hi:
        raise ValueError(f"domain '{self.name}': parameter '{pname}' has low {lo} > high {hi}")

  @classmethod
  def from_config(cls, name: str, cfg: Mapping, param_names: tuple[str, ...]) -> "Domain":
    """Builds a domain from a config mapping `param -> (low, high)` or `param -> value`.

    Args:
      name: domain label.
      cfg: mapping with exactly the keys in `param_names`.
      param_names: the task's parameter names, in order.

    Raises:
      ValueError: naming missing or unknown parameters.
    """
    keys = set(cfg.keys())
    missing = [p for p in param_names if p not in keys]
    unknown = sorted(keys - set(param_names))
    if missing or unknown:
      raise ValueError(f"domain '{name}': missing parameters {missing}, unknown parameters {unknown}; "
                       f"expected exactly {list(param_names)}")
    ranges = []
    for p in param_names:
      v = cfg[p]
      if isinstance(v, (int, float)):
        lo = hi = float(v)
      else:
        v = tuple(v)
        if len(v) != 2:
          raise ValueError(f"domain '{name}': parameter '{p}' must be a value or (low, high), got {v}")
        lo, hi = float(v[0]), float(v[1])
      ranges.append((p, lo, hi))
    return cls(name=name, ranges=tuple(ranges))

  @property
  def names(self) -> tuple[str, ...]:
    """Parameter names, in order."""
    return tuple(r[0] for r in self.ranges)

  @property
  def low(self) -> np.ndarray:
    """Lower bounds of the ranges, f32[K] in `names` order."""
    return np.array([r[1] for r in self.ranges], np.float32)

  @property
  def high(self) -> np.ndarray:
    """Upper bounds of the ranges, f32[K] in `names` order."""
    return np.array([r[2] for r in self.ranges], np.float32)

  def sample(self, key: jax.Array) -> Params:
    """Draws one episode's parameters, uniform in each range. Returns {name: f32[]}."""
    u = jax.random.uniform(key, (len(self.ranges),), dtype=jnp.float32)
    vals = jnp.asarray(self.low) + u * (jnp.asarray(self.high) - jnp.asarray(self.low))
    return {n: vals[i] for i, n in enumerate(self.names)}

  def nominal(self) -> Params:
    """Range midpoints, {name: f32[]}."""
    mid = 0.5 * (self.low + self.high)
    return {n: jnp.float32(mid[i]) for i, n in enumerate(self.names)}

  def normalize(self, params: Params, reference: "Domain | None" = None) -> jax.Array:
    """Params as a vector scaled to [-1, 1] over `reference`'s ranges (default: this domain). [K]."""
    ref = reference or self
    lo, hi = jnp.asarray(ref.low), jnp.asarray(ref.high)
    span = jnp.where(hi > lo, hi - lo, 1.0)
    vec = jnp.stack([params[n] for n in ref.names])
    return 2.0 * (vec - lo) / span - 1.0

  def contains(self, params: Params, atol: float = 1e-6) -> bool:
    """True when every parameter lies inside its range (host-side check)."""
    for n, lo, hi in self.ranges:
      v = float(params[n])
      if v < lo - atol or v > hi + atol:
        return False
    return True

  def check_holds(self, values: Mapping[str, float], world: str) -> None:
    """Raises ValueError unless every range is exactly `values[name]` (a named world's fixed parameters, e.g. the
    `real` domain of `env.world`), naming each differing parameter and the overrides to add."""
    bad = {n: (lo, hi) for n, lo, hi in self.ranges
           if not (abs(lo - values[n]) <= 1e-9 and abs(hi - values[n]) <= 1e-9)}
    if bad:
      raise ValueError(f"domain {self.name!r} does not hold env.world={world!r}'s fixed values: "
                       + ", ".join(f"{n} is {v} (world: {values[n]})" for n, v in bad.items())
                       + "; add " + " ".join(f"--config.domain.{self.name}.{n}={values[n]}" for n in bad))
