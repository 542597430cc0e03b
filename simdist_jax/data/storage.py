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
from typing import Iterable, Mapping

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
    try:
      arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
      raise DatasetError(f"cannot read shard file '{path}': {e}") from e
    if str(arr.dtype) != spec["dtype"] or list(arr.shape) != spec["shape"]:
      raise DatasetError(f"shard file '{path}' holds {arr.dtype}{list(arr.shape)}, manifest says "
                         f"{spec['dtype']}{spec['shape']}")
    out[k] = arr
  return out


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
