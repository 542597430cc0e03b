"""Generation: noise schedule, policy mixture, expert flag, label alignment, reproducibility (toy env stand-ins)."""

import functools

import jax
import numpy as np

from tests.data import CRITIC_B, CRITIC_W, DT, generator


@functools.lru_cache(maxsize=None)
def rollout(seed: int = 0) -> tuple[dict, dict]:
  """All 3 chunks (300 steps x 40 envs) in float32 straight from the generator, plus per-env constants."""
  _, _, _, gcfg, (init_fn, chunk_fn) = generator()
  gs = init_fn(jax.random.PRNGKey(seed))
  consts = {"never": np.asarray(gs.never), "sigma": np.asarray(gs.sigma), "noised0": np.asarray(gs.noised)}
  parts = []
  for _ in range(gcfg.num_shards):
    gs, out = chunk_fn(gs)
    parts.append(jax.device_get(out))
  return {k: np.concatenate([p[k] for p in parts], 0) for k in parts[0]}, consts


def _runs(x: np.ndarray) -> list[tuple[int, int, bool]]:
  """(value, length, touches_end) of maximal runs of a 1-D array."""
  cuts = np.flatnonzero(x[1:] != x[:-1]) + 1
  starts = np.concatenate([[0], cuts])
  ends = np.concatenate([cuts, [x.size]])
  return [(int(x[s]), int(e - s), e == x.size) for s, e in zip(starts, ends, strict=False)]


def test_noise_schedule_lengths_and_never_noised_share():
  steps, consts = rollout()
  _, _, _, gcfg, _ = generator()
  noised = steps["noised"]  # [S, N]
  n = noised.shape[1]
  never = consts["never"]
  # Never-noised share: exactly round(0.1 * 40) = 4 envs, and they have no noisy step at all.
  assert never.sum() == 4
  assert noised[:, never].sum() == 0
  # Every other env alternates; complete runs (not cut by the end of the recording) lie in their inclusive ranges.
  noisy_lens, clean_lens = [], []
  for j in np.flatnonzero(~never):
    for val, length, at_end in _runs(noised[:, j]):
      if not at_end:
        (noisy_lens if val else clean_lens).append(length)
  noisy_lens, clean_lens = np.array(noisy_lens), np.array(clean_lens)
  assert noisy_lens.min() >= 1 and noisy_lens.max() <= 8, (noisy_lens.min(), noisy_lens.max())
  assert clean_lens.min() >= 5 and clean_lens.max() <= 20, (clean_lens.min(), clean_lens.max())
  # Uniform lengths: mean 4.5 (sd 2.29) and 12.5 (sd 4.61); bounds are > 5 standard errors wide.
  assert len(noisy_lens) > 300 and len(clean_lens) > 300
  assert abs(noisy_lens.mean() - 4.5) < 5 * 2.29 / np.sqrt(len(noisy_lens)), noisy_lens.mean()
  assert abs(clean_lens.mean() - 12.5) < 5 * 4.61 / np.sqrt(len(clean_lens)), clean_lens.mean()
  assert set(np.unique(noisy_lens)) == set(range(1, 9))  # both ends of the inclusive range are reached
  # About half of the eligible envs start noisy (36 envs, binomial(36, 0.5): 18 +- 3; allow +-9).
  assert abs(int(consts["noised0"].sum()) - 18) <= 9
  assert not consts["noised0"][never].any()
  # sigma per env and action dim within [0.1, 1.0].
  assert consts["sigma"].shape == (n, 1)
  assert consts["sigma"].min() >= 0.1 and consts["sigma"].max() <= 1.0


