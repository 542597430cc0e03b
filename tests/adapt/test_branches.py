"""Counterfactual branches: the trunk episode is untouched, a noise-free branch is the trunk's own future, a noisy
one leaves it from the branch point, and each branch holds the trunk's last H steps as its history."""

import types

import jax
import numpy as np
import pytest

from simdist_jax.adapt import branches
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import recorder as rec
from simdist_jax.envs.registry import make_real_env, make_task

H, T, H_PLAN = 3, 4, 3


class _Schedule:
  """Open-loop a_t = 0.8 sin(0.3 t); its "plan" after a call is the schedule's next h actions (as the planner's
  state.planner.mean is its emitted plan), so a noise-free branch replays exactly what the trunk will do."""

  def __init__(self, dims):
    self.dims = dict(dims)
    self.state = types.SimpleNamespace(planner=types.SimpleNamespace(mean=np.zeros((H_PLAN, 1), np.float32)))

  def reset(self, key):
    self.t = 0

  def replace_last_action(self, applied):
    pass

  def __call__(self, proprio, extero=None, command=None):
    a = lambda t: 0.8 * np.sin(0.3 * t)  # noqa: E731
    self.state.planner.mean = np.array([[a(self.t + k)] for k in range(H_PLAN)], np.float32)
    self.t += 1
    return np.array([a(self.t - 1)], np.float32)


def _episode(env, ctrl, directory, seed=7):
  r = rec.EpisodeRecorder(directory, ctrl.dims)
  if hasattr(ctrl, "start"):
    ctrl.start(seed)
  out = evaluation.run_episode(env, ctrl, jax.random.PRNGKey(seed), r, meta={"seed": seed})
  return out, rec.load_episodes(directory, ctrl.dims)[0][0]


def _with_and_without(setup, tmp_path, points, sigma):
  """The same episode without and with branching (2 branches per point): (plain, branched, wrapper, dims, length)."""
  env, dims, length = setup
  plain = _episode(env, _Schedule(dims), tmp_path / "plain")
  wrap = branches.BranchingController(_Schedule(dims), env, tmp_path / "br", H, T, points=points, per_point=2,
                                      sigma=sigma, low=-1.0, high=1.0, episode_length=length)
  return plain, _episode(env, wrap, tmp_path / "trunk"), wrap, dims, length


@pytest.fixture(scope="module")
def setup(cartpole_cfg):
  return make_real_env(cartpole_cfg, "sim"), make_task(cartpole_cfg).dims, int(cartpole_cfg.env.episode_length)


def test_noise_free_branch_is_the_trunks_future_and_the_trunk_is_untouched(setup, tmp_path):
  # Past the plan's h steps a branch repeats its last step, so with sigma 0 it equals the trunk for h steps.
  (plain, trunk), (out, trunk_b), wrap, dims, length = _with_and_without(setup, tmp_path, points=3, sigma=0.0)
  assert out["return"] == plain["return"] and out["steps"] == plain["steps"]
  for k in ("proprio", "action"):
    np.testing.assert_array_equal(trunk_b[k], trunk[k])  # branching restored the twin exactly every time
  eps = rec.load_episodes(tmp_path / "br", dims)[0]
  assert len(eps) == 6 and wrap.recorded == 6
  assert sorted(ep["meta"]["seed"] for ep in eps) == [7000 + i for i in range(6)]
  for ep in eps:
    t = int(ep["meta"]["branch_step"])
    n_hist = min(H, t)
    assert 0 <= t <= length - T - 2 and len(ep["action"]) == n_hist + T + 1
    np.testing.assert_array_equal(ep["proprio"][:n_hist], trunk["proprio"][t - n_hist:t])   # the trunk's history
    np.testing.assert_array_equal(ep["action"][:n_hist], trunk["action"][t - n_hist:t])
    np.testing.assert_array_equal(ep["proprio"][n_hist], trunk["proprio"][t])   # branched from the trunk's state
    # noise-free: the plan's first h steps are the trunk's own next actions, so the branch is the trunk's future
    np.testing.assert_allclose(ep["action"][n_hist:n_hist + H_PLAN], trunk["action"][t:t + H_PLAN], atol=1e-7)
    np.testing.assert_allclose(ep["proprio"][n_hist:n_hist + H_PLAN + 1], trunk["proprio"][t:t + H_PLAN + 1],
                               atol=1e-6)


def test_noisy_branches_differ_from_the_trunk_after_the_branch_point(setup, tmp_path):
  (_, trunk), (_, trunk_b), _, dims, length = _with_and_without(setup, tmp_path, points=2, sigma=0.5)
  env = setup[0]
  np.testing.assert_array_equal(trunk_b["proprio"], trunk["proprio"])
  eps = rec.load_episodes(tmp_path / "br", dims)[0]
  for ep in eps:
    t, n_hist = int(ep["meta"]["branch_step"]), min(H, int(ep["meta"]["branch_step"]))
    np.testing.assert_array_equal(ep["proprio"][n_hist], trunk["proprio"][t])
    assert np.abs(ep["action"][n_hist:] - trunk["action"][t:t + T + 1]).max() > 0.05
    assert np.abs(ep["proprio"][n_hist + 2] - trunk["proprio"][t + 2]).max() > 1e-4  # the actions moved the state
    assert np.all(np.abs(ep["action"]) <= 1.0)
  a, b = (ep for ep in eps if ep["meta"]["branch_step"] == eps[0]["meta"]["branch_step"])
  assert not np.array_equal(a["action"], b["action"])  # two branches per point, two noise draws
  with pytest.raises(ValueError, match="per_point"):
    branches.BranchingController(_Schedule(dims), env, tmp_path / "x", H, T, 1, 0, 0.1, -1.0, 1.0, length)
