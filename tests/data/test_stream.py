"""Streaming windows (`data.loading = "stream"`): the same batches as the in-memory sampler on hand-made shards,
episode boundaries, and clear errors for missing or corrupt shard files."""

import jax
import numpy as np
import pytest

from simdist_jax.data import storage
from simdist_jax.data import stream
from simdist_jax.data import windows

N, SHARD_STEPS, NUM_SHARDS = 3, 10, 3
DIMS = {"proprio": 3, "extero": 2, "extero_shape": (1, 2), "action": 1, "command": 1}
# Episode lengths per env (each sums to 30 steps; episodes run across the shard boundaries at steps 10 and 20).
LENGTHS = [[4, 13, 13], [30], [9, 2, 11, 8]]


def _chunks(nan_at=None):
  """Time-major chunks of [10, 3, ...]; proprio = (env, step, episode id), exact in float16."""
  S = SHARD_STEPS * NUM_SHARDS
  rng = np.random.default_rng(0)
  ep = np.zeros((S, N), np.int32)
  for j, lens in enumerate(LENGTHS):
    ep[:, j] = np.repeat(np.arange(len(lens)) * N + j, lens)
  steps = np.broadcast_to(np.arange(S)[:, None], (S, N))
  full = {"proprio": np.stack([np.broadcast_to(np.arange(N), (S, N)), steps, ep], -1).astype(np.float32),
          "extero": rng.normal(size=(S, N, 2)).astype(np.float32),
          "action": rng.normal(size=(S, N, 1)).astype(np.float32),
          "command": rng.uniform(-1, 1, (S, N, 1)).astype(np.float32),
          "reward": rng.normal(size=(S, N)).astype(np.float32), "value": rng.normal(size=(S, N)).astype(np.float32),
          "expert_flag": rng.integers(0, 2, (S, N)).astype(np.uint8), "noised": np.zeros((S, N), np.uint8),
          "policy_id": np.zeros((S, N), np.uint8), "episode_id": ep}
  if nan_at is not None:
    key, s, j = nan_at
    full[key][s, j] = np.nan
  return [{k: v[i * SHARD_STEPS:(i + 1) * SHARD_STEPS] for k, v in full.items()} for i in range(NUM_SHARDS)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("handmade")
  man = storage.write_dataset(d, _chunks(nan_at=("value", 14, 2)), DIMS)  # env 2, episode id 8 (steps 11..21)
  assert man["episodes"] == 8 and man["nonfinite"]["value"]["count"] == 1
  return d


def _both(d, **kw):
  kw = dict(H=2, T=3, start_margin=1, end_margin=1, eval_fraction=0.3, seed=0) | kw
  return windows.load_dataset(d, **kw), windows.load_dataset(d, **kw, loading="stream")


def _equal(a, b):
  assert sorted(a) == sorted(b) == sorted(windows.BATCH_KEYS)
  for k in a:
    x, y = np.asarray(a[k]), np.asarray(b[k])
    assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, (k, x.dtype, y.dtype, x.shape, y.shape)
    np.testing.assert_array_equal(x, y, err_msg=k)


@pytest.mark.parametrize("front_pad", [False, True])
def test_stream_gives_the_in_memory_batches(data_dir, front_pad):
  mem, st = _both(data_dir, front_pad=front_pad)
  assert isinstance(mem, windows.WindowDataset) and isinstance(st, stream.StreamWindowDataset)
  assert st.summary() == mem.summary() and st.summary()["rejected_nonfinite"] == 1
  drop_value = [{k: v for k, v in r.items() if k != "value"} for r in mem.rejected]  # NaN != NaN
  assert [{k: v for k, v in r.items() if k != "value"} for r in st.rejected] == drop_value
  assert drop_value == [{"episode_index": 6, "episode_id": 8, "step": 3, "key": "value", "feature": 0}]
  assert np.isnan(st.rejected[0]["value"])
  np.testing.assert_array_equal(st.train_episodes, mem.train_episodes)
  np.testing.assert_array_equal(st.eval_episodes, mem.eval_episodes)
  assert st.dims == mem.dims
  for k in mem.stats:
    np.testing.assert_array_equal(st.stats[k]["mean"], mem.stats[k]["mean"])
  every = np.asarray(mem._starts_train)  # pylint: disable=protected-access
  _equal(mem.gather(every), st.gather(every))  # every training window, padding included
  if front_pad:
    assert (np.asarray(st.gather(every)["mask"]) == 0).any()  # some windows start before their episode
    for i in range(2):  # drawn batches (the trainer's typed keys): the same starts, the same windows
      key = jax.random.fold_in(jax.random.key(7), i)
      _equal(mem.sample(key, 40), st.sample(key, 40))
    # held-out windows: the drawn index maps to the in-memory held-out start table's entry
    idx = np.asarray(stream._draw(key, 40, np.int32(mem.num_eval_windows)))  # pylint: disable=protected-access
    np.testing.assert_array_equal(st.draw_starts(key, 40, eval=True), np.asarray(mem._starts_eval)[idx])
    _equal(st.sample_eval(key, 40), st.gather(st.draw_starts(key, 40, eval=True)))


def test_stream_windows_stay_inside_one_episode(data_dir):
  _, st = _both(data_dir, front_pad=False, eval_fraction=0.0)
  b = st.gather(np.sort(np.asarray(windows.load_dataset(data_dir, 2, 3, 1, 1, 0.0)._starts_train)))
  env, step, ep = (b["proprio"][..., i] for i in range(3))
  assert np.all(ep == ep[:, :1]) and np.all(env == env[:, :1])  # one episode of one env per window
  np.testing.assert_array_equal(np.diff(step, axis=1), 1)  # consecutive steps, across shard boundaries too
  assert ((step[:, 0] < SHARD_STEPS) & (step[:, -1] >= SHARD_STEPS)).any()
  assert 8 not in set(ep[:, 0].astype(int))  # the episode holding NaN is never sampled
  # 1-step margins: episode id 3 (env 0, steps 4..16) has windows starting at steps 5..10.
  assert step[ep == 3].min() == 5 and step[ep == 3].max() == 15
  # n - 7 windows per episode of n steps (L = 6, margins 1 + 1); id 8 (11 steps) rejected; 4 and 2 steps: short.
  assert st.num_train_windows == 38 and st.dropped_short == 2


def test_missing_or_corrupt_shard_names_the_file(data_dir, tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  d = tmp_path / "data"
  shutil.copytree(data_dir, d)
  f = d / "shard_00001" / "extero.npy"
  raw = bytearray(f.read_bytes())
  raw[-1] ^= 0xFF
  f.write_bytes(bytes(raw))
  with pytest.raises(storage.DatasetError, match=f"checksum mismatch for shard file '{f}'"):
    windows.load_dataset(d, 2, 3, loading="stream")
  f.write_bytes(bytes(raw[:-4]))
  with pytest.raises(storage.DatasetError, match=f"truncated or corrupt shard file '{f}'"):
    windows.load_dataset(d, 2, 3, loading="stream", verify=False)
  f.unlink()
  with pytest.raises(storage.DatasetError, match=f"missing shard file '{f}'"):
    windows.load_dataset(d, 2, 3, loading="stream")
  (d / storage.MANIFEST).unlink()
  with pytest.raises(storage.DatasetError, match="missing dataset manifest"):
    windows.load_dataset(d, 2, 3, loading="stream")
  with pytest.raises(ValueError, match=r"data.loading='disk': must be one of \['memory', 'stream'\]"):
    windows.load_dataset(data_dir, 2, 3, loading="disk")



def test_draw_batches_stacks_host_batches_up_to_the_cap(data_dir, monkeypatch):
  """The trainer's host path: K streamed batches in one numpy stack, K cut by the byte cap, batch i drawn with
  fold_in(key, start + i)."""
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  st = windows.load_dataset(data_dir, 2, 3, 1, 1, 0.3, 0, front_pad=True, loading="stream")
  key = jax.random.key(3)
  size = sum(v.nbytes for v in st.sample(key, 40).values())
  monkeypatch.setattr(train, "_PRESAMPLE_BYTES", 2 * size + 1)
  data, k = train.draw_batches(st, key, 5, 10, 40)
  assert k == 3 and all(isinstance(v, np.ndarray) and v.shape[:2] == (3, 40) for v in data.values())
  for i in range(k):
    _equal(st.sample(jax.random.fold_in(key, 5 + i), 40), {kk: v[i] for kk, v in data.items()})
  assert train.draw_batches(st, key, 5, 2, 40)[1] == 2

@pytest.mark.slow  # two tiny pretraining runs (~1 min on the loaded 2-core box)
def test_pretraining_on_streamed_windows_matches_in_memory(data_dir, tmp_path):
  """`pretrain` on the streaming dataset (host-drawn [K, B] chunks) follows the in-memory run (batches drawn inside
  the scan): the same batches, so the same loss curve up to float rounding of two compiled programs."""
  import json  # pylint: disable=import-outside-toplevel

  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  from tests.world_model import tiny_config  # pylint: disable=import-outside-toplevel
  curves = {}
  for loading in ("memory", "stream"):
    ds = windows.load_dataset(data_dir, 2, 3, 1, 1, 0.3, 0, front_pad=True, loading=loading)
    assert (train.dataset_sampler(ds)[0] is None) == (loading == "stream")
    cfg = tiny_config(ds.dims, history=2, horizon=3, num_steps=12, batch_size=16, log_every=4, eval_every=12,
                      checkpoint_every=12, eval_batches=1)
    res = train.pretrain(cfg, str(tmp_path / loading), ds)
    lines = [json.loads(x) for x in (tmp_path / loading / "metrics.jsonl").read_text().splitlines()]
    curves[loading] = {x["step"]: x["train/loss"] for x in lines if "train/loss" in x} | {
        "eval": res.metrics["eval/loss"]}
  assert sorted(curves["memory"], key=str) == sorted(curves["stream"], key=str) and len(curves["memory"]) == 4
  for k, v in curves["memory"].items():
    np.testing.assert_allclose(curves["stream"][k], v, rtol=1e-5, err_msg=str(k))
  print(f"train/eval loss, memory: {curves['memory']}; stream: {curves['stream']}")


def test_mapped_shards_read_what_load_all_reads(data_dir):
  """Rows by (step, env) across shards equal the concatenated arrays, with files closed and reopened (2 open at
  most) and the resident budget passed (pages dropped) on the way."""
  man, full = storage.load_all(data_dir, ["proprio", "reward", "episode_id"])
  shards = storage.MappedShards(data_dir, man, ["proprio", "reward", "episode_id"], max_open=2, resident_bytes=1)
  rng = np.random.default_rng(1)
  steps, envs = rng.integers(0, 30, 200), rng.integers(0, N, 200)
  got = shards.gather(["proprio", "reward", "episode_id"], steps, envs)
  for k, v in got.items():
    assert v.dtype == full[k].dtype
    np.testing.assert_array_equal(v, full[k][steps, envs], err_msg=k)
  np.testing.assert_array_equal(shards.block("proprio", 2, 3, 5), full["proprio"][23:25])
  assert shards.releases > 0 and len(shards._maps) <= 2  # pylint: disable=protected-access
  shards.close()
  np.testing.assert_array_equal(shards.rows("reward", steps, envs), full["reward"][steps, envs])


@pytest.mark.slow  # two mixed-batch compiles (~10 s on the loaded 2-core box)
def test_mixed_batches_with_a_streaming_part_match_in_memory(data_dir):
  """`MixedDataset` (finetuning's sim mix) over a streaming sim dataset: no pure sampler, the same batches."""
  mem, st = _both(data_dir, front_pad=True)
  rng = np.random.default_rng(0)
  eps = [{"proprio": rng.normal(size=(n, 3)), "extero": rng.normal(size=(n, 2)), "action": rng.normal(size=(n, 1)),
          "command": rng.normal(size=(n, 1))} for n in (9, 12)]
  real = windows.from_episodes(eps, 2, 3, mem.stats, 0.0, jax.random.key(0), extero_shape=(1, 2))
  a, b = windows.MixedDataset(real, mem, 0.25), windows.MixedDataset(real, st, 0.25)
  assert a.sampler() is not None and b.sampler() is None
  key = jax.random.key(5)
  _equal(a.sample(key, 16), b.sample(key, 16))
