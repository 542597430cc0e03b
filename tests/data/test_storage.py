"""On-disk format: resume after interruption, checksums, truncation, missing manifest, compactness."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from simdist_jax.data import storage
from tests.data import generate_into, generated_dataset


def _files(d: pathlib.Path) -> dict:
  return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*.npy"))}


def test_resume_after_interruption_is_byte_identical(tmp_path):
  full = generated_dataset()
  out = tmp_path / "resumed"
  assert generate_into(out, stop_after_shards=1) is None  # "interrupted" after shard 0 of 3
  assert (out / "shard_00000").is_dir() and not (out / "shard_00001").exists()
  assert (out / ".resume.npz").exists() and not (out / storage.MANIFEST).exists()
  with pytest.raises(storage.DatasetError, match="missing dataset manifest .*resume"):
    storage.read_manifest(out)
  # A half-written shard left by a killed run (its unique hidden temp dir) must not matter, and is swept.
  leftover = out / f".shard_00001.tmp-{2 ** 22 + 77}-0f0f"
  leftover.mkdir()
  (leftover / "proprio.npy").write_bytes(b"garbage")
  man = generate_into(out)
  assert man is not None and not (out / ".resume.npz").exists() and not leftover.exists()
  a, b = _files(full), _files(out)
  assert sorted(a) == sorted(b) and len(a) == 3 * 10 + 2
  for k in a:
    assert a[k] == b[k], f"{k} differs after resume"
  ref = json.loads((full / storage.MANIFEST).read_text())
  assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in ref["shards"]]
  assert man["scaler"] == ref["scaler"]
  # Re-running a complete generation is a no-op that verifies the data.
  assert generate_into(out)["transitions"] == 40 * 300


def test_truncated_resume_file_is_discarded_and_regenerated(tmp_path):
  full = generated_dataset()
  out = tmp_path / "resumed"
  assert generate_into(out, stop_after_shards=2) is None
  resume = out / ".resume.npz"
  resume.write_bytes(resume.read_bytes()[:300])  # e.g. a power loss on a file system without ordered writes
  logs = []
  from simdist_jax.data.generate import generate
  from tests.data import generator
  env, ladder, critic, gcfg, gen = generator()
  man = generate(env, ladder, critic, gcfg, out, seed=0, config_record={"tag": "toy"}, log=logs.append,
                 generator=gen)
  warning = [l for l in logs if "WARNING" in l]
  assert len(warning) == 1 and f"'{resume}'" in warning[0] and "regenerating from shard 0" in warning[0]
  assert (out / ".resume.npz.corrupt").exists() and not resume.exists()
  a, b = _files(full), _files(out)
  assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a)  # byte-identical to an uninterrupted run
  assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in storage.read_manifest(full)["shards"]]


def test_corrupt_manifest_names_the_file(tmp_path):
  d = _copy(tmp_path)
  raw = (d / storage.MANIFEST).read_text()
  (d / storage.MANIFEST).write_text(raw[: len(raw) // 2])
  with pytest.raises(storage.DatasetError, match=f"corrupt dataset manifest '{d / storage.MANIFEST}': invalid JSON"):
    storage.read_manifest(d)


def test_manifest_contents_and_compactness():
  man = storage.read_manifest(generated_dataset())
  assert man["transitions"] == 12000 and man["num_envs"] == 40 and len(man["shards"]) == 3
  lay = man["layout"]
  assert lay["proprio"]["dtype"] == "float16" and lay["action"]["dtype"] == "float32"
  assert lay["expert_flag"]["dtype"] == "uint8" and lay["policy_id"]["dtype"] == "uint8"
  # toy layout: (2 + 3 + 1) x 2 B obs + 4 B action + 4 reward + 4 value + 1 flag + 1 noised + 1 policy + 4 episode
  assert man["bytes_per_transition"] == 12 + 4 + 4 + 4 + 1 + 1 + 1 + 4
  # Go2 layout projection: (35 + 315 + 3) x 2 + 12 x 4 + 4 + 4 + 1 + 1 + 1 + 4 = 769 B < 1 KB.
  go2 = storage.layout({"proprio": 35, "extero": 315, "action": 12, "command": 3},
                       {"proprio": "float16", "extero": "float16", "command": "float16"}, 12)
  assert storage.bytes_per_transition(go2) == 769
  # float16 errors are measured and within half an ulp: |x| < 2 here, so <= 2^-11 * 2 = 9.8e-4.
  for k in ("proprio", "extero", "command"):
    err = np.asarray(man["float16_error"][k]["max_abs"])
    assert err.max() <= 2 ** -10 + 1e-9 and err.max() > 0
    assert man["float16_error"][k]["ok"]
  assert man["nonfinite"] == {}
  assert abs(man["expert_flag_share"] - 0.48) < 0.15
  scaler = json.loads((generated_dataset() / "scaler.json").read_text())
  assert scaler == man["scaler"] and len(scaler["proprio"]["mean"]) == 2


def _copy(tmp_path) -> pathlib.Path:
  dst = tmp_path / "copy"
  shutil.copytree(generated_dataset(), dst)
  return dst


def test_truncated_shard_names_file_and_sizes(tmp_path):
  d = _copy(tmp_path)
  f = d / "shard_00001" / "extero.npy"
  size = f.stat().st_size
  f.write_bytes(f.read_bytes()[:-100])
  with pytest.raises(storage.DatasetError, match=rf"truncated .*shard_00001/extero.npy.*{size - 100} bytes.*{size}"):
    storage.verify(d)


def test_checksum_mismatch_names_file(tmp_path):
  d = _copy(tmp_path)
  f = d / "shard_00002" / "value.npy"
  raw = bytearray(f.read_bytes())
  raw[-1] ^= 0xFF
  f.write_bytes(bytes(raw))
  with pytest.raises(storage.DatasetError, match=r"checksum mismatch .*shard_00002/value.npy"):
    storage.load_all(d)


def test_missing_manifest_and_missing_shard(tmp_path):
  d = _copy(tmp_path)
  shutil.rmtree(d / "shard_00000")
  with pytest.raises(storage.DatasetError, match=r"missing shard file .*shard_00000/"):
    storage.verify(d)
  (d / storage.MANIFEST).unlink()
  with pytest.raises(storage.DatasetError, match=r"missing dataset manifest .*manifest.json"):
    storage.load_all(d)
  (d / storage.MANIFEST).write_text("{not json")
  with pytest.raises(storage.DatasetError, match="corrupt dataset manifest"):
    storage.read_manifest(d)


def test_nonfinite_locations_are_reported():
  x = np.zeros((4, 3, 2), np.float32)
  x[2, 1, 0] = np.nan
  x[3, 0, 1] = np.inf
  loc = storage.nonfinite_locations({"proprio": x, "flag": np.zeros((4, 3), np.uint8)}, step_offset=100)
  assert loc == {"proprio": {"count": 2, "first": [[102, 1, 0], [103, 0, 1]]}}
  # float16 overflow is detected by encode's caller: 1e5 is finite in float32, inf in float16.
  lay = storage.layout({"proprio": 1, "extero": 0, "action": 1, "command": 0},
                       {"proprio": "float16", "extero": "float16", "command": "float16"}, 2)
  host = {"proprio": np.array([[[1e5]]], np.float32), "extero": np.zeros((1, 1, 0), np.float32),
          "command": np.zeros((1, 1, 0), np.float32), "action": np.zeros((1, 1, 1), np.float32),
          "reward": np.zeros((1, 1), np.float32), "value": np.zeros((1, 1), np.float32),
          "expert_flag": np.zeros((1, 1), np.uint8), "noised": np.zeros((1, 1), np.uint8),
          "policy_id": np.zeros((1, 1), np.int32), "episode_id": np.zeros((1, 1), np.int32)}
  stored, _ = storage.encode(host, lay)
  assert np.isinf(stored["proprio"]).all()
  assert storage.nonfinite_locations({"proprio": stored["proprio"]})["proprio"]["first"] == [[0, 0, 0]]
