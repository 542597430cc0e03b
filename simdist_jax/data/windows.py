"""Window datasets for the world model: valid starts, train/eval split by episode, jitted device sampler.

Dimension letters: B batch, L = H + T + 1 window length, M total stored steps, P/E/A/C feature dims.

A window covers steps s..s+H+T of ONE episode; the current step is t = s + H. Batches (all float32, [B, L, ...]):
  {"proprio" [B,L,P], "extero" [B,L,E], "action" [B,L,A], "command" [B,L,C], "reward" [B,L], "value" [B,L],
   "expert_flag" [B,L], "mask" [B,L]}
with the per-step alignment of generate.py (value[k] = V^e(s_k)). `mask` is 1 on recorded steps and 0 on front
padding (real data); the valid-start rules below guarantee that no padded step is ever a target
(index >= H of a window), so `mask[:, H:]` is all ones.

Valid-start rules (episode occupying flat indices [o, o + n)):
- Sim data (`load_dataset`), front_pad = 0 (the official rule, `paper`): s in [o + start_margin, o + n - end_margin
  - L], i.e. the window starts at least `start_margin` steps after the episode's first step and ends at least
  `end_margin` steps before its last step (official beg_pad = end_pad = 5). The earliest current step is then
  o + H + start_margin: episode starts are never a current step. Episodes with n < L + start_margin + end_margin
  have no window and are dropped (the official threshold H+T+10 also yields zero windows at exactly that length).
  Starts never cross episodes, so episodes that continue across shards are whole here (episode ids are global).
- Sim data with front_pad = H (`data.front_pad`, `small`/`full`): windows may start up to H steps before the
  episode, s in [o - H + start_margin, o + n - end_margin - L], and the steps before o are padded at gather time
  exactly as deployment pads its history (copies of o_0's proprio/extero, zero action/command/reward/value/flag,
  mask 0; no copy of the data is made). The current step t = s + H then ranges over [o + start_margin,
  o + n - end_margin - T - 1]: with start_margin 0 the episode's first step (the state the controller starts
  from) is a current step, and the margins only bound the current step and targets.
- Real data (`from_episodes`, front_pad=True): each episode of N recorded steps gets H copies of its first
  observation in front (zero action, command, reward, value, flag; mask 0), so the padded episode has n = N + H and
  the rule above with margins 0 gives s in [o, o + N - T - 1]: every current step t = s + H is a recorded step
  (t >= o + H), history may reach into the padding, and all targets t+1..t+T are recorded. Needs N >= T + 1.
  With front_pad=False the sim rule applies as is (needs N >= L + margins).
Episodes holding NaN/inf are rejected (sim: dropped, counted and listed with their location in
`dataset.rejected`; real: ValueError naming episode, step, key and feature). Nothing is zero-filled.
Train/eval split: a seeded permutation of the episodes that have windows; `eval_fraction` of them (at least one when
> 0 and there are >= 2) are held out, so no episode contributes to both.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.data import scaler as scaler_lib
from simdist_jax.data import storage

BATCH_KEYS = ("proprio", "extero", "action", "command", "reward", "value", "expert_flag", "mask")
_FEATURE_KEYS = ("proprio", "extero", "action", "command")


def episode_segments(episode_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(offsets, lengths) of the maximal runs of equal ids in a flat [M] episode-id array."""
  episode_id = np.asarray(episode_id)
  if episode_id.ndim != 1 or episode_id.size == 0:
    raise ValueError(f"episode_id must be a non-empty [M] array, got shape {episode_id.shape}")
  cuts = np.flatnonzero(episode_id[1:] != episode_id[:-1]) + 1
  offsets = np.concatenate([[0], cuts]).astype(np.int64)
  lengths = np.diff(np.concatenate([offsets, [episode_id.size]])).astype(np.int64)
  return offsets, lengths