def test_expert_flag_iff_applied_equals_expert_action():
  steps, _ = rollout()
  eq = np.all(steps["action"] == steps["expert_action"], axis=-1)
  np.testing.assert_array_equal(steps["expert_flag"].astype(bool), eq)
  expert = steps["policy_id"] == 3
  clean = steps["noised"] == 0
  # Clean expert steps always carry the flag; noised steps only when clipping makes them identical.
  assert steps["expert_flag"][expert & clean].all()
  sat = steps["expert_flag"].astype(bool) & ~(expert & clean)
  assert np.all(np.abs(steps["action"][sat]) == 1.0)  # such coincidences only happen at the clip bounds
  share = steps["expert_flag"].mean()
  assert 0.25 < share < 0.6, share  # ~ p_expert (0.5) x clean share (~0.75), plus saturation coincidences
  # Applied actions are clipped to the bounds, and the raw policies do exceed them sometimes.
  assert np.abs(steps["action"]).max() <= 1.0
  assert (np.abs(steps["action"]) == 1.0).mean() > 0.01


def test_policy_mixture_and_episode_bookkeeping():
  steps, _ = rollout()
  ep, pid = steps["episode_id"], steps["policy_id"]
  n = ep.shape[1]
  first_pid = {}
  for j in range(n):
    for val, _length, _ in _runs(ep[:, j]):
      seg = pid[:, j][ep[:, j] == val]
      assert np.all(seg == seg[0]), "policy changed inside an episode"
      assert val % n == j  # global ids: k * N + j
      first_pid[val] = int(seg[0])
    ids = np.unique(ep[:, j])
    np.testing.assert_array_equal(ids, j + n * np.arange(ids.size))  # consecutive per env
  p = np.array(list(first_pid.values()))
  assert len(p) > 200
  share_expert = (p == 3).mean()
  assert abs(share_expert - 0.5) < 4 * 0.5 / np.sqrt(len(p)), share_expert
  counts = np.bincount(p[p != 3], minlength=3)[:3]
  assert counts.min() > 0.6 * counts.mean(), counts  # uniform over the 3 non-expert checkpoints


def test_value_and_reward_alignment():
  """value[k] = V(s_k) at the state where o_k was observed; reward[k] = r(s_k, a_k, s_{k+1})."""
  steps, _ = rollout()
  pos, vel = steps["proprio"][..., 0], steps["proprio"][..., 1]
  c = steps["command"][..., 0]
  v_pre = CRITIC_W[0] * pos + CRITIC_W[1] * vel + CRITIC_W[3] * c + CRITIC_B
  np.testing.assert_allclose(steps["value"], v_pre, rtol=1e-5, atol=1e-5)
  same_ep = steps["episode_id"][1:] == steps["episode_id"][:-1]
  # Post-step value would differ: V(s_{k+1}) != value[k] on most steps.
  assert np.mean(np.abs(steps["value"][:-1] - v_pre[1:])[same_ep] > 1e-3) > 0.5
  # Reward uses the next state of the same episode: r_k = -(pos_{k+1} - c)^2.
  r_next = -((pos[1:] - c[:-1]) ** 2)
  np.testing.assert_allclose(steps["reward"][:-1][same_ep], r_next[same_ep], rtol=1e-5, atol=1e-6)
  # Dynamics sanity: within an episode vel_{k+1} - vel_k has the sign of the applied action a_k.
  dv = (vel[1:] - vel[:-1])[same_ep]
  a = steps["action"][:-1, :, 0][same_ep]
  big = np.abs(a) > 1e-3
  assert np.all(np.sign(dv[big]) == np.sign(a[big]))
  # Exact Euler step: vel_{k+1} = vel_k + DT * a_k / mass with mass in [0.5, 2].
  ratio = dv[big] / (DT * a[big])
  assert ratio.min() > 1 / 2.0 - 1e-3 and ratio.max() < 1 / 0.5 + 1e-3


def test_reproducible_with_seed_and_different_across_seeds():
  _, _, _, _, (init_fn, chunk_fn) = generator()
  a = jax.device_get(chunk_fn(init_fn(jax.random.PRNGKey(0)))[1])
  b = jax.device_get(chunk_fn(init_fn(jax.random.PRNGKey(0)))[1])
  c = jax.device_get(chunk_fn(init_fn(jax.random.PRNGKey(1)))[1])
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  first, _ = rollout()
  np.testing.assert_array_equal(a["proprio"], first["proprio"][:100])
  assert not np.array_equal(a["proprio"], c["proprio"])
