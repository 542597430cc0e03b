"""The one atomic-write path of the package, and reads that name the file they choke on.

Writes. Every file goes to a uniquely named temp file in its final directory, `.<name>.tmp-<pid>-<random>`
(two runs never share a temp name), is flushed and fsynced, then `os.replace`d over the final name, and the
directory is fsynced: readers see the complete old file or the complete new one, never half a file. The temp
file is created like `open()` creates files, mode `0o666 & ~umask` (not `mkstemp`'s 0600, so colleagues can read
reports and configs); `atomic_directory` does the same for directories (`0o777 & ~umask`).

  write_text / write_bytes / write_json / save_npz / save_npy    one file
  atomic_directory(path)                                          a directory built under a temp name, then renamed
  recover_directory(path, is_complete)                            repairs what a kill inside a directory swap left
  remove_stale_temps(directory)                                   sweeps temp leftovers of dead processes

Reads. `read_json` and `load_npz` raise `CorruptFileError` (a ValueError) naming the file and what is wrong
(empty, truncated, invalid JSON at line/column, bad zip, CRC mismatch, a missing array) instead of a bare
`JSONDecodeError` / `BadZipFile`. A missing file stays a `FileNotFoundError` (it names the path too).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re
import secrets
import shutil
import zipfile
import zlib
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"
# `.<name>.tmp-<pid>-<hex>` / `.<name>.old-<pid>-<hex>` (the name itself may contain dots).
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")


class CorruptFileError(ValueError):
  """A file that exists but cannot be used: empty, truncated, invalid JSON or zip, missing arrays.

  Attributes:
    path: the file.
    reason: what is wrong with it.
  """

  def __init__(self, path: str | os.PathLike, reason: str):
    self.path = str(path)
    self.reason = reason
    super().__init__(f"corrupt or truncated file '{self.path}': {reason}")


# ---- names ------------------------------------------------------------------------------------------------------
def _unique(path: pathlib.Path, kind: str) -> pathlib.Path:
  return path.parent / f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def temp_path(path: str | os.PathLike) -> pathlib.Path:
  """A fresh temp name next to `path`: `.<name>.tmp-<pid>-<8 hex digits>`."""
  return _unique(pathlib.Path(path), "tmp")


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return False  # our own leftovers are never in progress when we look (writes are synchronous)
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove(p: pathlib.Path) -> None:
  if p.is_dir() and not p.is_symlink():
    shutil.rmtree(p, ignore_errors=True)
  else:
    p.unlink(missing_ok=True)


def _fsync_dir(directory: pathlib.Path) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _fsync_tree(root: pathlib.Path) -> None:
  for dirpath, _, filenames in os.walk(root):
    for f in filenames:
      fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
      try:
        os.fsync(fd)
      finally:
        os.close(fd)
    _fsync_dir(pathlib.Path(dirpath))


# ---- single files -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[Any]:
  """Context manager yielding a file object whose contents replace `path` atomically on a clean exit.

  Args:
    path: final file (its parent directory is created).
    mode: "wb" or "w".
    encoding: for text mode (default utf-8).

  On an exception the temp file is removed and `path` is left as it was.
  """
  if mode not in ("wb", "w"):
    raise ValueError(f"open_atomic mode must be 'wb' or 'w', got {mode!r}")
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = temp_path(path)
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
  try:
    with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Atomically writes `data` to `path`. Returns the path."""
  with open_atomic(path, "wb") as f:
    f.write(data)
  return pathlib.Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> pathlib.Path:
  """Atomically writes `text` to `path`. Returns the path."""
  with open_atomic(path, "w", encoding=encoding) as f:
    f.write(text)
  return pathlib.Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = True) -> pathlib.Path:
  """Atomically writes `obj` as JSON (a trailing newline included). Returns the path."""
  return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def save_npz(path: str | os.PathLike, arrays: Mapping[str, Any], compressed: bool = False) -> pathlib.Path:
  """Atomically writes `arrays` as an `.npz` (numpy's zip of `.npy` members). Returns the path."""
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  with open_atomic(path, "wb") as f:
    (np.savez_compressed if compressed else np.savez)(f, **arrays)
  return pathlib.Path(path)


def save_npy(path: str | os.PathLike, array: Any) -> pathlib.Path:
  """Atomically writes one array as `.npy` (byte-identical for identical arrays). Returns the path."""
  with open_atomic(path, "wb") as f:
    np.save(f, np.asarray(array), allow_pickle=False)
  return pathlib.Path(path)


