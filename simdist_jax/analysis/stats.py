"""Rank statistics shared by the evaluation and the analyses (no model or env imports, so both can use them)."""

from __future__ import annotations

import numpy as np


def rank(x: np.ndarray) -> np.ndarray:
  """Ranks 0..n-1 of `x` [n]; tied values share the mean of their ranks (so a constant input ranks nothing)."""
  x = np.asarray(x)
  order = np.argsort(x, kind="stable")
  r = np.empty(len(x))
  r[order] = np.arange(len(x))
  for v in np.unique(x):
    sel = x == v
    if sel.sum() > 1:
      r[sel] = r[sel].mean()
  return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation of two [n] arrays (tied values share their mean rank); NaN when either side has a
  single rank (n < 2 or constant): undefined, and callers average with `np.nanmean`."""
  ra, rb = rank(a), rank(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
  return float((ra * rb).sum() / den) if den > 0 else float("nan")
