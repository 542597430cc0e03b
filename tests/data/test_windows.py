"""Windows: valid starts, episode split, sampler slices, front padding, error messages."""

import jax
import numpy as np
import pytest

from simdist_jax.data import storage
from simdist_jax.data import windows
from tests.data import generated_dataset


def test_valid_starts_hand_worked():
  # Episodes of lengths 20, 9, 30 at offsets 0, 20, 29; L = 5, margins 5/5 -> need n >= 15.
  offsets, lengths = np.array([0, 20, 29]), np.array([20, 9, 30])
  starts, ep = windows.valid_starts(offsets, lengths, 5, 5, 5)
  # ep 0: s in [5, 20 - 5 - 5] = [5, 10]; ep 1 dropped; ep 2: [34, 29 + 30 - 10] = [34, 49]
  np.testing.assert_array_equal(starts, list(range(5, 11)) + list(range(34, 50)))
  np.testing.assert_array_equal(ep, [0] * 6 + [2] * 16)
  o, n = windows.episode_segments(np.array([7, 7, 7, 3, 3, 9]))
  np.testing.assert_array_equal(o, [0, 3, 5])
  np.testing.assert_array_equal(n, [3, 2, 1])


def _synthetic(lengths, H=2, T=3, margins=(1, 1), eval_fraction=0.0, front_pad=0, **kw):
  """Flat arrays whose proprio encodes (episode, step): proprio = [episode_id, step, ...]."""
  ids = np.concatenate([np.full(n, i + 100, np.int32) for i, n in enumerate(lengths)])
  step = np.concatenate([np.arange(n) for n in lengths]).astype(np.float32)
  m = ids.size
  arrays = {"proprio": np.stack([ids.astype(np.float32), step], -1), "extero": np.zeros((m, 0), np.float16),
            "action": step[:, None] * 0.5, "command": np.ones((m, 1), np.float32), "reward": step * 2,
            "value": step * 3, "expert_flag": (np.arange(m) % 2).astype(np.uint8), "mask": np.ones(m, np.uint8)}
  arrays.update(kw)
  dims = {"proprio": 2, "extero": 0, "extero_shape": (), "action": 1, "command": 1}
  return windows.WindowDataset(arrays, ids, H, T, {}, dims, eval_fraction, jax.random.PRNGKey(0), *margins,
                               front_pad=front_pad), arrays


def test_sampler_returns_exact_slices_and_never_crosses_episodes():
  ds, arrays = _synthetic([12, 8, 30, 5, 17])
  key = jax.random.PRNGKey(3)
  starts = np.asarray(ds.draw_starts(key, 64))
  batch = ds.sample(key, 64)
  assert set(batch) == set(windows.BATCH_KEYS)
  for k, v in batch.items():
    assert v.dtype == np.float32 and v.shape[:2] == (64, 6), (k, v.shape, v.dtype)
    expect = np.stack([np.asarray(arrays[k][s:s + 6], np.float32) for s in starts])
    np.testing.assert_array_equal(np.asarray(v), expect)
  # Every window lies in one episode, 1 step after its start and 1 before its end (margins 1/1).
  ep = np.asarray(batch["proprio"][..., 0])
  assert np.all(ep == ep[:, :1])
  step = np.asarray(batch["proprio"][..., 1])
  lengths = {100: 12, 101: 8, 102: 30, 103: 5, 104: 17}
  assert step[:, 0].min() >= 1
  assert all(step[i, -1] <= lengths[int(ep[i, 0])] - 2 for i in range(64))
  assert 103 not in set(ep[:, 0].astype(int))  # 5 < L + 2 = 8: dropped
  assert ds.dropped_short == 1 and ds.num_train_windows == (12 - 7) + (8 - 7) + (30 - 7) + (17 - 7)
  # Exhaustive: every valid start gathered; none crosses an episode.
  allw = ds.gather(np.asarray(ds._starts_train))
  e = np.asarray(allw["proprio"][..., 0])
  assert np.all(e == e[:, :1])


