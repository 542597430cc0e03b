"""Flat slash-named scalar metrics (`stage/group/name`) to `metrics.jsonl` and TensorBoard event files."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np


class MetricsWriter:
  """Appends `{"step": s, name: value, ...}` lines to `<directory>/metrics.jsonl` and TensorBoard scalars to
  `<directory>/<tb_subdir>` (the directory itself when `tb_subdir` is empty). Non-scalar and non-finite values
  are left out of both."""

  def __init__(self, directory: str | os.PathLike, tb_subdir: str = "") -> None:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    os.makedirs(directory, exist_ok=True)
    self._jsonl = open(os.path.join(directory, "metrics.jsonl"), "a", encoding="utf-8")
    self._tb = SummaryWriter(logdir=os.path.join(directory, tb_subdir) if tb_subdir else str(directory))

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Writes one record at `step`."""
    clean = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0 and np.isfinite(v)}
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()
    for k, v in clean.items():
      self._tb.add_scalar(k, v, int(step))
    self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tb.close()


def format_duration(s: float) -> str:
  """Seconds as `12m03s` or `1h02m03s`."""
  s = int(max(s, 0))
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
