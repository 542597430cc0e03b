"""Sharded on-disk dataset format.

Layout of `<workdir>/data/`:

  manifest.json          written last: format, layout (per-step keys, dtypes, shapes), counts, per-shard and per-file
                         sha256 and sizes, the generating config, the scaler, float16 round-trip errors,
                         non-finite value locations, bytes per transition
  scaler.json            the scaler dict (also inside the manifest)
  envs/                  per-env constants: noise_sigma.npy [N, A] float32, never_noised.npy [N] uint8
  shard_00000/           one shard = one generation chunk: every per-step key as a raw `.npy` file [S, N, ...]
  shard_00001/           (time-major: S = shard_steps, N = num_envs; env j's trajectory continues across shards)
  .resume.npz            generation carry after the last complete shard (deleted when the manifest is written)

Shards are written to a uniquely named hidden temp directory (`fileio.atomic_directory`) and renamed into place,
so a shard is visible only when complete and two writers never share a temp name.
`.npy` files (not `.npz`, whose zip headers hold timestamps) make a shard byte-identical across runs.

Per-step keys and dtypes: proprio/extero/command as configured (float16 or float32), action/reward/value float32,
expert_flag/noised uint8, policy_id uint8 (uint16 for ladders > 255), episode_id int32 (global: env j's k-th
episode has id k * N + j). Episodes span shards freely; windows never cross episode ids (windows.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, Iterable, Mapping

import numpy as np

from simdist_jax import fileio

FORMAT = "simdist_jax.data/v1"
MANIFEST = "manifest.json"
OBS_KEYS = ("proprio", "extero", "command")
FIXED_DTYPES = {"action": "float32", "reward": "float32", "value": "float32", "expert_flag": "uint8",
                "noised": "uint8", "episode_id": "int32"}
STEP_KEYS = ("proprio", "extero", "action", "command", "reward", "value", "expert_flag", "noised", "policy_id",
             "episode_id")


class DatasetError(ValueError):
  """A dataset on disk that cannot be used: missing manifest, missing/truncated/corrupt shard, bad layout."""


def layout(dims: Mapping[str, int], obs_dtypes: Mapping[str, str], num_policies: int) -> dict:
  """Per-step key -> {"dtype", "shape"} (shape of one transition) for the given dims and observation dtypes."""
  for k in OBS_KEYS:
    if obs_dtypes[k] not in ("float16", "float32"):
      raise ValueError(f"{k}_dtype must be 'float16' or 'float32', got {obs_dtypes[k]!r}")
  out = {k: {"dtype": obs_dtypes[k], "shape": [int(dims[k])]} for k in OBS_KEYS}
  out["action"] = {"dtype": "float32", "shape": [int(dims["action"])]}
  for k in ("reward", "value", "expert_flag", "noised", "episode_id"):
    out[k] = {"dtype": FIXED_DTYPES[k], "shape": []}
  out["policy_id"] = {"dtype": "uint8" if num_policies <= 256 else "uint16", "shape": []}
  return {k: out[k] for k in STEP_KEYS}


def bytes_per_transition(lay: Mapping[str, Mapping]) -> int:
  """Payload bytes of one transition under a layout (excludes .npy headers and per-env constants)."""
  return int(sum(np.dtype(v["dtype"]).itemsize * int(np.prod(v["shape"], dtype=np.int64)) for v in lay.values()))


def encode(arrays: Mapping[str, np.ndarray], lay: Mapping[str, Mapping]) -> tuple[dict, dict]:
  """Casts float32 chunk arrays to the layout's dtypes.

  Returns (stored arrays, float16 error {key: max |x - float32(float16(x))| per feature, over finite entries}).
  """
  stored, err = {}, {}
  for k, spec in lay.items():
    x = np.asarray(arrays[k])
    with np.errstate(over="ignore"):  # float16 overflow -> inf, reported by nonfinite_locations
      y = np.ascontiguousarray(x.astype(spec["dtype"]))
    if spec["dtype"] == "float16":
      d = np.abs(y.astype(np.float32) - x.astype(np.float32))
      d = np.where(np.isfinite(d), d, 0.0)  # overflow to inf is reported separately as non-finite
      err[k] = d.reshape(-1, d.shape[-1]).max(0) if d.size else np.zeros(d.shape[-1], np.float32)
    stored[k] = y
  return stored, err


def _sha256_file(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def shard_name(index: int) -> str:
  """Directory name of shard `index`: `shard_<index:05d>`."""
  return f"shard_{index:05d}"


def write_shard(data_dir: str | os.PathLike, index: int, stored: Mapping[str, np.ndarray]) -> dict:
  """Writes one shard atomically (unique temp directory + rename). Returns its manifest entry.

  A shard regenerated after an interruption replaces its (identical) earlier copy.
  """
  data_dir = pathlib.Path(data_dir)
  name = shard_name(index)
  files = {}
  with fileio.atomic_directory(data_dir / name) as tmp:
    for k in sorted(stored):
      path = tmp / f"{k}.npy"
      np.save(path, stored[k], allow_pickle=False)
      files[k] = {"sha256": _sha256_file(path), "bytes": path.stat().st_size, "dtype": str(stored[k].dtype),
                  "shape": list(stored[k].shape)}
  digest = hashlib.sha256("".join(f"{k}:{files[k]['sha256']};" for k in sorted(files)).encode()).hexdigest()
  steps = int(next(iter(stored.values())).shape[0])
  return {"name": name, "steps": steps, "sha256": digest, "files": files}


def read_manifest(data_dir: str | os.PathLike) -> dict:
  """Loads and checks `manifest.json`. Raises DatasetError naming the path when missing or malformed."""
  path = pathlib.Path(data_dir) / MANIFEST
  if not path.is_file():
    hint = " (generation incomplete: run `simdist-jax generate` again to resume)" if (
        pathlib.Path(data_dir) / ".resume.npz").exists() else ""
    raise DatasetError(f"missing dataset manifest '{path}'{hint}")
  try:
    man = fileio.read_json(path)
  except fileio.CorruptFileError as e:
    raise DatasetError(f"corrupt dataset manifest '{path}': {e.reason}") from e
  if man.get("format") != FORMAT:
    raise DatasetError(f"'{path}' has format {man.get('format')!r}, expected {FORMAT!r}")
  return man


def write_manifest(data_dir: str | os.PathLike, manifest: Mapping) -> None:
  """Writes `manifest.json` in `data_dir` atomically (`fileio.write_text`)."""
  fileio.write_text(pathlib.Path(data_dir) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def check_file(path: pathlib.Path, spec: Mapping, verify: bool = True) -> None:
  """Checks that a shard file exists, has the manifest's size and (if `verify`) its sha256.

  Raises:
    DatasetError: naming the file and what is wrong (missing, truncated: expected vs actual bytes, checksum
      mismatch: expected vs actual sha256).
  """
  if not path.is_file():
    raise DatasetError(f"missing shard file '{path}'")
  size = path.stat().st_size
  if size != spec["bytes"]:
    raise DatasetError(f"truncated or corrupt shard file '{path}': {size} bytes, manifest says {spec['bytes']}")
  if verify:
    digest = _sha256_file(path)
    if digest != spec["sha256"]:
      raise DatasetError(f"checksum mismatch for shard file '{path}': sha256 {digest}, manifest says "
                         f"{spec['sha256']}")


def _check_kind(path: pathlib.Path, dtype: Any, shape: Iterable[int], spec: Mapping) -> None:
  if str(dtype) != spec["dtype"] or list(shape) != list(spec["shape"]):
    raise DatasetError(f"shard file '{path}' holds {dtype}{list(shape)}, manifest says "
                       f"{spec['dtype']}{spec['shape']}")


def load_shard(data_dir: str | os.PathLike, entry: Mapping, keys: Iterable[str] | None = None,
               verify: bool = True) -> dict:
  """Reads a shard's arrays (`keys` or all), checking existence, size, sha256 (if `verify`), dtype and shape.

  Raises:
    DatasetError: naming the file and what is wrong (missing, truncated: expected vs actual bytes, checksum
      mismatch: expected vs actual sha256, unexpected dtype/shape).
  """
  shard = pathlib.Path(data_dir) / entry["name"]
  out = {}
  for k in (keys if keys is not None else sorted(entry["files"])):
    if k not in entry["files"]:
      raise DatasetError(f"shard '{shard}' has no key {k!r}; it has {sorted(entry['files'])}")
    spec = entry["files"][k]
    path = shard / f"{k}.npy"
    check_file(path, spec, verify)
    try:
      arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
      raise DatasetError(f"cannot read shard file '{path}': {e}") from e
    _check_kind(path, arr.dtype, arr.shape, spec)
    out[k] = arr
  return out


def npy_header(path: pathlib.Path) -> tuple[np.dtype, tuple[int, ...], int]:
  """(dtype, shape, byte offset of the data) of a C-order `.npy` file. DatasetError naming the file otherwise."""
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
      else:
        raise ValueError(f".npy format version {version} is not supported")
      offset = f.tell()
  except (ValueError, OSError) as e:
    raise DatasetError(f"cannot read shard file '{path}': {e}") from e
  if fortran or dtype.hasobject:
    raise DatasetError(f"shard file '{path}' is not a plain C-order array")
  return dtype, tuple(int(n) for n in shape), offset


_FAULT_AROUND = 64 << 10  # bytes the kernel may map around one touched page (fault_around_bytes' default)


def _file_resident() -> int | None:
  """Bytes of file-backed (and shared) pages resident in this process (`/proc/self/statm`), None if unknown."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      return int(f.read().split()[2]) * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError, IndexError):
    return None


