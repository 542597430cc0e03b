"""Streaming per-feature mean/std (Welford within a batch, Chan et al. merge across batches).

`Moments` holds (count, mean, M2) in float64 for D features; `update(x[N, D])` folds a batch in, `merge` combines
two partial results exactly (order-independent up to float64 rounding), and `finalize(std_floor)` returns the
scaler entry `{"mean": float32[D], "std": float32[D]}` with the population std (ddof = 0, as `np.std`) floored at
`std_floor` (official 1e-4). Scalar keys (reward, value) use D = 1 and are finalized to 0-d arrays.

The scaler dict (`stats`) the world model consumes is `{key: {"mean", "std"}}` for keys proprio, extero, action,
command (shape [D]) and reward, value (0-d float32 arrays).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

SCALER_KEYS = ("proprio", "extero", "action", "command", "reward", "value")
SCALAR_KEYS = ("reward", "value")


@dataclasses.dataclass(frozen=True)
class Moments:
  """Sufficient statistics of D features: count n, mean [D], M2 = sum of squared deviations [D] (float64)."""

  count: int
  mean: np.ndarray
  m2: np.ndarray

  @classmethod
  def empty(cls, dim: int) -> "Moments":
    """Moments of zero samples of `dim` features."""
    return cls(0, np.zeros(dim, np.float64), np.zeros(dim, np.float64))

  @classmethod
  def of(cls, x: np.ndarray) -> "Moments":
    """Moments of a batch `x[N, D]` (two-pass within the batch, float64)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
      raise ValueError(f"Moments.of expects x[N, D], got shape {x.shape}")
    if x.shape[0] == 0:
      return cls.empty(x.shape[1])
    mean = x.mean(0)
    return cls(int(x.shape[0]), mean, ((x - mean) ** 2).sum(0))

  def merge(self, other: "Moments") -> "Moments":
    """Chan et al. parallel merge."""
    if self.mean.shape != other.mean.shape:
      raise ValueError(f"cannot merge moments of shapes {self.mean.shape} and {other.mean.shape}")
    if other.count == 0:
      return self
    if self.count == 0:
      return other
    n = self.count + other.count
    delta = other.mean - self.mean
    mean = self.mean + delta * (other.count / n)
    m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / n)
    return Moments(n, mean, m2)

  def update(self, x: np.ndarray) -> "Moments":
    """These moments with the batch `x[N, D]` folded in (a new object)."""
    return self.merge(Moments.of(x))

  def finalize(self, std_floor: float, scalar: bool = False) -> dict:
    """{"mean": float32, "std": float32} (population std, floored). Raises on an empty accumulator."""
    if self.count == 0:
      raise ValueError("cannot finalize scaler statistics over zero samples")
    mean = self.mean.astype(np.float32)
    std = np.maximum(np.sqrt(self.m2 / self.count), std_floor).astype(np.float32)
    if scalar:
      if mean.shape != (1,):
        raise ValueError(f"scalar key expects D = 1, got {mean.shape}")
      return {"mean": np.asarray(mean[0], np.float32), "std": np.asarray(std[0], np.float32)}
    return {"mean": mean, "std": std}

  def to_json(self) -> dict:
    """JSON-able form: {"count", "mean", "m2"} (lists)."""
    return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

  @classmethod
  def from_json(cls, d: Mapping) -> "Moments":
    """Moments from their `to_json` form."""
    return cls(int(d["count"]), np.asarray(d["mean"], np.float64), np.asarray(d["m2"], np.float64))


def finalize_stats(moments: Mapping[str, Moments], std_floor: float) -> dict:
  """{key: Moments} -> scaler dict (see module docstring)."""
  return {k: m.finalize(std_floor, scalar=k in SCALAR_KEYS) for k, m in moments.items()}


def stats_to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
  """JSON-able form of a scaler dict: {key: {"mean", "std"}} as (nested) lists or floats."""
  return {k: {"mean": np.asarray(v["mean"]).tolist(), "std": np.asarray(v["std"]).tolist()} for k, v in stats.items()}


def stats_from_json(d: Mapping) -> dict:
  """Scaler dict from its `stats_to_json` form (float32 arrays)."""
  return {k: {"mean": np.asarray(v["mean"], np.float32), "std": np.asarray(v["std"], np.float32)}
          for k, v in d.items()}


def compute_stats(arrays: Mapping[str, np.ndarray], std_floor: float, keys=SCALER_KEYS) -> dict:
  """Scaler dict straight from flat arrays `{key: [N, D] or [N]}` (non-streaming convenience)."""
  out = {}
  for k in keys:
    x = np.asarray(arrays[k])
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[:, None]
    out[k] = Moments.of(x).finalize(std_floor, scalar=k in SCALAR_KEYS)
  return out
