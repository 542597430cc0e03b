"""Streaming windows (`data.loading = "stream"`): the window sampler of `windows.load_dataset` over memory-mapped
shards, with host and device memory bounded by a chunk of batches and a budget of mapped pages instead of the
dataset.

`StreamWindowDataset(data_dir, H, T, ...)` has the interface of `windows.WindowDataset` (`sample`, `sample_eval`,
`gather`, `draw_starts`, `firsts_of`, `summary`, `stats`, `dims`, counts) and draws **the same windows** for the
same key and seed: the episodes, valid starts, train/held-out split and front padding come from the same
`windows.plan_windows`, the window index is drawn with the same `jax.random.randint(key, (B,), 0, W)`, and the
gather applies the same padding and float32 cast, so a batch equals the in-memory one bitwise. What differs is
where the data lives:

- Loading reads no array whole. `storage.MappedShards` checks every shard file (size, sha256 when `verify`, the
  `.npy` header's dtype and shape) and maps it read-only. Episode boundaries are found shard by shard from
  `episode_id` (one [S, N] block at a time); non-finite values are scanned (in blocks of <= 32 MiB) only for the
  keys the manifest's `nonfinite` record lists (all of them when the manifest has no record). The window index is
  kept per episode (first start, count; train and held-out tables), O(episodes) instead of O(windows).
- A batch is gathered on the host: the drawn window starts become (step, env) rows of the time-major shards, read
  from the mappings shard by shard (`MappedShards.gather`); once the process's resident mapped pages have grown by
  `RESIDENT_BYTES` (256 MiB; measured, since the kernel maps ~64 KiB around each touched row) they are dropped
  from the process (`madvise(MADV_DONTNEED)`; the page cache keeps them), so the resident set holds at most about
  that much of the dataset, not every page a long run has touched.
- Batches are numpy arrays on the host. The world-model trainer has no in-scan sampler for this dataset (no
  `sampler()`), so it draws K batches per chunk on the host (`train.draw_batches`, <= 256 MiB per chunk) and
  places them on the device(s) once per chunk: the device holds that chunk, never the dataset.

Costs: loading reads every byte once for the checksums (`verify=True`); sampling costs a host gather per batch,
5-10x slower than the in-memory sampler on the CPU (`benchmarks/data_memory.py`, docs/data.md "Loading").
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Sequence

import jax
import numpy as np

from simdist_jax.data import scaler as scaler_lib
from simdist_jax.data import storage
from simdist_jax.data import windows

_KEYS = ("proprio", "extero", "action", "command", "reward", "value", "expert_flag", "episode_id")
# Mapped shard data this process keeps resident at most (`storage.MappedShards(resident_bytes=...)`): past it,
# the pages read so far are dropped from the resident set (the page cache keeps them).
RESIDENT_BYTES = 256 << 20
_SCAN_BYTES = 32 << 20  # bytes of one block of the non-finite scan


@functools.partial(jax.jit, static_argnums=(1,))
def _draw(key: jax.Array, batch_size: int, num_windows: jax.Array) -> jax.Array:
  """The window indices `windows._sample` draws, `randint(key, (B,), 0, W)` (W traced: one compile per B)."""
  return jax.random.randint(key, (batch_size,), 0, num_windows)


def _segments(shards: storage.MappedShards) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(offsets, lengths, ids) of the episodes in the env-major flat order of `windows.load_dataset` (flat index
  j * S + s for env j, step s), found one `episode_id` shard block at a time: a new episode starts wherever the
  id differs from the previous flat index's."""
  S, N = shards.num_steps, shards.num_envs
  cuts, cut_ids = [], []
  first_row = prev = None
  for k in range(len(shards.steps) - 1):
    blk = shards.block("episode_id", k)
    base = int(shards.steps[k])
    if prev is None:
      first_row = blk[0].copy()
    else:
      j = np.flatnonzero(blk[0] != prev)
      cuts.append(j * S + base)
      cut_ids.append(blk[0, j])
    r, j = np.nonzero(blk[1:] != blk[:-1])
    cuts.append(j.astype(np.int64) * S + base + r + 1)
    cut_ids.append(blk[r + 1, j])
    prev = blk[-1].copy()
  j = np.flatnonzero(first_row[1:] != prev[:-1]) + 1  # env j's first step vs env j-1's last
  cuts.append(j.astype(np.int64) * S)
  cut_ids.append(first_row[j])
  cuts, cut_ids = np.concatenate(cuts).astype(np.int64), np.concatenate(cut_ids)
  order = np.argsort(cuts, kind="stable")
  offsets = np.concatenate([[0], cuts[order]]).astype(np.int64)
  ids = np.concatenate([first_row[:1], cut_ids[order]])
  lengths = np.diff(np.concatenate([offsets, [N * S]])).astype(np.int64)
  return offsets, lengths, ids