# ---- directories ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a fresh temp directory next to `path`; on a clean exit it is fsynced and renamed to `path`.

  An existing `path` is replaced by `replace_directory` (old moved aside, new renamed in, old deleted); a kill
  between those two renames is repaired by `recover_directory`. On an exception the temp directory is deleted.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = temp_path(path)
  os.mkdir(tmp, 0o777)  # the umask applies (mkdtemp would make it 0700)
  try:
    yield tmp
    _fsync_tree(tmp)
    replace_directory(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def replace_directory(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """Renames directory `src` to `dst`, replacing an existing `dst` (moved to `.<dst>.old-<pid>-<hex>` first)."""
  src, dst = pathlib.Path(src), pathlib.Path(dst)
  if dst.exists():
    old = _unique(dst, "old")
    os.replace(dst, old)
    os.replace(src, dst)  # a kill before this line leaves `old` and `src`: see recover_directory
    _fsync_dir(dst.parent)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(src, dst)
    _fsync_dir(dst.parent)


def leftovers(path: str | os.PathLike) -> list[tuple[str, int, pathlib.Path]]:
  """`(kind, pid, path)` of the temp ("tmp") and moved-aside ("old") leftovers of `path`, newest first."""
  path = pathlib.Path(path)
  if not path.parent.is_dir():
    return []
  out = []
  for p in path.parent.iterdir():
    m = _LEFTOVER.match(p.name)
    if m and m.group("name") == path.name:
      out.append((m.group("kind"), int(m.group("pid")), p))
  return sorted(out, key=lambda t: t[2].stat().st_mtime, reverse=True)


def leftover_targets(directory: str | os.PathLike) -> set[str]:
  """Names of the final entries in `directory` that have temp or moved-aside leftovers (final entry or not)."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return set()
  return {m.group("name") for p in directory.iterdir() if (m := _LEFTOVER.match(p.name))}


def recover_directory(path: str | os.PathLike, is_complete: Callable[[pathlib.Path], bool] = os.path.isdir
                      ) -> str | None:
  """Repairs `path` after a kill inside `atomic_directory` / `replace_directory`; returns what it did or None.

  * `path` complete: leftovers of dead processes (and of this one) are deleted.
  * `path` missing or incomplete: the newest complete temp directory (a save that finished writing but was killed
    before its rename) is renamed to `path`, else the newest complete moved-aside old copy; then the rest is swept.
  Leftovers of live processes are never touched.

  Args:
    path: the directory.
    is_complete: whether a candidate directory is a complete copy (e.g. its completion marker exists).
  """
  path = pathlib.Path(path)
  found = [(k, pid, p) for k, pid, p in leftovers(path) if not _pid_alive(pid)]
  if not found:
    return None
  action = None
  if not (path.is_dir() and is_complete(path)):
    for kind in ("tmp", "old"):
      cand = [p for k, _, p in found if k == kind and is_complete(p)]
      if cand:
        if path.exists():
          _remove(path)
        os.replace(cand[0], path)
        _fsync_dir(path.parent)
        action = f"restored '{path}' from '{cand[0].name}' (a save was interrupted between its renames)"
        break
  for _, _, p in found:
    if p.exists():
      _remove(p)
  return action or f"removed {len(found)} leftover(s) of interrupted saves of '{path}'"


def remove_stale_temps(directory: str | os.PathLike) -> list[pathlib.Path]:
  """Deletes `.*.tmp-<pid>-*` / `.*.old-<pid>-*` entries of dead processes in `directory`. Returns them."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return []
  out = []
  for p in directory.iterdir():
    m = _LEFTOVER.match(p.name)
    if m and not _pid_alive(int(m.group("pid"))):
      _remove(p)
      out.append(p)
  return out


# ---- checked reads ----------------------------------------------------------------------------------------------
def _size(path: pathlib.Path) -> int:
  try:
    return path.stat().st_size
  except OSError:
    return -1


def read_json(path: str | os.PathLike) -> Any:
  """Parses the JSON file `path`.

  Raises:
    FileNotFoundError: `path` does not exist.
    CorruptFileError: empty, not UTF-8, or invalid JSON (names line/column and the size).
  """
  path = pathlib.Path(path)
  raw = path.read_bytes()
  if not raw.strip():
    raise CorruptFileError(path, f"empty ({len(raw)} bytes); it was truncated or never completely written")
  try:
    return json.loads(raw.decode("utf-8"))
  except UnicodeDecodeError as e:
    raise CorruptFileError(path, f"not UTF-8 text ({e})") from e
  except json.JSONDecodeError as e:
    raise CorruptFileError(path, f"invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); the file has "
                                 f"{len(raw)} bytes (truncated?)") from e


def load_npz(path: str | os.PathLike, required: Iterable[str] = ()) -> dict[str, np.ndarray]:
  """Reads every array of the `.npz` file `path` (no pickles) into memory.

  Args:
    path: the file.
    required: array names that must be present.

  Raises:
    FileNotFoundError: `path` does not exist.
    CorruptFileError: not a zip (truncated), a member fails its CRC or does not parse, or `required` arrays miss.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"no such file: '{path}'")
  try:
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
      raise CorruptFileError(path, f"not an .npz archive (it holds a single {type(z).__name__})")
    with z:
      out = {k: np.asarray(z[k]) for k in z.files}
  except CorruptFileError:
    raise
  except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, zlib.error, io.UnsupportedOperation) as e:
    raise CorruptFileError(path, f"{type(e).__name__}: {e} ({_size(path)} bytes)") from e
  missing = [k for k in required if k not in out]
  if missing:
    raise CorruptFileError(path, f"lacks arrays {missing} (it has {sorted(out)})")
  return out
