"""Flat slash-named scalar metrics (`stage/group/name`) to `metrics.jsonl` and TensorBoard event files."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from simdist_jax import fileio


class MetricsWriter:
  """Appends `{"step": s, name: value, ...}` lines to `<directory>/metrics.jsonl` and TensorBoard scalars to
  `<directory>/<tb_subdir>` (the directory itself when `tb_subdir` is empty). Non-scalar and non-finite values
  are left out of both.

  Resuming never repeats a step. Opening an existing file drops a partial or unparsable line (a kill mid-write)
  and, when `resume_step` is given, every line with a step after it (work the interrupted run did past the state
  this run continues from; TensorBoard hides those too, via `purge_step`). Independently, the first time this
  writer writes a step s, the lines of earlier runs with step >= s are dropped (a step is rewritten, so only the
  newest run's records of it remain); lines this writer wrote are never dropped.

  Args:
    directory: where `metrics.jsonl` lives (created).
    tb_subdir: TensorBoard subdirectory ("" = `directory`).
    resume_step: the step of the state this run continues from (-1 for a fresh start over an old file), or None
      to keep every complete line of an existing file.
  """

  def __init__(self, directory: str | os.PathLike, tb_subdir: str = "", resume_step: int | None = None) -> None:
    os.makedirs(directory, exist_ok=True)
    self.path = pathlib.Path(directory) / "metrics.jsonl"
    self._tb_dir = os.path.join(directory, tb_subdir) if tb_subdir else str(directory)
    self._old_steps: list[int] = []  # steps of the lines of earlier runs, in file order (they come first)
    if self.path.exists():
      self._old_steps = self._clean_existing(resume_step)
    self._jsonl = open(self.path, "a", encoding="utf-8")
    self._tb = None
    if resume_step is not None or not self._old_steps:
      self._open_tb(None if resume_step is None or not self._old_steps else int(resume_step) + 1)

  def _open_tb(self, purge_step: int | None) -> None:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    self._tb = SummaryWriter(logdir=self._tb_dir, purge_step=purge_step)

  def _clean_existing(self, resume_step: int | None) -> list[int]:
    """Rewrites the existing file without partial lines and (given `resume_step`) later steps. Returns steps."""
    raw = self.path.read_text(encoding="utf-8", errors="replace")
    lines = raw.splitlines()
    keep, steps, dropped_bad = [], [], []
    for n, line in enumerate(lines, 1):
      try:
        rec = json.loads(line)
        step = int(rec["step"])
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        if line.strip():
          dropped_bad.append(n)
        continue
      if resume_step is not None and step > int(resume_step):
        continue
      keep.append(line)
      steps.append(step)
    if dropped_bad:
      print(f"[metrics] WARNING dropped {len(dropped_bad)} partial/unparsable line(s) of '{self.path}' (line "
            f"{dropped_bad[:5]})", flush=True)
    text = "".join(l + "\n" for l in keep)
    if text != raw:
      fileio.write_text(self.path, text)
    return steps

  def _supersede(self, step: int) -> None:
    """Drops the earlier runs' lines with step >= `step` (this writer is rewriting that step)."""
    if not self._old_steps or max(self._old_steps) < step:
      return
    self._jsonl.close()
    lines = self.path.read_text(encoding="utf-8").splitlines()
    n_old = len(self._old_steps)
    old = [(s, l) for s, l in zip(self._old_steps, lines[:n_old], strict=False) if s < step]
    fileio.write_text(self.path, "".join(l + "\n" for _, l in old) + "".join(l + "\n" for l in lines[n_old:]))
    self._old_steps = [s for s, _ in old]
    self._jsonl = open(self.path, "a", encoding="utf-8")

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Writes one record at `step`."""
    step = int(step)
    self._supersede(step)
    if self._tb is None:  # an old file without a resume step: hide its TensorBoard events from this step on
      self._open_tb(step)
    clean = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0 and np.isfinite(v)}
    self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
    self._jsonl.flush()
    for k, v in clean.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def close(self) -> None:
    """Closes the JSONL file and the TensorBoard writer (opening one first if none was opened yet)."""
    self._jsonl.close()
    if self._tb is None:
      self._open_tb(None)
    self._tb.close()


def format_duration(s: float) -> str:
  """Seconds as `12m03s` or `1h02m03s`."""
  s = int(max(s, 0))
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class NullWriter:
  """A `MetricsWriter` that writes nothing (the processes other than 0 of a multi-host run)."""

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Drops the metrics."""
    del step, metrics

  def close(self) -> None:
    """Nothing to close."""