def test_train_eval_split_is_by_episode():
  ds, _ = _synthetic([20] * 10, eval_fraction=0.3)
  assert len(ds.eval_episodes) == 3 and len(ds.train_episodes) == 7
  assert not set(ds.eval_episodes) & set(ds.train_episodes)
  tr = np.asarray(ds.sample(jax.random.PRNGKey(0), 256)["proprio"][:, 0, 0])
  ev = np.asarray(ds.sample_eval(jax.random.PRNGKey(0), 256)["proprio"][:, 0, 0])
  assert set(tr.astype(int)) <= set(ds.train_episodes) and set(ev.astype(int)) <= set(ds.eval_episodes)
  assert len(set(tr.astype(int))) == 7


def test_window_longer_than_every_episode_names_numbers():
  with pytest.raises(ValueError, match=r"H\+T\+1 = 2\+3\+1 = 6 plus margins 1\+1 needs episodes of >= 8 steps, "
                                       r"but the longest usable episode has 7 steps"):
    _synthetic([5, 7, 6])


def test_nonfinite_episode_is_rejected_with_location():
  ds, arrays = _synthetic([12, 12, 12])
  r = arrays["reward"].copy()
  r[12 + 4] = np.nan  # episode 1 (id 101), step 4
  ds2, _ = _synthetic([12, 12, 12], reward=r)
  assert ds2.rejected == [{"episode_index": 1, "episode_id": 101, "step": 4, "key": "reward", "feature": 0,
                           "value": ds2.rejected[0]["value"]}]
  assert np.isnan(ds2.rejected[0]["value"])
  assert ds2.num_train_windows == ds.num_train_windows - 5
  ep = np.asarray(ds2.sample(jax.random.PRNGKey(0), 200)["proprio"][:, 0, 0])
  assert 101 not in set(ep.astype(int))
  assert np.isfinite(np.asarray(ds2.sample(jax.random.PRNGKey(1), 200)["reward"])).all()


def _real(n, p=3, e=4, seed=0):
  rng = np.random.default_rng(seed)
  return {"proprio": rng.normal(size=(n, p)), "extero": rng.normal(size=(n, e)), "action": rng.normal(size=(n, 2)),
          "command": rng.normal(size=(n, 1))}


def test_from_episodes_front_padding():
  H, T = 3, 2
  eps = [_real(6, seed=0), _real(10, seed=1)]
  ds = windows.from_episodes(eps, H, T, None, 0.0, jax.random.PRNGKey(0))
  # padded lengths 9 and 13; starts s in [o, o + N - T - 1]: 4 + 8 = 12 windows.
  assert ds.num_train_windows == (6 - T) + (10 - T)
  allw = ds.gather(np.asarray(ds._starts_train))
  mask = np.asarray(allw["mask"])
  assert np.all(mask[:, H:] == 1.0)  # the current step and every target are recorded steps
  assert mask[:, :H].min() == 0.0  # some history reaches into the padding
  # The first window of episode 0: H copies of o_0, then o_0..o_T; zero actions/commands in the padding.
  w0 = ds.gather([0])
  np.testing.assert_allclose(np.asarray(w0["proprio"][0]), np.concatenate([np.repeat(eps[0]["proprio"][:1], H, 0),
                                                                          eps[0]["proprio"][:T + 1]]), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(w0["action"][0, :H]), 0.0)
  np.testing.assert_allclose(np.asarray(w0["action"][0, H:]), eps[0]["action"][:T + 1], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(w0["mask"][0]), [0, 0, 0, 1, 1, 1])
  for k in ("reward", "value", "expert_flag"):
    np.testing.assert_array_equal(np.asarray(allw[k]), 0.0)
  # Stats computed over recorded steps only; reward/value are identity scalers.
  np.testing.assert_allclose(ds.stats["proprio"]["mean"], np.concatenate([e["proprio"] for e in eps]).mean(0),
                             rtol=1e-5)
  assert float(ds.stats["reward"]["std"]) == 1.0
  assert ds.dims == {"proprio": 3, "extero": 4, "extero_shape": (4,), "action": 2, "command": 1}
  # Same batch structure as a sim dataset.
  assert set(ds.sample(jax.random.PRNGKey(0), 4)) == set(windows.BATCH_KEYS)


