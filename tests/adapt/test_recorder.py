"""Recorder: atomic per-episode files, validation on load, aggregation with H-step front padding."""

import numpy as np
import pytest

from simdist_jax.adapt import recorder as rec

DIMS = {"proprio": 3, "extero": 0, "action": 2, "command": 1, "extero_shape": ()}


def _record(r, n, offset=0.0, seed=1):
  r.start_episode(seed=seed)
  for t in range(n):
    r.record(np.arange(3) + t + offset, np.zeros(0), [t, -t], [0.5], t * 0.02)
  return r.end_episode()


def test_round_trip_and_index_order(tmp_path):
  r = rec.EpisodeRecorder(tmp_path, DIMS)
  p0 = _record(r, 7)
  p1 = _record(r, 4, offset=100.0)
  assert p0.name == "episode_000000.npz" and p1.name == "episode_000001.npz"
  assert not list(tmp_path.glob(".*"))  # no temp files left
  eps, skipped = rec.load_episodes(tmp_path, DIMS)
  assert skipped == [] and len(eps) == 2
  np.testing.assert_array_equal(eps[0]["proprio"][3], [3, 4, 5])
  np.testing.assert_array_equal(eps[0]["action"][:, 1], -np.arange(7))
  np.testing.assert_allclose(eps[0]["time_s"], np.arange(7) * 0.02)
  assert eps[1]["proprio"][0, 0] == 100.0 and eps[0]["meta"] == {"seed": 1}
  assert np.isclose(rec.total_minutes(eps, 0.02), 11 * 0.02 / 60)
  # no reward / value / privileged state is recorded
  assert set(eps[0]) == {"proprio", "extero", "action", "command", "time_s", "meta", "path"}


def test_truncated_and_wrong_shape_files_are_reported_and_skipped(tmp_path, capsys):
  r = rec.EpisodeRecorder(tmp_path, DIMS)
  good = _record(r, 5)
  trunc = _record(r, 5)
  trunc.write_bytes(trunc.read_bytes()[:60])
  np.savez(tmp_path / "episode_000002.npz", proprio=np.zeros((5, 4)), extero=np.zeros((5, 0)),
           action=np.zeros((5, 2)), command=np.zeros((5, 1)), time_s=np.zeros(5))
  eps, skipped = rec.load_episodes(tmp_path, DIMS)
  assert [e["path"] for e in eps] == [str(good)]
  reasons = {pathlib_name(s.path): s.reason for s in skipped}
  assert "unreadable" in reasons["episode_000001.npz"]
  assert "'proprio' has shape (5, 4), expected (5, 3)" in reasons["episode_000002.npz"]
  out = capsys.readouterr().out
  assert "episode_000001.npz" in out and "episode_000002.npz" in out


def pathlib_name(p):
  return p.rsplit("/", 1)[-1]


def test_refuses_nonfinite_episode(tmp_path):
  r = rec.EpisodeRecorder(tmp_path, DIMS)
  r.start_episode()
  r.record([0, np.nan, 0], np.zeros(0), [0, 0], [0], 0.0)
  with pytest.raises(ValueError, match="non-finite"):
    r.end_episode()
  assert not list(tmp_path.glob("*.npz"))


def test_aggregate_front_pads_with_first_observation(tmp_path):
  import jax
  r = rec.EpisodeRecorder(tmp_path, DIMS)
  _record(r, 12)
  eps, _ = rec.load_episodes(tmp_path, DIMS)
  H, T = 3, 4
  ds = rec.aggregate(eps, H=H, T=T, stats=None, eval_fraction=0.0, key=jax.random.PRNGKey(0))
  batch = ds.sample(jax.random.PRNGKey(1), 64)
  L = H + T + 1
  assert batch["proprio"].shape == (64, L, 3) and batch["action"].shape == (64, L, 2)
  # every window's history is either real steps or copies of o_0 with zero actions, in order
  p, a = np.asarray(batch["proprio"][..., 0]), np.asarray(batch["action"][..., 0])
  for w in range(64):
    steps = p[w]  # o_k[0] = k for real steps, 0 (= o_0) for padding
    first_real = int(np.argmax(steps > 0)) if (steps > 0).any() else L
    assert np.all(steps[:first_real] == 0)
    np.testing.assert_array_equal(np.diff(steps[max(first_real - 1, 0):]), 1)
    assert np.all(a[w][:max(first_real - 1, 0)] == 0)
  # windows starting inside the padding exist (history reaches before the episode start)
  assert (p[:, 0] == 0).any()


def test_episode_files_follow_the_umask(tmp_path):
  import os
  old = os.umask(0o022)
  try:
    p = _record(rec.EpisodeRecorder(tmp_path, DIMS), 3)
  finally:
    os.umask(old)
  assert oct(p.stat().st_mode & 0o777) == oct(0o644)


def test_rerecording_replaces_exactly_the_missing_seed(tmp_path, capsys):
  seeds = [100, 101, 102, 103]
  r = rec.EpisodeRecorder(tmp_path, DIMS)
  paths = [_record(r, 5, offset=10.0 * s, seed=s) for s in seeds]
  assert rec.missing_seeds(tmp_path, seeds, DIMS) == []
  paths[1].write_bytes(paths[1].read_bytes()[:80])  # seed 101's file is truncated
  _record(r, 5, offset=0.0, seed=103)  # and seed 103 was recorded twice (the old refill bug)
  missing = rec.missing_seeds(tmp_path, seeds, DIMS)
  assert missing == [101]
  assert sorted(p.name for p in (tmp_path / rec.QUARANTINE).iterdir()) == ["episode_000001.npz", "episode_000004.npz"]
  out = capsys.readouterr().out
  assert "episode_000001.npz" in out and "second episode of seed 103" in out
  for s in missing:  # what the adapt refill does
    _record(r, 5, offset=10.0 * s, seed=s)
  eps, skipped = rec.load_episodes(tmp_path, DIMS)
  assert skipped == [] and sorted(e["meta"]["seed"] for e in eps) == seeds  # each seed exactly once
  by_seed = {e["meta"]["seed"]: e for e in eps}
  assert by_seed[101]["proprio"][0, 0] == 1010.0 and by_seed[103]["proprio"][0, 0] == 1030.0  # the first 103 kept
  assert rec.missing_seeds(tmp_path, seeds, DIMS) == [] and rec.missing_seeds(tmp_path, seeds + [104], DIMS) == [104]