class MappedShards:
  """Read-only memory maps of a dataset's shard files, for gathering rows without loading the dataset.

  At construction every file of `keys` is checked as `load_shard` checks it (exists, size, sha256 when `verify`,
  dtype and shape in its `.npy` header against the manifest), before anything is mapped; a DatasetError names
  the file. Rows are addressed by (global step, env): step s of the dataset lies in the shard whose step range
  holds it. Reads copy the rows out (`gather`, `rows`, `block`). The mapped pages they touch count in this
  process's resident set until dropped, and the kernel maps more than the rows read (fault-around: about 64 KiB
  of cached neighbours per touched row), so the growth is measured, not estimated: whenever what may have been
  mapped since the last measurement (64 KiB per row read, at most the mapping's size) passes an eighth of
  `resident_bytes`, the process's resident file pages (`/proc/self/statm`) are compared with their level after the
  last drop, and past `resident_bytes` the pages of every mapping read since are dropped (`madvise(MADV_DONTNEED)`:
  the kernel's page cache keeps them, the process's resident set does not). A long sampling run thus holds at most
  about `resident_bytes` of mapped data plus an eighth of it (reads are split into pieces of at most that bound;
  a dataset smaller than the budget stays mapped: no page is faulted in twice). Without `/proc` (not Linux) the bound itself is used. At most `max_open`
  files are mapped at once (default: half the soft RLIMIT_NOFILE; least recently used closed first; every mapping
  holds a file descriptor).

  Attributes: manifest, steps (cumulative steps [num_shards + 1]), num_steps, num_envs, keys.
  """

  def __init__(self, data_dir: str | os.PathLike, manifest: Mapping, keys: Iterable[str], verify: bool = True,
               max_open: int | None = None, resident_bytes: int = 256 << 20) -> None:
    self.data_dir = pathlib.Path(data_dir)
    self.manifest = manifest
    self.keys = tuple(keys)
    shards = manifest["shards"]
    if not shards:
      raise DatasetError(f"dataset '{data_dir}' lists no shards")
    self.steps = np.concatenate([[0], np.cumsum([int(e["steps"]) for e in shards])]).astype(np.int64)
    self.num_steps = int(self.steps[-1])
    self._files: list[dict] = []
    for entry in shards:
      shard = self.data_dir / entry["name"]
      files = {}
      for k in self.keys:
        if k not in entry["files"]:
          raise DatasetError(f"shard '{shard}' has no key {k!r}; it has {sorted(entry['files'])}")
        spec, path = entry["files"][k], shard / f"{k}.npy"
        check_file(path, spec, verify)
        dtype, shape, offset = npy_header(path)
        _check_kind(path, dtype, shape, spec)
        if shape[0] != int(entry["steps"]):
          raise DatasetError(f"shard file '{path}' has {shape[0]} steps, manifest says {entry['steps']}")
        files[k] = (path, dtype, shape, offset)
      self._files.append(files)
    shapes = {f[k][2][1] for f in self._files for k in self.keys}
    if len(shapes) != 1:
      raise DatasetError(f"shards of '{data_dir}' disagree on the number of envs: {sorted(shapes)}")
    self.num_envs = shapes.pop()
    if max_open is None:  # half the descriptors this process may open
      import resource  # pylint: disable=import-outside-toplevel
      max_open = max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)
    self._max_open = max(1, int(max_open))
    self._maps: dict[tuple[int, str], Any] = {}  # insertion order = least recently used first
    self.resident_bytes = int(resident_bytes)
    self._touched: set[tuple[int, str]] = set()  # mappings read since the last drop
    self._bound = 0  # an upper bound of the bytes mapped since the last drop (used without /proc)
    self._since = 0  # the same since the last measurement
    self._level = _file_resident()  # resident file pages after the last drop (None: not measurable)
    self.releases = 0  # how many times the read pages were dropped

  def _view(self, shard: int, key: str) -> list:
    """[array view [S * N, ...] over the mapping, the mmap or None for an empty array]."""
    got = self._maps.pop((shard, key), None)
    if got is None:
      path, dtype, shape, offset = self._files[shard][key]
      count = int(np.prod(shape, dtype=np.int64))
      flat_shape = (shape[0] * shape[1],) + tuple(shape[2:])
      if count == 0:
        got = [np.empty(flat_shape, dtype), None]
      else:
        import mmap  # pylint: disable=import-outside-toplevel
        while len(self._maps) >= self._max_open:
          old = next(iter(self._maps))
          self._close(self._maps.pop(old))
          self._touched.discard(old)
        with open(path, "rb") as f:
          mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        got = [np.frombuffer(mm, dtype, count, offset).reshape(flat_shape), mm]
    self._maps[(shard, key)] = got  # most recently used last
    return got

  @staticmethod
  def _close(got: list) -> None:
    mm = got[1]
    got[0] = None  # the last reference to the view: the mapping can close
    if mm is not None:
      mm.close()

  def _touch(self, where: tuple[int, str], mm: Any, rows: int) -> None:
    """Notes that `rows` rows were read from mapping `where`; measures the resident pages once the bound of what
    may have been mapped since the last measurement passes an eighth of the budget."""
    if mm is None:
      return
    self._touched.add(where)
    grown = min(rows * _FAULT_AROUND, len(mm))
    self._bound += grown
    self._since += grown
    if self._since > self.resident_bytes // 8:
      self._since = 0
      level = _file_resident()
      if (self._bound if level is None or self._level is None else level - self._level) > self.resident_bytes:
        self.release()

  def release(self) -> None:
    """Drops the pages of every mapping read since the last drop from this process's resident set (they stay
    mapped, and cached by the kernel)."""
    import mmap  # pylint: disable=import-outside-toplevel
    for where in self._touched:
      mm = self._maps[where][1]
      if hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)
    self._touched.clear()
    self._bound = 0
    self._level = _file_resident()
    self.releases += 1

  def feature_shape(self, key: str) -> tuple[int, ...]:
    """Shape of one transition of `key` (e.g. `(P,)`, `()` for scalars)."""
    return self._files[0][key][2][2:]

  def dtype(self, key: str) -> np.dtype:
    """Stored dtype of `key`."""
    return self._files[0][key][1]

  def gather(self, keys: Iterable[str], steps: np.ndarray, envs: np.ndarray) -> dict[str, np.ndarray]:
    """{key: the rows at (global step, env) pairs, [n, ...] in the stored dtype (a copy)} for every key of
    `keys`; the rows are read shard by shard (one grouping for all keys)."""
    keys = list(keys)
    steps, envs = np.asarray(steps, np.int64).reshape(-1), np.asarray(envs, np.int64).reshape(-1)
    out = {k: np.empty((steps.size,) + self.feature_shape(k), self.dtype(k)) for k in keys}
    shard = np.searchsorted(self.steps, steps, side="right") - 1
    order = np.argsort(shard, kind="stable")
    bounds = np.searchsorted(shard[order], np.arange(len(self._files) + 1))
    for k in np.flatnonzero(np.diff(bounds)):
      sel = order[bounds[k]:bounds[k + 1]]
      flat = (steps[sel] - self.steps[k]) * self.num_envs + envs[sel]  # row of the [S * N, ...] view
      step = max(1, self.resident_bytes // 8 // _FAULT_AROUND)  # rows per read: the pages it maps are checked
      for key in keys:
        view, mm = self._view(int(k), key)
        for lo in range(0, sel.size, step):
          out[key][sel[lo:lo + step]] = view[flat[lo:lo + step]]
          self._touch((int(k), key), mm, min(step, sel.size - lo))
        view = None  # no view outlives its read (a mapping with a live view cannot be closed)
    return out

  def rows(self, key: str, steps: np.ndarray, envs: np.ndarray) -> np.ndarray:
    """`key` at (global step, env) pairs: [n, ...] in the stored dtype (a copy)."""
    return self.gather([key], steps, envs)[key]

  def block(self, key: str, shard: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Steps lo..hi (local to shard `shard`) of `key`: [hi - lo, N, ...] in the stored dtype (a copy)."""
    view, mm = self._view(int(shard), key)
    n = self.num_envs
    hi = self._files[shard][key][2][0] if hi is None else hi
    out = np.array(view[lo * n:hi * n]).reshape((hi - lo, n) + view.shape[1:])
    self._touch((int(shard), key), mm, (hi - lo) * n)
    return out

  def close(self) -> None:
    """Unmaps every open file (the object stays usable: files are mapped again on the next read)."""
    while self._maps:
      self._close(self._maps.pop(next(iter(self._maps))))
    self._touched.clear()
    self._bound = 0
    self._level = _file_resident()


def load_all(data_dir: str | os.PathLike, keys: Iterable[str] | None = None, verify: bool = True
             ) -> tuple[dict, dict]:
  """(manifest, {key: [num_steps, N, ...]}) with every shard concatenated along time."""
  man = read_manifest(data_dir)
  keys = list(keys) if keys is not None else list(man["layout"])
  if not man["shards"]:
    raise DatasetError(f"dataset '{data_dir}' lists no shards")
  parts = {k: [] for k in keys}
  for entry in man["shards"]:
    arrs = load_shard(data_dir, entry, keys, verify)
    for k in keys:
      parts[k].append(arrs[k])
  return man, {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def verify(data_dir: str | os.PathLike) -> dict:
  """Checks every shard file's size and sha256 against the manifest. Returns the manifest."""
  man = read_manifest(data_dir)
  for entry in man["shards"]:
    load_shard(data_dir, entry, verify=True)
  return man


def nonfinite_locations(arrays: Mapping[str, np.ndarray], step_offset: int = 0, limit: int = 20) -> dict:
  """{key: {"count": n, "first": [[step, env, feature], ...]}} for non-finite entries of float arrays [S, N, ...]."""
  out = {}
  for k, x in arrays.items():
    if not np.issubdtype(np.asarray(x).dtype, np.floating):
      continue
    bad = ~np.isfinite(x)
    n = int(bad.sum())
    if n:
      idx = np.argwhere(bad)[:limit]
      first = [[int(i[0]) + step_offset, int(i[1]), int(i[2]) if len(i) > 2 else 0] for i in idx]
      out[k] = {"count": n, "first": first}
  return out


def write_dataset(data_dir: str | os.PathLike, chunks: Iterable[Mapping[str, np.ndarray]], dims: Mapping[str, Any],
                  obs_dtypes: Mapping[str, str] | None = None, num_policies: int = 1, std_floor: float = 1e-4,
                  meta: Mapping[str, Any] | None = None) -> dict:
  """Writes a complete dataset from per-step arrays, one shard per chunk, with this module's writer: shards,
  `scaler.json` and `manifest.json` (last). For datasets that do not come from `generate` (tests, benchmarks,
  imported data); the shards and the manifest's layout, counts, checksums, scaler and non-finite record are
  those `generate` writes. Host memory: one chunk at a time.

  Args:
    data_dir: the dataset directory (created).
    chunks: iterable of {every key of STEP_KEYS: [S, N, ...]} (time-major, N the same in every chunk; env j's
      trajectory continues from chunk to chunk; episode ids global).
    dims: {"proprio", "extero", "extero_shape", "action", "command"}.
    obs_dtypes: on-disk dtype per OBS_KEYS key (default float16).
    num_policies: ladder size (policy_id's dtype).
    std_floor: floor of the scaler's std.
    meta: extra manifest fields.

  Returns:
    The manifest.
  """
  from simdist_jax.data import scaler as scaler_lib  # pylint: disable=import-outside-toplevel
  data_dir = pathlib.Path(data_dir)
  data_dir.mkdir(parents=True, exist_ok=True)
  lay = layout(dims, obs_dtypes or {k: "float16" for k in OBS_KEYS}, num_policies)
  shards, moments, nonfinite = [], {}, {}
  step, num_envs, episodes, prev_last = 0, None, 0, None
  for i, chunk in enumerate(chunks):
    stored, _ = encode(chunk, lay)
    s, n = stored["reward"].shape
    if num_envs is not None and n != num_envs:
      raise ValueError(f"chunk {i} has {n} envs, chunk 0 has {num_envs}")
    num_envs = n
    for k, v in nonfinite_locations({k: stored[k] for k in scaler_lib.SCALER_KEYS}, step).items():
      entry = nonfinite.setdefault(k, {"count": 0, "first": []})
      entry["count"] += v["count"]
      entry["first"] = (entry["first"] + [[shard_name(i)] + loc for loc in v["first"]])[:20]
    flat = {k: np.asarray(stored[k], np.float32).reshape(s * n, -1) for k in scaler_lib.SCALER_KEYS}
    finite = np.all([np.isfinite(x).all(-1) for x in flat.values()], axis=0)
    for k, x in flat.items():
      m = scaler_lib.Moments.of(x[finite])
      moments[k] = moments[k].merge(m) if k in moments else m
    ep = stored["episode_id"]
    episodes += int((ep[1:] != ep[:-1]).sum()) + (n if prev_last is None else int((ep[0] != prev_last).sum()))
    prev_last = ep[-1]
    shards.append(write_shard(data_dir, i, stored))
    step += s
  if not shards:
    raise ValueError("write_dataset: no chunks")
  stats = scaler_lib.finalize_stats(moments, std_floor)
  man = {"format": FORMAT, "layout": lay, "dims": {k: (list(v) if k == "extero_shape" else int(v))
                                                    for k, v in dims.items()},
         "num_envs": num_envs, "num_steps": step, "shard_steps": int(shards[0]["steps"]),
         "transitions": num_envs * step, "episodes": episodes, "bytes_per_transition": bytes_per_transition(lay),
         "bytes_on_disk": int(sum(f["bytes"] for e in shards for f in e["files"].values())),
         "nonfinite": nonfinite, "scaler": scaler_lib.stats_to_json(stats), "shards": shards, **dict(meta or {})}
  fileio.write_text(data_dir / "scaler.json", json.dumps(man["scaler"], indent=1, sort_keys=True))
  write_manifest(data_dir, man)
  return man
