"""Real-world episode recording and aggregation.

Only what hardware has is recorded: what the robot sees (proprio `[N, P]`, extero `[N, E]`), the applied
actions `[N, A]`, the commands `[N, C]` and timestamps `[N]` (seconds since episode start). No reward, value or
privileged state. One file per episode, `episode_<index:06d>.npz`, written atomically (`fileio.save_npz`: unique
temp name + fsync + rename), so a crash never leaves a half-written episode under its final name. Each file's
`meta` records the episode's `seed`.

`load_episodes(directory, dims)` reads them back in index order, reporting truncated/corrupt files and files
with the wrong shapes by name and skipping them (never merged silently). `missing_seeds(directory, seeds, dims)`
moves such files (and second copies of a seed) to `<directory>/quarantine/` and returns exactly the seeds that
have no good episode, so a refill re-records those and nothing else. `aggregate(...)` turns episodes into
the window dataset the world model trains on, with H-step front padding (H copies of the first observation,
zero action and command), see `simdist_jax.data.windows.from_episodes`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Callable, Iterable

import numpy as np

from simdist_jax import fileio

FIELDS = ("proprio", "extero", "action", "command", "time_s")
QUARANTINE = "quarantine"


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
    fileio.remove_stale_temps(self.dir)  # temp files of killed recorders
    self.dims = dict(dims)
    self._buf: dict[str, list] | None = None
    self._meta: dict = {}

  def next_index(self) -> int:
    """Index of the next episode file: one past the highest existing `episode_*.npz` index, or 0."""
    idx = [int(p.stem.split("_")[1]) for p in self.dir.glob("episode_*.npz")]
    return max(idx) + 1 if idx else 0

  def start_episode(self, **meta) -> None:
    """Starts a new episode buffer; `meta` (e.g. `seed=`) is stored in the episode file's `meta` record."""
    self._buf = {f: [] for f in FIELDS}
    self._meta = dict(meta)

  def record(self, proprio, extero, action, command, time_s: float) -> None:
    """Appends step t: o_t (what the robot saw when it chose a_t), a_t, c_t and the timestamp."""
    if self._buf is None:
      raise RuntimeError("record() before start_episode()")
    for f, v in (("proprio", proprio), ("extero", extero), ("action", action), ("command", command)):
      self._buf[f].append(np.asarray(v, np.float32).reshape(-1))
    self._buf["time_s"].append(np.float64(time_s))

  def annotate(self, **meta) -> None:
    """Adds entries to the current episode's `meta` (e.g. its outcome, known only at the end)."""
    if self._buf is None:
      raise RuntimeError("annotate() outside an episode")
    self._meta.update(meta)

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
    fileio.save_npz(path, {**ep, "meta": np.asarray(json.dumps(self._meta))})
    self._buf = None
    return path


def load_episodes(directory: str | os.PathLike, dims: dict,
                  verbose: bool = True) -> tuple[list[dict], list[Skipped]]:
  """Loads every `episode_*.npz` in index order. Returns (episodes, skipped files with reasons)."""
  episodes, skipped = [], []
  for path in sorted(pathlib.Path(directory).glob("episode_*.npz")):
    try:
      ep = fileio.load_npz(path)
    except (fileio.CorruptFileError, OSError) as e:
      skipped.append(Skipped(str(path), f"unreadable (truncated or corrupt): {getattr(e, 'reason', e)}"))
      continue
    reason = _check_episode(ep, dims)
    if reason:
      skipped.append(Skipped(str(path), reason))
      continue
    try:
      ep["meta"] = json.loads(str(ep["meta"])) if "meta" in ep else {}
    except json.JSONDecodeError as e:
      skipped.append(Skipped(str(path), f"its 'meta' record is not valid JSON ({e})"))
      continue
    ep["path"] = str(path)
    episodes.append(ep)
  if verbose:
    for s in skipped:
      print(f"[recorder] skipped {s.path}: {s.reason}", flush=True)
  return episodes, skipped


def quarantine(path: str | os.PathLike, reason: str, log: Callable[[str], None] | None = print) -> pathlib.Path:
  """Moves episode file `path` to `<its directory>/quarantine/` (never overwriting). Returns the new path."""
  path = pathlib.Path(path)
  qdir = path.parent / QUARANTINE
  qdir.mkdir(exist_ok=True)
  dest, n = qdir / path.name, 1
  while dest.exists():
    dest, n = qdir / f"{path.stem}.{n}{path.suffix}", n + 1
  os.replace(path, dest)
  if log is not None:
    log(f"[recorder] moved {path} to {dest}: {reason}")
  return dest


def missing_seeds(directory: str | os.PathLike, seeds: Iterable[int], dims: dict,
                  log: Callable[[str], None] | None = print) -> list[int]:
  """The seeds of `seeds` without a good episode in `directory` (in `seeds` order), after cleaning it up.

  Unreadable or malformed episode files are moved to `<directory>/quarantine/`, and so are later copies of a seed
  that already has a good episode (the lowest index is kept), so re-recording the returned seeds leaves exactly
  one good episode per seed. A seed is read from each episode's `meta["seed"]`; episodes without one are kept
  and match no seed.
  """
  directory = pathlib.Path(directory)
  episodes, skipped = load_episodes(directory, dims, verbose=False)
  for s in skipped:
    quarantine(s.path, s.reason, log)
  have: set[int] = set()
  for ep in episodes:
    seed = ep["meta"].get("seed")
    if seed is None:
      continue
    if int(seed) in have:
      quarantine(ep["path"], f"second episode of seed {int(seed)}", log)
      continue
    have.add(int(seed))
  return [int(s) for s in seeds if int(s) not in have]


def aggregate(episodes: list[dict], H: int, T: int, stats: dict, eval_fraction: float, key, **kwargs):
  """Real episodes -> window dataset (front-padded with H copies of o_0, zero action/command)."""
  from simdist_jax.data.windows import from_episodes  # pylint: disable=import-outside-toplevel
  eps = [{f: ep[f] for f in ("proprio", "extero", "action", "command")} for ep in episodes]
  return from_episodes(eps, H=H, T=T, stats=stats, eval_fraction=eval_fraction, key=key, front_pad=True,
                       **kwargs)


def total_minutes(episodes: list[dict], ctrl_dt: float) -> float:
  """Minutes of real data (steps x control period)."""
  return sum(len(ep["proprio"]) for ep in episodes) * ctrl_dt / 60.0