def _scan_nonfinite(shards: storage.MappedShards, keys: Sequence[str]
                    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """`windows.bad_rows` of each key in the flat env-major order, from blocks of the shards (rows ascending)."""
  S = shards.num_steps
  out = {}
  for key in keys:
    row_bytes = shards.num_envs * max(1, int(np.prod(shards.feature_shape(key)))) * shards.dtype(key).itemsize
    step = max(1, _SCAN_BYTES // row_bytes)
    rows, feats, vals = [], [], []
    for k in range(len(shards.steps) - 1):
      base, n = int(shards.steps[k]), int(shards.steps[k + 1] - shards.steps[k])
      for lo in range(0, n, step):
        x = shards.block(key, k, lo, min(n, lo + step))
        r, f, v = windows.bad_rows(x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]))
        s, j = r // x.shape[1], r % x.shape[1]
        rows.append(j * S + base + lo + s)
        feats.append(f)
        vals.append(v)
    rows, feats, vals = np.concatenate(rows), np.concatenate(feats), np.concatenate(vals)
    order = np.argsort(rows, kind="stable")
    out[key] = (rows[order], feats[order], vals[order])
  return out


class _Split:
  """The windows of one split as a per-episode table: window i lies in the episode e with
  cum[e] <= i < cum[e + 1], at flat start first[e] + i - cum[e]."""

  def __init__(self, plan: windows.WindowPlan, offsets: np.ndarray, eval: bool) -> None:  # noqa: A002
    sel = np.flatnonzero((plan.counts > 0) & (plan.is_eval == bool(eval)))
    self.cum = np.concatenate([[0], np.cumsum(plan.counts[sel])]).astype(np.int64)
    self.first = plan.first[sel].astype(np.int64)
    self.offset = offsets[sel].astype(np.int64)
    self.num_windows = int(self.cum[-1])

  def starts(self, key: jax.Array, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat starts [B], their episodes' first steps [B]) of the windows drawn with `key`."""
    idx = np.asarray(_draw(key, int(batch_size), np.int32(self.num_windows)), np.int64)
    e = np.searchsorted(self.cum, idx, side="right") - 1
    return self.first[e] + idx - self.cum[e], self.offset[e]


class StreamWindowDataset:
  """`windows.WindowDataset` over memory-mapped shards (module docstring): the same windows for the same key,
  gathered on the host per batch. Batches are numpy float32 arrays [B, L, ...].

  Attributes: H, T, L, stats, dims, source, front_pad, train_episodes / eval_episodes, num_train_windows /
  num_eval_windows, dropped_short, rejected, num_episodes, loading ("stream").
  """

  loading = "stream"

  def __init__(self, data_dir: str | os.PathLike, H: int, T: int, start_margin: int = 5, end_margin: int = 5,
               eval_fraction: float = 0.1, seed: int = 0, verify: bool = True, front_pad: bool = False) -> None:
    """Arguments as `windows.load_dataset`. Raises storage.DatasetError naming a missing, truncated or corrupt
    shard file (or manifest) before anything is sampled."""
    if H < 0 or T < 1:
      raise ValueError(f"need H >= 0 and T >= 1, got H={H}, T={T}")
    self.H, self.T, self.L = int(H), int(T), int(H) + int(T) + 1
    self.front_pad = self.H if front_pad else 0
    self.source = str(pathlib.Path(data_dir))
    man = storage.read_manifest(data_dir)
    self._shards = storage.MappedShards(data_dir, man, _KEYS, verify=verify, resident_bytes=RESIDENT_BYTES)
    d = man["dims"]
    self.dims = {"proprio": int(d["proprio"]), "extero": int(d["extero"]),
                 "extero_shape": tuple(d["extero_shape"]), "action": int(d["action"]),
                 "command": int(d["command"])}
    self.stats = scaler_lib.stats_from_json(man["scaler"])
    offsets, lengths, ids = _segments(self._shards)
    recorded = man.get("nonfinite")
    scan = [k for k in windows.NONFINITE_KEYS if recorded is None or k in recorded]
    self.rejected = windows.reject_nonfinite(_scan_nonfinite(self._shards, scan), offsets, ids, "reject")
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x5B117)  # the split key of `windows.load_dataset`
    plan = windows.plan_windows(offsets, lengths, ids, self.rejected, self.L, start_margin, end_margin,
                                self.front_pad, eval_fraction, key, self.source, self.H, self.T)
    self.train_episodes, self.eval_episodes, self.dropped_short = (plan.train_episodes, plan.eval_episodes,
                                                                   plan.dropped_short)
    self._offsets = offsets
    self.num_episodes = int(offsets.size)
    self._train, self._eval = _Split(plan, offsets, False), _Split(plan, offsets, True)
    self.num_train_windows, self.num_eval_windows = self._train.num_windows, self._eval.num_windows

  def draw_starts(self, key: jax.Array, batch_size: int, eval: bool = False) -> np.ndarray:  # noqa: A002
    """The flat start indices `sample(key, B)` (or `sample_eval`) uses."""
    return (self._eval if eval else self._train).starts(key, batch_size)[0]

  def firsts_of(self, starts: Sequence[int] | np.ndarray) -> np.ndarray:
    """The flat index of the first step of each start's episode (its step s + front_pad lies inside it)."""
    starts = np.asarray(starts, np.int64)
    return self._offsets[np.searchsorted(self._offsets, starts + self.front_pad, side="right") - 1]

  def _gather(self, starts: np.ndarray, firsts: np.ndarray) -> dict:
    """`windows.gather_windows` on the host, reading the rows from the mapped shards."""
    B, L = starts.shape[0], self.L
    idx = starts[:, None] + np.arange(L)
    inside = idx >= firsts[:, None]
    src = np.maximum(idx, firsts[:, None]).reshape(-1)
    env, step = np.divmod(src, self._shards.num_steps)
    rows = self._shards.gather([k for k in windows.BATCH_KEYS if k != "mask"], step, env)
    out = {}
    for k in windows.BATCH_KEYS:
      if k == "mask":
        out[k] = inside.astype(np.float32)
        continue
      x = rows.pop(k).astype(np.float32)
      x = x.reshape((B, L) + x.shape[1:])
      if k not in windows.REPEAT_KEYS:
        x = np.where(inside.reshape((B, L) + (1,) * (x.ndim - 2)), x, np.float32(0.0))
      out[k] = x
    return out

  def gather(self, starts: Sequence[int] | np.ndarray) -> dict:
    """Windows at explicit flat start indices -> batch dict [B, L, ...] float32 (front-padded as in `sample`)."""
    starts = np.asarray(starts, np.int64)
    return self._gather(starts, self.firsts_of(starts))

  def sample(self, key: jax.Array, batch_size: int) -> dict:
    """B uniformly drawn training windows (host numpy arrays; the windows `WindowDataset.sample` draws)."""
    return self._gather(*self._train.starts(key, batch_size))

  def sample_eval(self, key: jax.Array, batch_size: int) -> dict:
    """B uniformly drawn windows from held-out episodes."""
    if self.num_eval_windows == 0:
      raise ValueError(f"{self.source} has no held-out episodes (eval_fraction 0 or a single episode)")
    return self._gather(*self._eval.starts(key, batch_size))

  def summary(self) -> dict:
    """Counts of the dataset: source, H, T, train/held-out episodes and windows, dropped and rejected episodes."""
    return {"source": self.source, "H": self.H, "T": self.T, "train_episodes": int(self.train_episodes.size),
            "eval_episodes": int(self.eval_episodes.size), "train_windows": self.num_train_windows,
            "eval_windows": self.num_eval_windows, "dropped_short": self.dropped_short,
            "rejected_nonfinite": len(self.rejected)}

  def close(self) -> None:
    """Unmaps the shard files (they are mapped again on the next read)."""
    self._shards.close()