def test_from_episodes_errors():
  with pytest.raises(ValueError, match=r"H\+T\+1 = 3\+5\+1 = 9 .* >= 9 steps, but the longest usable episode has "
                                       r"8 steps"):
    windows.from_episodes([_real(4), _real(5)], 3, 5, None, 0.0, jax.random.PRNGKey(0))
  bad = _real(6)
  bad["extero"][4, 2] = np.inf
  with pytest.raises(ValueError, match=r"non-finite value inf in real episode 1 at step 4, key 'extero', feature 2"):
    windows.from_episodes([_real(6), bad], 2, 2, None, 0.0, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"episode 0 is missing keys \['command'\]"):
    windows.from_episodes([{k: v for k, v in _real(6).items() if k != "command"}], 2, 2, None, 0.0,
                          jax.random.PRNGKey(0))


def test_load_generated_dataset():
  d = generated_dataset()
  ds = windows.load_dataset(d, H=4, T=4, start_margin=5, end_margin=5, eval_fraction=0.1, seed=0)
  man = storage.read_manifest(d)
  assert ds.dims == {"proprio": 2, "extero": 3, "extero_shape": (3,), "action": 1, "command": 1}
  assert ds.stats["reward"]["mean"].shape == () and ds.stats["proprio"]["std"].shape == (2,)
  assert not set(ds.train_episodes) & set(ds.eval_episodes) and len(ds.eval_episodes) >= 1
  b = ds.sample(jax.random.PRNGKey(0), 32)
  assert b["proprio"].shape == (32, 9, 2) and b["extero"].shape == (32, 9, 3) and b["reward"].shape == (32, 9)
  # Windows match the stored arrays of one (env, episode): recompute from the shards.
  _, raw = storage.load_all(d, ["proprio", "episode_id", "value"])
  pro = np.swapaxes(raw["proprio"], 0, 1).reshape(-1, 2).astype(np.float32)
  eid = np.swapaxes(raw["episode_id"], 0, 1).reshape(-1)
  starts = np.asarray(ds.draw_starts(jax.random.PRNGKey(0), 32))
  for i, s in enumerate(starts):
    np.testing.assert_array_equal(np.asarray(b["proprio"][i]), pro[s:s + 9])
    assert np.all(eid[s - 5:s + 9 + 5] == eid[s])  # margins inside the episode
  assert ds.num_train_windows + ds.num_eval_windows > 5000
  assert man["episodes"] == len(np.unique(eid))


def test_mixed_dataset_draws_the_configured_share_from_each_source():
  H, T = 2, 2
  key = jax.random.PRNGKey(0)
  # Tag the sources: every real proprio is in [-10, 10] (normal), every "sim" proprio is offset by +1000.
  real = windows.from_episodes([_real(12, seed=0), _real(15, seed=1)], H, T, None, 0.0, key)
  sim_eps = [dict(_real(20, seed=2), proprio=_real(20, seed=2)["proprio"] + 1000.0)]
  sim = windows.from_episodes(sim_eps, H, T, None, 0.0, key)
  mixed = windows.MixedDataset(real, sim, 0.25)
  assert mixed.split(32) == (24, 8) and mixed.split(6) == (4, 2)  # round(1.5) = 2
  b = mixed.sample(jax.random.PRNGKey(1), 32)
  assert set(b) == set(windows.BATCH_KEYS) and b["proprio"].shape == (32, H + T + 1, 3)
  from_sim = np.asarray(b["proprio"]).max(axis=(1, 2)) > 500.0
  np.testing.assert_array_equal(from_sim, [False] * 24 + [True] * 8)
  assert windows.MixedDataset(real, sim, 0.0).sample(jax.random.PRNGKey(1), 8)["proprio"].max() < 500.0
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    windows.MixedDataset(real, sim, 1.0)
  with pytest.raises(ValueError, match="H, T differ"):
    windows.MixedDataset(real, windows.from_episodes(sim_eps, H, T + 1, None, 0.0, key), 0.5)
  with pytest.raises(ValueError, match="dims\\['proprio'\\] differ"):
    windows.MixedDataset(real, windows.from_episodes([_real(20, p=4)], H, T, None, 0.0, key), 0.5)