def window_counts(offsets: np.ndarray, lengths: np.ndarray, window: int, start_margin: int, end_margin: int,
                  front_pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(valid starts per episode [E], first valid start of each episode [E]): the starts of episode e are
  first[e] .. first[e] + counts[e] - 1 (see `valid_starts`)."""
  offsets, lengths = np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)
  if front_pad < 0 or start_margin < 0 or end_margin < 0:
    raise ValueError(f"front_pad ({front_pad}), start_margin ({start_margin}) and end_margin ({end_margin}) "
                     "must be >= 0")
  counts = np.maximum(lengths + front_pad - end_margin - window - start_margin + 1, 0)
  return counts, offsets - front_pad + start_margin


def valid_starts(offsets: np.ndarray, lengths: np.ndarray, window: int, start_margin: int, end_margin: int,
                 front_pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(starts [W], episode index of each start [W]) with s in [o - front_pad + start_margin, o + n - end_margin -
  window]; starts below o (front_pad > 0) are padded at gather time (see the module docstring)."""
  counts, first = window_counts(offsets, lengths, window, start_margin, end_margin, front_pad)
  ep = np.repeat(np.arange(counts.size), counts)
  base = np.repeat(first - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
  return base + np.arange(int(counts.sum()), dtype=np.int64), ep


def _split(num: int, eval_fraction: float, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
  if not 0.0 <= eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
  perm = np.asarray(jax.random.permutation(key, num))
  n_eval = int(round(eval_fraction * num))
  if eval_fraction > 0 and num >= 2:
    n_eval = min(max(n_eval, 1), num - 1)
  return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


@dataclasses.dataclass(frozen=True)
class WindowPlan:
  """Which windows a dataset has, per episode (both loading modes build their sampler from it).

  Attributes: counts [E] (valid starts of each episode, 0 for rejected and short ones), first [E] (flat index of
  each episode's first valid start), is_eval [E] (held-out episodes), train_episodes / eval_episodes (ids),
  dropped_short (episodes without a window that were not rejected).
  """

  counts: np.ndarray
  first: np.ndarray
  is_eval: np.ndarray
  train_episodes: np.ndarray
  eval_episodes: np.ndarray
  dropped_short: int

  def starts(self, eval: bool) -> tuple[np.ndarray, np.ndarray]:  # noqa: A002
    """(flat starts [W], episode index of each [W]) of the training (or held-out) windows, in flat order."""
    keep = np.where(self.is_eval == bool(eval), self.counts, 0)
    ep = np.repeat(np.arange(keep.size), keep)
    base = np.repeat(self.first - np.concatenate([[0], np.cumsum(keep)[:-1]]), keep)
    return base + np.arange(int(keep.sum()), dtype=np.int64), ep


def plan_windows(offsets: np.ndarray, lengths: np.ndarray, ids: np.ndarray, rejected: Sequence[Mapping], L: int,
                 start_margin: int, end_margin: int, front_pad: int, eval_fraction: float, key: jax.Array,
                 source: str, H: int, T: int) -> WindowPlan:
  """The `WindowPlan` of episodes [offsets, offsets + lengths) with ids `ids`, without the `rejected` ones
  (`reject_nonfinite`): valid starts per episode, then the seeded split of the episodes that have windows.

  Raises:
    ValueError: no episode has a valid window (naming the window length, margins and the longest episode).
  """
  bad = np.zeros(offsets.size, bool)
  bad[[r["episode_index"] for r in rejected]] = True
  lengths_ok = np.where(bad, 0, lengths)
  counts, first = window_counts(offsets, lengths_ok, L, start_margin, end_margin, front_pad)
  has = counts > 0
  if not has.any():
    longest = int(lengths_ok.max()) if lengths_ok.size else 0
    raise ValueError(
        f"no valid window in {source}: window length H+T+1 = {H}+{T}+1 = {L} plus margins "
        f"{start_margin}+{end_margin}" + (f" less front padding {front_pad}" if front_pad else "")
        + f" needs episodes of >= {L + start_margin + end_margin - front_pad} steps, but the "
        f"longest usable episode has {longest} steps ({offsets.size} episodes, {len(rejected)} rejected)")
  eligible = np.flatnonzero(has)
  tr, ev = _split(eligible.size, eval_fraction, key)
  is_eval = np.zeros(offsets.size, bool)
  is_eval[eligible[ev]] = True
  return WindowPlan(counts, first, is_eval, ids[eligible[tr]], ids[eligible[ev]], int((~has & ~bad).sum()))


# Keys whose non-finite values reject an episode, in the order they are checked.
NONFINITE_KEYS = ("proprio", "extero", "action", "command", "reward", "value")


def bad_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(rows, first non-finite feature of each, its value) of the rows of a float [M, ...] array holding NaN/inf."""
  x = np.asarray(x)
  flat = x.reshape(x.shape[0], -1)
  bad = ~np.isfinite(flat)
  rows = np.flatnonzero(bad.any(-1))
  if rows.size == 0:
    return rows, rows, flat[:0, 0] if flat.shape[1] else np.zeros(0, flat.dtype)
  feats = np.argmax(bad[rows], axis=-1)
  return rows, feats, flat[rows, feats]


def reject_nonfinite(bad: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], offsets: np.ndarray,
                     ids: np.ndarray, on_nonfinite: str) -> list:
  """The rejected episodes (dicts with episode_index, episode_id, step, key, feature, value) from `bad_rows` per
  key of NONFINITE_KEYS (rows ascending): each episode once, at its first bad row of the first key listing it.
  `on_nonfinite="raise"` raises a ValueError naming the first instead."""
  out, seen = [], set()
  for k in NONFINITE_KEYS:
    if k not in bad:
      continue
    for r, f, v in zip(*bad[k], strict=True):
      e = int(np.searchsorted(offsets, r, side="right") - 1)
      if e in seen:
        continue
      seen.add(e)
      loc = {"episode_index": e, "episode_id": int(ids[e]), "step": int(r - offsets[e]), "key": k,
             "feature": int(f), "value": float(v)}
      if on_nonfinite == "raise":
        raise ValueError(f"non-finite value {loc['value']} in episode {e} (id {loc['episode_id']}) at step "
                         f"{loc['step']}, key {k!r}, feature {loc['feature']}")
      out.append(loc)
  if out:
    print(f"data: WARNING rejected {len(out)} episodes with NaN/inf; first: {out[:3]}")
  return out


# Keys padded with copies of the episode's first step before it; every other key (mask included) with zeros.
REPEAT_KEYS = ("proprio", "extero")


def gather_windows(data: Mapping[str, jax.Array], starts: jax.Array, firsts: jax.Array, length: int) -> dict:
  """Windows [B, L, ...] (float32) at flat starts [B]; steps before their episode's first index firsts [B] are
  front padding: proprio/extero repeat the first step, every other key (mask included) is 0 there. Pure; jit it."""
  def one(s: jax.Array, first: jax.Array) -> dict:
    idx = s + jnp.arange(length)
    inside = idx >= first
    src = jnp.maximum(idx, first)
    out = {}
    for k, v in data.items():
      x = jnp.take(v, src, axis=0).astype(jnp.float32)
      if k not in REPEAT_KEYS:
        x = jnp.where(inside.reshape((length,) + (1,) * (x.ndim - 1)), x, 0.0)
      out[k] = x
    return out
  return jax.vmap(one)(starts, firsts)


_gather = jax.jit(gather_windows, static_argnums=(3,))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _sample(data: Mapping[str, jax.Array], starts: jax.Array, firsts: jax.Array, key: jax.Array, batch_size: int,
            length: int) -> dict:
  idx = jax.random.randint(key, (batch_size,), 0, starts.shape[0])
  return gather_windows(data, starts[idx], firsts[idx], length)


@dataclasses.dataclass(frozen=True)
class WindowSampler:
  """Pure, hashable form of `WindowDataset.sample` (usable inside jit / `lax.scan`, and as a jit static argument):
  for `fn, arrays = dataset.sampler()`, `fn(arrays, key, B)` == `dataset.sample(key, B)`; `arrays` is the tuple
  of array arguments of `_sample` before the key."""

  length: int

  def __call__(self, arrays: tuple, key: jax.Array, batch_size: int) -> dict:
    """The batch `sample(key, batch_size)` draws, from the arrays of `sampler()`."""
    return _sample(*arrays, key, batch_size, self.length)


def mixed_split(batch_size: int, share: float) -> tuple[int, int]:
  """(primary, secondary) windows of a mixed batch: round(batch_size * share) from the secondary dataset."""
  n2 = int(round(batch_size * share))
  return batch_size - n2, n2


@dataclasses.dataclass(frozen=True)
class MixedSampler:
  """Pure form of `MixedDataset.sample`: `self((primary arrays, secondary arrays), key, B)`."""

  primary: Any
  secondary: Any
  share: float

  def __call__(self, arrays: tuple, key: jax.Array, batch_size: int) -> dict:
    """`batch_size` windows, the last `round(batch_size * share)` of them from the secondary dataset."""
    n2 = mixed_split(batch_size, self.share)[1]
    k1, k2 = jax.random.split(key)
    a = self.primary(arrays[0], k1, batch_size - n2)
    if n2 == 0:
      return a
    b = self.secondary(arrays[1], k2, n2)
    return {k: jnp.concatenate([a[k], b[k]], axis=0) for k in a}


class WindowDataset:
  """Windows of L = H + T + 1 steps over flat per-step arrays; see the module docstring.

  Attributes: H, T, L, stats (scaler dict), dims ({"proprio","extero","extero_shape","action","command"}),
  train_episodes / eval_episodes (episode ids), num_train_windows / num_eval_windows, dropped_short (episodes
  without a valid window), rejected (non-finite episodes: dicts with episode_id, step, key, feature), source.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], episode_id: np.ndarray, H: int, T: int, stats: Mapping,
               dims: Mapping, eval_fraction: float, key: jax.Array, start_margin: int, end_margin: int,
               source: str = "<arrays>", on_nonfinite: str = "reject", front_pad: int = 0) -> None:
    """Args: arrays: flat {BATCH_KEYS: [M, ...]} per-step arrays (episodes contiguous); episode_id: [M];
    on_nonfinite: "reject" (drop episodes, record in `rejected`) or "raise"; front_pad: 0 or H, windows may
    start this many steps before their episode (padded at gather time, see the module docstring)."""
    if H < 0 or T < 1:
      raise ValueError(f"need H >= 0 and T >= 1, got H={H}, T={T}")
    missing = [k for k in BATCH_KEYS if k not in arrays]
    if missing:
      raise ValueError(f"arrays missing keys {missing}")
    m = int(np.asarray(episode_id).shape[0])
    for k in BATCH_KEYS:
      if arrays[k].shape[0] != m:
        raise ValueError(f"arrays[{k!r}] has {arrays[k].shape[0]} steps, episode_id has {m}")
    self.H, self.T, self.L = int(H), int(T), int(H) + int(T) + 1
    self.stats, self.dims, self.source = stats, dict(dims), source
    if front_pad not in (0, self.H):
      raise ValueError(f"front_pad must be 0 or H={self.H}, got {front_pad}")
    self.front_pad = int(front_pad)
    offsets, lengths = episode_segments(episode_id)
    ids = np.asarray(episode_id)[offsets]
    bad = {k: bad_rows(arrays[k]) for k in NONFINITE_KEYS if np.issubdtype(np.asarray(arrays[k]).dtype,
                                                                            np.floating)}
    self.rejected = reject_nonfinite(bad, offsets, ids, on_nonfinite)
    plan = plan_windows(offsets, lengths, ids, self.rejected, self.L, start_margin, end_margin, self.front_pad,
                        eval_fraction, key, source, self.H, self.T)
    self.train_episodes, self.eval_episodes, self.dropped_short = (plan.train_episodes, plan.eval_episodes,
                                                                   plan.dropped_short)
    self._offsets = np.asarray(offsets, np.int64)
    (st_tr, ep_tr), (st_ev, ep_ev) = plan.starts(False), plan.starts(True)
    self._starts_train = jnp.asarray(st_tr, jnp.int32)
    self._starts_eval = jnp.asarray(st_ev, jnp.int32)
    self._firsts_train = jnp.asarray(offsets[ep_tr], jnp.int32)  # flat index of each start's episode's first step
    self._firsts_eval = jnp.asarray(offsets[ep_ev], jnp.int32)
    self.num_train_windows = int(self._starts_train.shape[0])
    self.num_eval_windows = int(self._starts_eval.shape[0])
    self._data = {k: jnp.asarray(arrays[k]) for k in BATCH_KEYS}

  # ---- sampler API consumed by the world-model trainer -------------------------------------------------------
  def draw_starts(self, key: jax.Array, batch_size: int, eval: bool = False) -> jax.Array:  # noqa: A002
    """The flat start indices `sample(key, B)` (or `sample_eval`) uses."""
    starts = self._starts_eval if eval else self._starts_train
    return starts[jax.random.randint(key, (batch_size,), 0, starts.shape[0])]

  def firsts_of(self, starts: Sequence[int] | np.ndarray) -> np.ndarray:
    """The flat index of the first step of each start's episode (its step s + front_pad lies inside it)."""
    starts = np.asarray(starts, np.int64)
    return self._offsets[np.searchsorted(self._offsets, starts + self.front_pad, side="right") - 1]

  def gather(self, starts: Sequence[int] | jax.Array) -> dict:
    """Windows at explicit flat start indices -> batch dict [B, L, ...] float32 (front-padded as in `sample`)."""
    starts = np.asarray(starts, np.int64)
    return _gather(self._data, jnp.asarray(starts, jnp.int32), jnp.asarray(self.firsts_of(starts), jnp.int32),
                   self.L)

  def sample(self, key: jax.Array, batch_size: int) -> dict:
    """B uniformly drawn training windows (device arrays)."""
    return _sample(self._data, self._starts_train, self._firsts_train, key, batch_size, self.L)

  def sample_eval(self, key: jax.Array, batch_size: int) -> dict:
    """B uniformly drawn windows from held-out episodes."""
    if self.num_eval_windows == 0:
      raise ValueError(f"{self.source} has no held-out episodes (eval_fraction 0 or a single episode)")
    return _sample(self._data, self._starts_eval, self._firsts_eval, key, batch_size, self.L)

  def sampler(self) -> tuple[WindowSampler, tuple]:
    """(pure `fn(arrays, key, batch_size)`, arrays) with `fn(arrays, key, B) == sample(key, B)` (for jit/scan)."""
    return WindowSampler(self.L), (self._data, self._starts_train, self._firsts_train)

  def summary(self) -> dict:
    """Counts of the dataset: source, H, T, train/held-out episodes and windows, dropped and rejected episodes."""
    return {"source": self.source, "H": self.H, "T": self.T, "train_episodes": int(self.train_episodes.size),
            "eval_episodes": int(self.eval_episodes.size), "train_windows": self.num_train_windows,
            "eval_windows": self.num_eval_windows, "dropped_short": self.dropped_short,
            "rejected_nonfinite": len(self.rejected)}


class MixedDataset:
  """Batches that draw a fixed share of their windows from a second dataset: `round(B * share)` windows from
  `secondary`, the rest from `primary` (e.g. sim windows beside real ones while finetuning the dynamics). Both must
  have the same H, T and feature dims. Only `sample` is offered (no held-out split of its own)."""

  def __init__(self, primary: WindowDataset, secondary: WindowDataset, share: float) -> None:
    if not 0.0 <= float(share) < 1.0:
      raise ValueError(f"share of secondary windows must be in [0, 1), got {share}")
    if (primary.H, primary.T) != (secondary.H, secondary.T):
      raise ValueError(f"H, T differ: {primary.source} has {(primary.H, primary.T)}, {secondary.source} has "
                       f"{(secondary.H, secondary.T)}")
    for k in _FEATURE_KEYS:
      if int(primary.dims[k]) != int(secondary.dims[k]):
        raise ValueError(f"dims[{k!r}] differ: {primary.source} {primary.dims[k]}, {secondary.source} "
                         f"{secondary.dims[k]}")
    self.primary, self.secondary, self.share = primary, secondary, float(share)
    self.H, self.T, self.L, self.dims, self.stats = primary.H, primary.T, primary.L, primary.dims, primary.stats
    self.source = f"{primary.source} + {self.share:.0%} {secondary.source}"

  def split(self, batch_size: int) -> tuple[int, int]:
    """(primary, secondary) windows per batch of `batch_size`."""
    return mixed_split(batch_size, self.share)

  def sample(self, key: jax.Array, batch_size: int) -> dict:
    """`batch_size` windows: `split(batch_size)` from primary then secondary, concatenated along the batch axis
    (the pure `MixedSampler` of `sampler()`, so the two paths cannot drift apart; with a streaming part, the
    parts' own `sample` with the keys `MixedSampler` splits)."""
    pure = self.sampler()
    if pure is not None:
      fn, arrays = pure
      return fn(arrays, key, batch_size)
    n2 = mixed_split(batch_size, self.share)[1]
    k1, k2 = jax.random.split(key)
    a = self.primary.sample(k1, batch_size - n2)
    if n2 == 0:
      return a
    b = self.secondary.sample(k2, n2)
    return {k: jnp.concatenate([jnp.asarray(a[k]), jnp.asarray(b[k])], axis=0) for k in a}

  def sampler(self) -> tuple[MixedSampler, tuple] | None:
    """(pure `fn(arrays, key, batch_size)`, arrays) with `fn(arrays, key, B) == sample(key, B)` (for jit/scan);
    None when a part has no pure sampler (a streaming dataset)."""
    parts = [getattr(d, "sampler", None) for d in (self.primary, self.secondary)]
    pure = [get() if get is not None else None for get in parts]
    if any(p is None for p in pure):
      return None
    (f1, a1), (f2, a2) = pure
    return MixedSampler(f1, f2, self.share), (a1, a2)


LOADING = ("memory", "stream")  # the values of `data.loading`


def load_dataset(data_dir: str | os.PathLike, H: int, T: int, start_margin: int = 5, end_margin: int = 5,
                 eval_fraction: float = 0.1, seed: int = 0, verify: bool = True, front_pad: bool = False,
                 loading: str = "memory") -> Any:
  """Sim dataset from a generated directory (checks the manifest and every shard's size and sha256).

  `front_pad`: windows may start H steps before their episode, padded as deployment pads its history (module
  docstring), so episode starts are current steps too; False is the official rule.
  `loading` (`data.loading`): "memory" loads every shard into host memory and onto the device (a
  `WindowDataset`, sampled inside the compiled training scan); "stream" memory-maps the shards and gathers each
  batch on the host (a `stream.StreamWindowDataset`: the same windows for the same keys, bounded memory)."""
  if loading not in LOADING:
    raise ValueError(f"data.loading={loading!r}: must be one of {list(LOADING)}")
  if loading == "stream":
    from simdist_jax.data import stream  # pylint: disable=import-outside-toplevel
    return stream.StreamWindowDataset(data_dir, H, T, start_margin, end_margin, eval_fraction, seed, verify,
                                      front_pad)
  man, arrs = storage.load_all(data_dir, keys=["proprio", "extero", "action", "command", "reward", "value",
                                               "expert_flag", "episode_id"], verify=verify)

  def flat(x: np.ndarray) -> np.ndarray:  # [S_total, N, ...] -> env-major [N * S_total, ...]
    x = np.swapaxes(x, 0, 1)
    return np.ascontiguousarray(x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]))

  arrays = {k: flat(v) for k, v in arrs.items()}
  arrays["mask"] = np.ones(arrays["reward"].shape, np.uint8)
  d = man["dims"]
  dims = {"proprio": int(d["proprio"]), "extero": int(d["extero"]), "extero_shape": tuple(d["extero_shape"]),
          "action": int(d["action"]), "command": int(d["command"])}
  stats = scaler_lib.stats_from_json(man["scaler"])
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x5B117)
  return WindowDataset(arrays, arrays.pop("episode_id"), H, T, stats, dims, eval_fraction, key, start_margin,
                       end_margin, source=str(pathlib.Path(data_dir)), front_pad=H if front_pad else 0)


