"""Real-world episode recording and aggregation.

Only what hardware has is recorded: what the robot sees (proprio `[N, P]`, extero `[N, E]`), the applied
actions `[N, A]`, the commands `[N, C]` and timestamps `[N]` (seconds since episode start). No reward, value or
privileged state. One file per episode, `episode_<index:06d>.npz`, written atomically (temp file + rename), so
a crash never leaves a half-written episode under its final name.

`load_episodes(directory, dims)` reads them back in index order, reporting truncated/corrupt files and files
with the wrong shapes by name and skipping them (never merged silently). `aggregate(...)` turns episodes into
the window dataset the world model trains on, with H-step front padding (H copies of the first observation,
zero action and command), see `simdist_jax.data.windows.from_episodes`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
import zipfile

import numpy as np

FIELDS = ("proprio", "extero", "action", "command", "time_s")


@dataclasses.dataclass
class Skipped:
  """A file that was not merged, and why."""
  path: str
  reason: str


def _check_episode(ep: dict, dims: dict) -> str | None:
  """None when `ep` is well-formed for `dims`, else the reason."""
  missing = [f for f in FIELDS if f not in ep]
  if missing:
    return f"missing arrays {missing}"
  n = ep["proprio"].shape[0] if ep["proprio"].ndim == 2 else -1
  if n < 1:
    return f"proprio must be [N, {dims['proprio']}] with N >= 1, got {ep['proprio'].shape}"
  want = {"proprio": (n, dims["proprio"]), "extero": (n, dims["extero"]), "action": (n, dims["action"]),
          "command": (n, dims["command"]), "time_s": (n,)}
  for f, shape in want.items():
    if tuple(ep[f].shape) != shape:
      return f"'{f}' has shape {tuple(ep[f].shape)}, expected {shape}"
  for f in FIELDS:
    bad = ~np.isfinite(ep[f])
    if bad.any():
      return f"'{f}' has {int(bad.sum())} non-finite values (first at index {np.argwhere(bad)[0].tolist()})"
  return None


class EpisodeRecorder:
  """Accumulates one episode at a time and writes it atomically on `end_episode`."""

  def __init__(self, directory: str | os.PathLike, dims: dict):
    self.dir = pathlib.Path(directory)
    self.dir.mkdir(parents=True, exist_ok=True)
    self.dims = dict(dims)
    self._buf: dict[str, list] | None = None
    self._meta: dict = {}

  def next_index(self) -> int:
    idx = [int(p.stem.split("_")[1]) for p in self.dir.glob("episode_*.npz")]
    return max(idx) + 1 if idx else 0

  def start_episode(self, **meta) -> None:
    self._buf = {f: [] for f in FIELDS}
    self._meta = dict(meta)

  def record(self, proprio, extero, action, command, time_s: float) -> None:
    """Appends step t: o_t (what the robot saw when it chose a_t), a_t, c_t and the timestamp."""
    if self._buf is None:
      raise RuntimeError("record() before start_episode()")
    for f, v in (("proprio", proprio), ("extero", extero), ("action", action), ("command", command)):
      self._buf[f].append(np.asarray(v, np.float32).reshape(-1))
    self._buf["time_s"].append(np.float64(time_s))

  def end_episode(self) -> pathlib.Path:
    """Validates and writes the episode; returns its path."""
    if self._buf is None or not self._buf["proprio"]:
      raise RuntimeError("end_episode() with no recorded steps")
    ep = {f: np.stack(v) if f != "time_s" else np.asarray(v) for f, v in self._buf.items()}
    for f in ("extero", "command"):
      ep[f] = ep[f].reshape(len(ep["proprio"]), self.dims[f])
    reason = _check_episode(ep, self.dims)
    if reason:
      raise ValueError(f"refusing to write a malformed episode: {reason}")
    path = self.dir / f"episode_{self.next_index():06d}.npz"
    fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp_", suffix=".npz")
    os.close(fd)
    try:
      np.savez(tmp, **ep, meta=np.asarray(json.dumps(self._meta)))
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
    self._buf = None
    return path


def load_episodes(directory: str | os.PathLike, dims: dict,
                  verbose: bool = True) -> tuple[list[dict], list[Skipped]]:
  """Loads every `episode_*.npz` in index order. Returns (episodes, skipped files with reasons)."""
  episodes, skipped = [], []
  for path in sorted(pathlib.Path(directory).glob("episode_*.npz")):
    try:
      with np.load(path, allow_pickle=False) as z:
        ep = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
      skipped.append(Skipped(str(path), f"unreadable (truncated or corrupt): {type(e).__name__}: {e}"))
      continue
    reason = _check_episode(ep, dims)
    if reason:
      skipped.append(Skipped(str(path), reason))
      continue
    ep["meta"] = json.loads(str(ep["meta"])) if "meta" in ep else {}
    ep["path"] = str(path)
    episodes.append(ep)
  if verbose:
    for s in skipped:
      print(f"[recorder] skipped {s.path}: {s.reason}", flush=True)
  return episodes, skipped


def aggregate(episodes: list[dict], H: int, T: int, stats: dict, eval_fraction: float, key, **kwargs):
  """Real episodes -> window dataset (front-padded with H copies of o_0, zero action/command)."""
  from simdist_jax.data.windows import from_episodes  # pylint: disable=import-outside-toplevel
  eps = [{f: ep[f] for f in ("proprio", "extero", "action", "command")} for ep in episodes]
  return from_episodes(eps, H=H, T=T, stats=stats, eval_fraction=eval_fraction, key=key, front_pad=True,
                       **kwargs)


def total_minutes(episodes: list[dict], ctrl_dt: float) -> float:
  """Minutes of real data (steps x control period)."""
  return sum(len(ep["proprio"]) for ep in episodes) * ctrl_dt / 60.0