def test_valid_starts_with_front_padding_hand_worked():
  # Episodes of lengths 20, 9 at offsets 0, 20; L = 5 (H = 2, T = 2), front_pad = H = 2, margins 0 / 1.
  # ep 0: s in [0 - 2, 20 - 1 - 5] = [-2, 14] (current steps t = s + 2 in [0, 16]); ep 1: [18, 23].
  starts, ep = windows.valid_starts(np.array([0, 20]), np.array([20, 9]), 5, 0, 1, front_pad=2)
  np.testing.assert_array_equal(starts, list(range(-2, 15)) + list(range(18, 24)))
  np.testing.assert_array_equal(ep, [0] * 17 + [1] * 6)
  with pytest.raises(ValueError, match="front_pad"):
    windows.valid_starts(np.array([0]), np.array([9]), 5, 0, 0, front_pad=-1)


def test_front_padded_sim_windows_reproduce_the_controller_context_at_t0():
  """A sim window whose current step is an episode's first step holds exactly what the controller feeds the model
  at t = 0 (`controller.history_inputs`: H copies of o_0, zero actions), and equals the real-data padding
  (`from_episodes`) of the same episode, key by key."""
  from simdist_jax.planner import controller as ctrl_lib  # pylint: disable=import-outside-toplevel
  from simdist_jax.planner import mppi  # pylint: disable=import-outside-toplevel
  H, T = 3, 2
  lengths = [12, 9, 15]
  ds, arrays = _synthetic(lengths, H=H, T=T, margins=(0, 0), front_pad=H)
  offsets = np.cumsum([0] + lengths[:-1])
  # Every episode's first step is a current step; the windows' current steps cover every step up to n - T - 1.
  t_cur = np.asarray(ds._starts_train) + H
  for o, n in zip(offsets, lengths, strict=False):
    assert set(range(o, o + n - T)) <= set(t_cur.tolist())
  assert ds.num_train_windows == sum(n - T for n in lengths)
  w = ds.gather([offsets[1] - H])  # current step = first step of episode 1
  p0 = arrays["proprio"][offsets[1]]
  np.testing.assert_array_equal(np.asarray(w["proprio"][0, :H + 1]), np.repeat(p0[None], H + 1, 0))
  np.testing.assert_array_equal(np.asarray(w["action"][0, :H]), 0.0)
  np.testing.assert_array_equal(np.asarray(w["mask"][0]), [0] * H + [1] * (T + 1))
  np.testing.assert_array_equal(np.asarray(w["reward"][0, H:]), arrays["reward"][offsets[1]:offsets[1] + T + 1])
  # The controller's context at step 0 is the same (proprio history, action history, o_t).
  cfg = mppi.PlannerConfig(num_samples=4, num_prior_samples=1, num_elites=2, horizon=T)
  st = ctrl_lib.init_controller(cfg, {"proprio": 2, "action": 1}, H, jax.random.PRNGKey(0))
  ph, ah = ctrl_lib.history_inputs(st, p0)
  np.testing.assert_array_equal(np.asarray(w["proprio"][0, :H]), np.asarray(ph))
  np.testing.assert_array_equal(np.asarray(w["action"][0, :H]), np.asarray(ah))
  # Real-data padding of the same episode (physically padded copy) gives the same window.
  ep1 = {k: arrays[k][offsets[1]:offsets[1] + lengths[1]] for k in ("proprio", "extero", "action", "command")}
  real = windows.from_episodes([ep1], H=H, T=T, stats={}, eval_fraction=0.0, key=jax.random.PRNGKey(0))
  wr = real.gather([0])
  for k in ("proprio", "extero", "action", "command", "mask"):
    np.testing.assert_array_equal(np.asarray(w[k]), np.asarray(wr[k]), err_msg=k)
  # Sampling draws padded windows too, and never mixes two episodes.
  b = ds.sample(jax.random.PRNGKey(1), 256)
  ep = np.asarray(b["proprio"][..., 0])
  assert np.all(ep == ep[:, :1])
  assert (np.asarray(b["mask"][:, 0]) == 0).any()
  np.testing.assert_array_equal(np.asarray(b["mask"][:, H:]), 1.0)


def test_front_pad_must_be_zero_or_h():
  with pytest.raises(ValueError, match="front_pad must be 0 or H=2"):
    _synthetic([12], front_pad=1)
