"""fileio: atomic writes (unique temp names, fsync + rename, modes that follow the umask, cleanup on error),
directory swaps and their recovery, and reads of truncated/corrupt files that name the file."""

import json
import os
import pathlib

import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax import fileio


@pytest.fixture
def umask022():
  old = os.umask(0o022)
  yield
  os.umask(old)


def _mode(p):
  return pathlib.Path(p).stat().st_mode & 0o777


def test_every_writer_gives_mode_0644_under_umask_022(tmp_path, umask022):
  paths = [fileio.write_text(tmp_path / "a.txt", "x"), fileio.write_bytes(tmp_path / "b.bin", b"\x00\x01"),
           fileio.write_json(tmp_path / "c.json", {"k": 1}), fileio.save_npz(tmp_path / "d.npz", {"x": np.ones(3)}),
           fileio.save_npy(tmp_path / "e.npy", np.arange(4))]
  config_lib.atomic_write_text(tmp_path / "report.md", "# hi\n")  # the old name delegates
  for p in paths + [tmp_path / "report.md"]:
    assert oct(_mode(p)) == oct(0o644), p  # mkstemp would give 0o600
  with fileio.atomic_directory(tmp_path / "dir") as d:
    (d / "f").write_text("y")
  assert oct(_mode(tmp_path / "dir")) == oct(0o755)  # mkdtemp would give 0o700
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json", "d.npz", "dir", "e.npy",
                                                         "report.md"]  # no temp files left


def test_mode_follows_a_stricter_umask_too(tmp_path):
  old = os.umask(0o077)
  try:
    fileio.write_text(tmp_path / "private.txt", "x")
  finally:
    os.umask(old)
  assert oct(_mode(tmp_path / "private.txt")) == oct(0o600)


def test_temp_names_are_unique_and_carry_the_pid(tmp_path):
  names = {fileio.temp_path(tmp_path / "manifest.json").name for _ in range(200)}
  assert len(names) == 200
  for n in names:
    assert n.startswith(f".manifest.json.tmp-{os.getpid()}-")


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
  fileio.write_text(tmp_path / "f.txt", "old")
  with pytest.raises(RuntimeError):
    with fileio.open_atomic(tmp_path / "f.txt", "w") as f:
      f.write("half of the new")
      raise RuntimeError("disk full")
  assert (tmp_path / "f.txt").read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_read_json_names_the_truncated_file(tmp_path):
  p = tmp_path / "stage" / "config.json"
  fileio.write_json(p, {"model": {"lr": 0.001, "horizon": 8}})
  assert fileio.read_json(p) == {"model": {"lr": 0.001, "horizon": 8}}
  full = p.read_text()
  p.write_text(full[: len(full) // 2])
  with pytest.raises(fileio.CorruptFileError, match=f"corrupt or truncated file '{p}': invalid JSON at line") as e:
    fileio.read_json(p)
  assert isinstance(e.value, ValueError) and e.value.path == str(p)
  p.write_text("")
  with pytest.raises(fileio.CorruptFileError, match=r"empty \(0 bytes\)"):
    fileio.read_json(p)
  with pytest.raises(FileNotFoundError):
    fileio.read_json(tmp_path / "missing.json")


def test_load_npz_names_the_truncated_or_bitflipped_file(tmp_path):
  p = tmp_path / ".resume.npz"
  fileio.save_npz(p, {"a": np.arange(1000, dtype=np.float32), "progress": np.array("{}")})
  got = fileio.load_npz(p, required=("a",))
  np.testing.assert_array_equal(got["a"], np.arange(1000, dtype=np.float32))
  raw = p.read_bytes()
  p.write_bytes(raw[: len(raw) // 2])
  with pytest.raises(fileio.CorruptFileError, match=f"'{p}'.*BadZipFile"):
    fileio.load_npz(p)
  flipped = bytearray(raw)
  flipped[200] ^= 0xFF  # inside array a's data: the zip member's CRC no longer matches
  p.write_bytes(bytes(flipped))
  with pytest.raises(fileio.CorruptFileError, match=f"'{p}'.*CRC"):
    fileio.load_npz(p)
  fileio.save_npz(p, {"a": np.ones(2)})
  with pytest.raises(fileio.CorruptFileError, match=r"lacks arrays \['progress'\]"):
    fileio.load_npz(p, required=("a", "progress"))
  np.save(tmp_path / "x.npy", np.ones(2))
  os.replace(tmp_path / "x.npy", tmp_path / "x.npz")
  with pytest.raises(fileio.CorruptFileError, match="not an .npz archive"):
    fileio.load_npz(tmp_path / "x.npz")


def _complete(p):
  return (p / "meta.json").is_file()


def _make(d, tag):
  d.mkdir()
  (d / "meta.json").write_text(json.dumps({"tag": tag}))


def test_recover_after_a_kill_between_the_two_renames(tmp_path):
  # replace_directory moves `ckpt` to .ckpt.old-<pid>-<hex>, then renames the new copy in; a kill in between
  # leaves no `ckpt`, the complete old copy and the complete new temp copy of a dead process.
  dead = 2 ** 22 + 12345  # above pid_max's default: no such process
  _make(tmp_path / f".ckpt.old-{dead}-aa", "old")
  _make(tmp_path / f".ckpt.tmp-{dead}-bb", "new")
  action = fileio.recover_directory(tmp_path / "ckpt", _complete)
  assert "restored" in action and ".ckpt.tmp-" in action
  assert json.loads((tmp_path / "ckpt" / "meta.json").read_text()) == {"tag": "new"}
  assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
  # An incomplete new copy (killed while writing): the old one comes back.
  os.replace(tmp_path / "ckpt", tmp_path / f".ckpt.old-{dead}-cc")
  (tmp_path / f".ckpt.tmp-{dead}-dd").mkdir()
  fileio.recover_directory(tmp_path / "ckpt", _complete)
  assert json.loads((tmp_path / "ckpt" / "meta.json").read_text()) == {"tag": "new"}  # (the previous "old")
  assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
  # A live process's leftovers are never touched; nothing to do returns None.
  live = tmp_path / f".ckpt.tmp-{os.getppid()}-ee"
  live.mkdir()
  assert fileio.recover_directory(tmp_path / "ckpt", _complete) is None and live.is_dir()


def test_remove_stale_temps_only_removes_dead_processes(tmp_path):
  dead = 2 ** 22 + 54321
  (tmp_path / f".shard_00001.tmp-{dead}-0a1b").mkdir()
  (tmp_path / f".x.npz.tmp-{dead}-ff").write_bytes(b"half")
  (tmp_path / f".y.tmp-{os.getppid()}-01").write_bytes(b"in progress")
  (tmp_path / "keep.tmp-1-2").write_bytes(b"not hidden: not ours")
  removed = fileio.remove_stale_temps(tmp_path)
  assert sorted(p.name for p in removed) == [f".shard_00001.tmp-{dead}-0a1b", f".x.npz.tmp-{dead}-ff"]
  assert sorted(p.name for p in tmp_path.iterdir()) == [f".y.tmp-{os.getppid()}-01", "keep.tmp-1-2"]
