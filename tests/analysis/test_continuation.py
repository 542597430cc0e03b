"""Closed-loop continuations: the planner arm replays the driving episode, probing leaves the episode unchanged,
the switch arm's limits are the other two arms, and the summary pairs hand-made states."""

import jax
import numpy as np
import pytest

from simdist_jax.adapt import evaluation
from simdist_jax.analysis import continuation
from simdist_jax.envs.registry import make_real_env


class _Stateful:
  """A host controller whose whole mutable state is `state` (a step counter and the last applied action), as the
  planner's: the energy pump a = clip(-3 theta_dot cos theta) plus a small term that depends on that state, so a
  continuation that did not restore it would act differently."""

  def __init__(self, gain: float) -> None:
    self.gain, self.state = gain, (0, 0.0)

  def reset(self, key) -> None:
    del key
    self.state = (0, 0.0)

  def replace_last_action(self, applied) -> None:
    self.state = (self.state[0], float(np.asarray(applied).reshape(-1)[0]))

  def __call__(self, proprio, extero=None, command=None):
    n, last = self.state
    p = np.asarray(proprio, np.float64).reshape(-1)
    cos, thetadot = p[1], p[-1]  # CartPole's observed state: x, cos, sin, xdot, thetadot
    a = np.clip(self.gain * thetadot * cos + 0.05 * np.sin(n) + 0.1 * last, -1.0, 1.0)
    self.state = (n + 1, last)
    return np.array([a], np.float32)


def _run(env, probe_or_ctrl, seed):
  steps = []
  out = evaluation.run_episode(env, probe_or_ctrl, jax.random.PRNGKey(seed), max_steps=120,
                               on_step=lambda tr: steps.append(float(tr["reward"])))
  return out, np.asarray(steps)


def test_planner_arm_replays_the_episode_and_probing_changes_nothing(cartpole_cfg):
  env = make_real_env(cartpole_cfg, "real")
  planner, head = _Stateful(-3.0), _Stateful(0.0)
  plain = continuation.ContinuationProbe(planner, head, env, every=10**6, length=1, switch=0)  # probes only t = 0
  base, rewards = _run(env, plain, seed=3)
  probe = continuation.ContinuationProbe(_Stateful(-3.0), _Stateful(0.0), env, every=20, length=15, switch=5)
  out, rewards_probed = _run(env, probe, seed=3)
  assert out["return"] == pytest.approx(base["return"], abs=1e-9)  # the twin and the controllers were restored
  np.testing.assert_allclose(rewards_probed, rewards, atol=1e-9)
  assert [r["t"] for r in probe.rows] == [0, 20, 40, 60, 80, 100]
  for r in probe.rows:  # the planner arm is the driving episode's own next 15 steps
    assert r["planner/steps"] == 15
    assert r["planner/return"] == pytest.approx(float(rewards[r["t"]:r["t"] + 15].sum()), abs=1e-6)
  assert any(abs(r["head/return"] - r["planner/return"]) > 1e-3 for r in probe.rows)  # the arms differ


def test_switch_arm_is_the_head_or_the_planner_at_its_limits(cartpole_cfg):
  env = make_real_env(cartpole_cfg, "sim")
  rows = {}
  for switch in (0, 12):
    probe = continuation.ContinuationProbe(_Stateful(-3.0), _Stateful(0.5), env, every=30, length=12, switch=switch)
    _run(env, probe, seed=5)
    rows[switch] = probe.rows
  for r in rows[0]:
    assert r["switch/return"] == pytest.approx(r["planner/return"], abs=1e-9)
  for r in rows[12]:
    assert r["switch/return"] == pytest.approx(r["head/return"], abs=1e-9)
  with pytest.raises(ValueError, match="switch"):
    continuation.ContinuationProbe(None, None, env, every=5, length=10, switch=11)
  with pytest.raises(ValueError, match="drive"):
    continuation.ContinuationProbe(None, None, env, every=5, length=10, switch=2, drive="oracle")


def test_summary_pairs_states_by_hand():
  def row(p, h, s, failed_head=False):
    return {"t": 0, "planner/return": p, "planner/success_frac": 0.5, "planner/failed": False,
            "head/return": h, "head/success_frac": 0.25, "head/failed": failed_head,
            "switch/return": s, "switch/success_frac": 0.5, "switch/failed": False}
  rows = [row(10.0, 4.0, 9.0), row(20.0, 14.0, 19.0, failed_head=True), row(30.0, 24.0, 29.0)]
  out = continuation.summarize(rows)
  assert out["n_states"] == 3 and out["head/failures"] == 1 and out["planner/return_mean"] == pytest.approx(20.0)
  for k in ("diff", "lo", "hi"):  # every state: head - planner = -6, switch - planner = -1
    assert out[f"head_minus_planner/return/{k}"] == pytest.approx(-6.0)
    assert out[f"switch_minus_planner/return/{k}"] == pytest.approx(-1.0)
  assert out["head_minus_planner/success_frac/diff"] == pytest.approx(-0.25)