def load_from_config(cfg: Any, workdir: str | os.PathLike) -> Any:
  """`load_dataset` with H, T from `cfg.model` and margins/split/front padding/loading from `cfg.data` (a config
  without `data.loading`, from before the key, loads into memory)."""
  from simdist_jax import paths
  return load_dataset(paths.data_dir(workdir), int(cfg.model.history), int(cfg.model.horizon),
                      int(cfg.data.window_start_margin), int(cfg.data.window_end_margin),
                      float(cfg.data.eval_fraction), int(cfg.run.seed), front_pad=bool(cfg.data.front_pad),
                      loading=str(cfg.data.get("loading", "memory")))


def from_episodes(episodes: Sequence[Mapping[str, np.ndarray]], H: int, T: int, stats: Mapping | None,
                  eval_fraction: float, key: jax.Array, front_pad: bool = True, start_margin: int = 0,
                  end_margin: int = 0, extero_shape: tuple | None = None, std_floor: float = 1e-4
                  ) -> WindowDataset:
  """Real episodes (no reward/value/flag) -> WindowDataset with the same batch format (see module docstring).

  Args:
    episodes: list of {"proprio" [N,P], "extero" [N,E], "action" [N,A], "command" [N,C]}, N may differ.
    H: history length.
    T: horizon.
    stats: scaler dict to attach (finetuning keeps the sim scaler); None computes it from the recorded steps
      (reward/value get mean 0, std 1).
    eval_fraction: held-out share of episodes.
    key: the train/held-out split key.
    front_pad: prepend H copies of the first observation (zero action/command, mask 0).
    start_margin: a window starts at least this many steps after its episode's first (padded) step.
    end_margin: a window ends at least this many steps before its episode's last step.
    extero_shape: shape of one extero observation (default `(E,)`, or `()` when E = 0).
    std_floor: floor of the scaler std when `stats` is None.

  Raises:
    ValueError: naming the episode and key for missing keys, wrong shapes, NaN/inf (with step and feature), or
      when no episode is long enough (naming the numbers).
  """
  if not episodes:
    raise ValueError("from_episodes: empty episode list")
  parts = {k: [] for k in BATCH_KEYS}
  ids = []
  dims0 = None
  for i, ep in enumerate(episodes):
    missing = [k for k in _FEATURE_KEYS if k not in ep]
    if missing:
      raise ValueError(f"episode {i} is missing keys {missing}")
    arr = {k: np.asarray(ep[k], np.float32) for k in _FEATURE_KEYS}
    n = arr["proprio"].shape[0]
    for k, v in arr.items():
      if v.ndim != 2 or v.shape[0] != n:
        raise ValueError(f"episode {i}: {k} must be [N={n}, D], got shape {v.shape}")
    dims_i = {k: arr[k].shape[1] for k in _FEATURE_KEYS}
    if dims0 is None:
      dims0 = dims_i
    elif dims_i != dims0:
      raise ValueError(f"episode {i} has feature dims {dims_i}, episode 0 has {dims0}")
    if n == 0:
      raise ValueError(f"episode {i} is empty")
    for k, _v in arr.items():
      bad = np.argwhere(~np.isfinite(np.asarray(ep[k], np.float64)))
      if bad.size:
        step, feat = int(bad[0][0]), int(bad[0][1])
        raise ValueError(f"non-finite value {np.asarray(ep[k])[step, feat]} in real episode {i} at step {step}, "
                         f"key {k!r}, feature {feat} ({len(bad)} non-finite entries in this key)")
    pad = H if front_pad else 0
    for k in ("proprio", "extero"):
      parts[k].append(np.concatenate([np.repeat(arr[k][:1], pad, 0), arr[k]], 0))
    for k in ("action", "command"):
      parts[k].append(np.concatenate([np.zeros((pad, arr[k].shape[1]), np.float32), arr[k]], 0))
    for k in ("reward", "value"):
      parts[k].append(np.zeros(n + pad, np.float32))
    parts["expert_flag"].append(np.zeros(n + pad, np.uint8))
    parts["mask"].append(np.concatenate([np.zeros(pad, np.uint8), np.ones(n, np.uint8)]))
    ids.append(np.full(n + pad, i, np.int32))
  arrays = {k: np.concatenate(v, 0) for k, v in parts.items()}
  dims = dict(dims0)
  dims["extero_shape"] = tuple(extero_shape) if extero_shape is not None else ((dims0["extero"],) if
                                                                               dims0["extero"] else ())
  if stats is None:
    real = arrays["mask"] > 0
    stats = scaler_lib.compute_stats({k: arrays[k][real] for k in _FEATURE_KEYS}, std_floor, _FEATURE_KEYS)
    for k in ("reward", "value"):
      stats[k] = {"mean": np.asarray(0.0, np.float32), "std": np.asarray(1.0, np.float32)}
  return WindowDataset(arrays, np.concatenate(ids), H, T, stats, dims, eval_fraction, key, start_margin,
                       end_margin, source=f"{len(episodes)} real episodes", on_nonfinite="raise")
