"""Adaptation loop on a tiny config: frozen trees untouched, rounds resumable, results complete."""

import json

import jax
import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax import stages
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import loop
from simdist_jax.envs.registry import make_task
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib
from tests.conftest import CARTPOLE

TINY = ["env.episode_length=16", "model.history=3", "model.horizon=4", "model.latent_dim=16",
        "model.encoder.proprio_hidden=[32]", "model.encoder.latent_hidden=[32]",
        "model.dynamics_net.num_layers=1", "model.dynamics_net.num_heads=2", "model.dynamics_net.mlp_dim=32",
        "model.reward_net.num_heads=2", "model.reward_net.mlp_dim=32", "model.value_net.num_heads=2",
        "model.value_net.mlp_dim=32", "model.policy_net.num_layers=1", "model.policy_net.num_heads=2",
        "model.policy_net.mlp_dim=32", "model.num_steps=1", "planner.num_samples=16", "planner.iterations=2",
        "planner.num_elites=4", "planner.horizon=4", "adapt.rounds=2", "adapt.episodes_per_round=1",
        "adapt.eval_episodes=2", "adapt.sim_eval_episodes=3", "adapt.heldout_episodes=1", "adapt.finetune_steps=3",
        "adapt.oracle_episodes=1", "adapt.counterfactual_points=2", "model.finetune.batch_size=8"]


# The three tests on `tiny_run` run the whole adapt stage (planner, oracle, counterfactual and finetuning compiles:
# 115 s of fixture set-up on the 2-core Xeon VM of 2026-12-03), so they are in the slow suite (`make test-slow`, which CI also runs), as is the
# sim-mix test, which runs round 0 of the stage; the loop's pieces are tested below in the default suite.
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY)
  wd = tmp_path_factory.mktemp("run")
  dims = make_task(cfg).dims
  wm = model_lib.make_world_model(cfg.model, dims)
  variables = wm.init(jax.random.PRNGKey(0))
  ck = ckpt_lib.Checkpointer(str(paths.model_dir(wd) / "checkpoints"), keep=1)
  ck.save(1, variables, cfg.model, dims, kind="pretrain")
  ck.close()
  summary = stages.run_one("adapt", cfg, wd)  # through the stage table: writes adapt/config.json first
  return cfg, wd, variables, summary


@pytest.mark.slow
def test_results_are_complete_and_frozen_trees_untouched(tiny_run):
  cfg, wd, variables0, summary = tiny_run
  assert summary["complete"] and len(summary["rounds"]) == 3
  assert summary["frozen_unchanged_all_rounds"] is True
  r2 = summary["rounds"][2]
  assert r2["real_episodes"] == 2 and np.isclose(r2["real_minutes"], 2 * 16 * 0.02 / 60)
  assert len(r2["heldout/pred_loss_per_step"]) == 4
  r0 = summary["rounds"][0]  # the sim reference runs adapt.sim_eval_episodes, the real evaluation eval_episodes
  assert len(r0["sim/returns"]) == 3 and len(r0["real/returns"]) == 2
  assert r0["sim/return_mean"] == pytest.approx(np.mean(r0["sim/returns"]))
  # the policy head alone on the same sim seeds: does the search beat pi where the model was trained?
  assert len(r0["sim/policy_head/returns"]) == 3
  assert summary["sim_policy_head_return"] == pytest.approx(np.mean(r0["sim/policy_head/returns"]))
  for r in summary["rounds"]:  # the action-effect instrument: a relative error >= 0 against a baseline > 0
    assert r["counterfactual/effect_error"] >= 0 and r["counterfactual/action_blind_mean"] > 0
  # every round reports success, persistence and the counterfactual loss; round 0 the reference lines
  for r in summary["rounds"]:
    assert len(r["real/success"]) == 2 and all(0.0 <= x <= 1.0 for x in r["real/success"])
    assert len(r["heldout/persistence_per_step"]) == 4 and r["heldout/persistence_mean"] > 0
    assert r["heldout/pred_over_persistence"] == pytest.approx(r["heldout/pred_loss_mean"]
                                                               / r["heldout/persistence_mean"])
    assert r["counterfactual/pred_loss_mean"] > 0 and r["planner/nonfinite_fallbacks"] == 0
    rho = r["counterfactual/return_spearman"]
    assert np.isnan(rho) or -1.0 <= rho <= 1.0
  assert len(r0["oracle/heads/returns"]) == 1 and len(r0["reference/policy_head/returns"]) == 2
  assert {"reference/zero_action/return_mean", "reference/energy_pump/return_mean"} <= set(r0)
  # the frozen value along every recorded episode, with the outcome the recorder stored in its meta
  traces = summary["value_traces"]
  assert len(traces) == 2 and all(len(t["value"]) == 16 - 4 and 0.0 <= t["success_frac"] <= 1.0 for t in traces)
  vs0 = r2["real/return_vs_round0"]
  assert vs0["diff"] == pytest.approx(np.mean(r2["real/returns"]) - np.mean(r0["real/returns"]))
  # gap closed is measured against the oracle on its own episodes (the first oracle_episodes seeds)
  if summary["gap_closed_fraction"] is not None:
    o, a, b = r0["oracle/heads/returns"][0], r0["real/returns"][0], r2["real/returns"][0]
    assert summary["gap_closed_fraction"] == pytest.approx((b - a) / (o - a))
  # the finetuned model: dynamics changed, every other leaf bitwise identical
  v2, _, _ = ckpt_lib.load(str(paths.adapt_dir(wd) / "rounds" / "round_02" / "model"))
  for name in ("encoder", "history", "reward", "value", "policy"):
    for a, b in zip(jax.tree.leaves(variables0["params"][name]), jax.tree.leaves(v2["params"][name]), strict=False):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  changed = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree.leaves(variables0["params"]["dynamics"]), jax.tree.leaves(v2["params"]["dynamics"]), strict=False)]
  assert any(changed)
  saved = json.loads((paths.adapt_dir(wd) / "adapt_results.json").read_text())
  assert saved["pred_loss_round0"] == summary["pred_loss_round0"]


@pytest.mark.slow
def test_rerun_skips_completed_rounds_and_resumes(tiny_run, capsys):
  cfg, wd, _, summary = tiny_run
  # simulate an interruption during round 2: its marker and model are gone, its episode stays.
  r2 = paths.adapt_dir(wd) / "rounds" / "round_02"
  (r2 / "round.json").unlink()
  n_eps = len(list((r2 / "episodes").glob("episode_*.npz")))
  again = loop.run_stage(cfg, wd)
  out = capsys.readouterr().out
  assert "round 0: complete, skipped" in out and "round 1: complete, skipped" in out
  assert "collected episode" not in out  # the round-2 episode on disk was reused, not re-collected
  assert len(list((r2 / "episodes").glob("episode_*.npz"))) == n_eps
  assert again["rounds"][1] == summary["rounds"][1]
  assert (r2 / "round.json").exists()


@pytest.mark.slow
def test_different_config_refused(tiny_run):
  cfg, wd, _, _ = tiny_run
  other = config_lib.load_config(CARTPOLE + ":small", TINY + ["adapt.finetune_steps=4"])
  with pytest.raises(config_lib.ConfigError, match=r"adapt\.finetune_steps: 3 -> 4"):
    stages.run_one("adapt", other, wd)


def test_prediction_loss_per_step_hand_check():
  """A model whose encoder is the identity-ish stand-in: loss per step equals the hand-computed MSE."""
  class WM:
    def context(self, v, ph, ah, p, e):
      return p
    def predict_latents(self, v, ctx, acts):
      return ctx[None, :] + np.arange(1, acts.shape[0] + 1)[:, None] * 0.0  # predicts "no change"
    def encode(self, v, p, e):
      return p
  ep = {"proprio": np.arange(10, dtype=np.float32)[:, None], "extero": np.zeros((10, 0), np.float32),
        "action": np.zeros((10, 1), np.float32)}
  per = evaluation.prediction_losses(WM(), None, [ep], H=2, T=3)
  np.testing.assert_allclose(per["model"], [1.0, 4.0, 9.0], rtol=1e-6)  # (k)^2 for a unit-slope ramp
  # "no change" IS persistence: the baseline equals the model here
  np.testing.assert_allclose(per["persistence"], [1.0, 4.0, 9.0], rtol=1e-6)


def test_persistence_baseline_hand_case():
  """A model that predicts the ramp exactly has loss 0 while persistence (z_hat_{t+k} = z_t) pays k^2 on a
  unit-slope ramp z_t = t, and c^2 k^2 on a ramp of slope c (hand-computed)."""
  class WM:
    def context(self, v, ph, ah, p, e):
      return p
    def predict_latents(self, v, ctx, acts):
      return ctx[None, :] + 2.0 * np.arange(1, acts.shape[0] + 1, dtype=np.float32)[:, None]
    def encode(self, v, p, e):
      return p
  ep = {"proprio": 2.0 * np.arange(12, dtype=np.float32)[:, None], "extero": np.zeros((12, 0), np.float32),
        "action": np.zeros((12, 1), np.float32)}
  per = evaluation.prediction_losses(WM(), None, [ep], H=2, T=3)
  np.testing.assert_allclose(per["model"], 0.0, atol=1e-6)
  np.testing.assert_allclose(per["persistence"], [4.0, 16.0, 36.0], rtol=1e-6)


def test_counterfactual_return_ranking_hand_case():
  """Integrator stand-in z_{k+1} = z_k + a_k with returns = the sum of the latents: a model with the true dynamics
  ranks every state's chunks exactly as the true futures do (Spearman 1), one with the sign of the actions flipped
  ranks them in reverse (-1), and its latent loss is above persistence's while the true model's is 0."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from simdist_jax.planner import mppi  # pylint: disable=import-outside-toplevel

  class WM:
    def __init__(self, sign):
      self.sign = sign
    def context(self, v, ph, ah, p, e):
      return p
    def predict_latents(self, v, ctx, acts):
      return ctx[None, :] + self.sign * jnp.cumsum(acts, axis=0)
    def encode(self, v, p, e):
      return p
    def predict_returns(self, v, ctx, z, acts, cmd):
      return z[:, 0], z[:, 0]

  T, rng = 3, np.random.default_rng(0)
  p_t = np.repeat(rng.normal(size=(2, 1)), 4, axis=0).astype(np.float32)  # one state per group of 4 chunks
  acts = rng.normal(size=(8, T, 1)).astype(np.float32)
  w = {"ph": np.zeros((8, 2, 1), np.float32), "ah": np.zeros((8, 2, 1), np.float32), "p_t": p_t,
       "e_t": np.zeros((8, 0), np.float32), "acts": acts, "p_fut": p_t[:, None, :] + np.cumsum(acts, axis=1),
       "e_fut": np.zeros((8, T, 0), np.float32), "cmd": np.zeros((8, T + 1, 0), np.float32),
       "group": np.repeat([0, 1], 4)}
  cfg = mppi.PlannerConfig(num_samples=4, num_prior_samples=0, num_elites=1, horizon=T, discount=1.0)
  good = evaluation.counterfactual_losses(WM(1.0), None, [w], cfg)
  bad = evaluation.counterfactual_losses(WM(-1.0), None, [w], cfg)
  assert good["return_spearman"] == pytest.approx(1.0) and bad["return_spearman"] == pytest.approx(-1.0)
  np.testing.assert_allclose(good["model"], 0.0, atol=1e-6)
  assert bad["model"].mean() > good["persistence"].mean() > 0
  # Action-effect instrument: the unperturbed chunk is zero, so the true effect of chunk a is cumsum(a) and the
  # action-blind prediction (the unperturbed future, z_t) misses it entirely.
  w.update(acts_base=np.zeros_like(acts), p_base=np.repeat(p_t[:, None, :], T, 1), e_base=w["e_fut"])
  good = evaluation.counterfactual_losses(WM(1.0), None, [w], cfg)
  bad = evaluation.counterfactual_losses(WM(-1.0), None, [w], cfg)
  blind = WM(0.0)
  np.testing.assert_allclose(good["action_blind"], np.mean(np.cumsum(acts, axis=1) ** 2, axis=(0, 2)), rtol=1e-5)
  assert good["effect_error"] == pytest.approx(0.0, abs=1e-9)
  assert bad["effect_error"] == pytest.approx(4.0, rel=1e-5)  # predicted effect -d against d: |2d|^2 / |d|^2
  assert evaluation.counterfactual_losses(blind, None, [w], cfg)["effect_error"] == pytest.approx(1.0, rel=1e-5)


def test_value_trace_reads_the_encoded_real_future():
  """With a stand-in whose value of step k is the k-th encoded future observation, the trace is o_{t+1} for every
  t = 0..N-T-1 (the frozen value on encoded real observations, no dynamics involved)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  class WM:
    def context(self, v, ph, ah, p, e):
      return p
    def encode(self, v, p, e):
      return 2.0 * p
    def predict_returns(self, v, ctx, z, acts, cmd):
      assert z.shape == (3, 1) and cmd.shape == (4, 0)
      return jnp.zeros(3), z[:, 0]

  n = 9
  ep = {"proprio": np.arange(n, dtype=np.float32)[:, None] ** 2, "extero": np.zeros((n, 0), np.float32),
        "action": np.zeros((n, 1), np.float32), "command": np.zeros((n, 0), np.float32)}
  (v,) = evaluation.value_traces(WM(), None, [ep], H=2, T=3)
  np.testing.assert_allclose(v, 2.0 * np.arange(1, n - 3 + 1, dtype=np.float32) ** 2)


def test_paired_bootstrap_ci_hand_case():
  before = [10.0, 20.0, 30.0, 40.0]
  out = evaluation.paired_bootstrap_ci([12.0, 22.0, 32.0, 42.0], before)  # every pair +2: the CI is the point
  assert out["diff"] == pytest.approx(2.0) and out["lo"] == pytest.approx(2.0) and out["hi"] == pytest.approx(2.0)
  assert out["excludes_zero"]
  mixed = evaluation.paired_bootstrap_ci([11.0, 19.0, 31.0, 39.0], before)  # +1, -1, +1, -1
  assert mixed["diff"] == pytest.approx(0.0) and mixed["lo"] < 0 < mixed["hi"] and not mixed["excludes_zero"]
  with pytest.raises(ValueError, match="paired"):
    evaluation.paired_bootstrap_ci([1.0], [2.0])


def test_exploration_noise_schedule():
  ex = loop.ExplorationNoise(0.5, noisy_len=(2, 3), clean_len=(4, 6), low=-1.0, high=1.0, seed=0)
  flags, applied = [], []
  for _ in range(2000):
    a, noised = ex(np.array([0.9], np.float32))
    flags.append(noised)
    applied.append(a[0])
  flags, applied = np.array(flags), np.array(applied)
  # interval lengths (the first and last runs may be cut) stay inside the configured inclusive ranges
  edges = np.flatnonzero(np.diff(flags.astype(int))) + 1
  runs = np.split(flags, edges)[1:-1]
  assert {len(r) for r in runs if r[0]} <= {2, 3} and {len(r) for r in runs if not r[0]} <= {4, 5, 6}
  assert 0.25 < flags.mean() < 0.45  # 2.5 / (2.5 + 5) = 1/3 of the steps are noised
  assert np.all(applied[~flags] == np.float32(0.9))  # clean steps pass the action through
  assert np.all(np.abs(applied) <= 1.0) and np.any(applied[flags] == 1.0)  # clipped to the bounds
  assert np.std(applied[flags & (applied < 1.0)]) > 0.2
  per_dim = loop.ExplorationNoise(5.0, (1, 1), (1, 1), low=(-1.0, -0.1), high=(1.0, 0.1), seed=3)
  noised = [a for a, n in (per_dim(np.zeros(2, np.float32)) for _ in range(50)) if n]
  assert noised and np.abs(np.array(noised)[:, 1]).max() == np.float32(0.1)  # per-dimension bounds hold
  assert np.abs(np.array(noised)[:, 0]).max() > 0.1
  off = loop.ExplorationNoise(0.0, (1, 2), (1, 2))
  assert all(not off(np.zeros(1))[1] for _ in range(20))
  with pytest.raises(ValueError, match="noisy_len"):
    loop.ExplorationNoise(0.5, (0, 2), (1, 2))
  with pytest.raises(ValueError, match="sigma"):
    loop.ExplorationNoise(-0.1, (1, 2), (1, 2))


class _FakeEnv:
  """1-D env: state = previous applied action; records what `step` received."""
  dt = 0.02

  class task:  # noqa: N801
    @staticmethod
    def split_state(state):
      return state[:1], np.zeros(0, np.float32), np.zeros(0, np.float32)

    @staticmethod
    def success(metrics):
      return None

  def reset(self, key):
    self.t, self.applied = 0, []
    return {"state": np.zeros(1, np.float32)}

  def step(self, action):
    self.applied.append(np.array(action))
    self.t += 1
    return {"state": np.array(action, np.float32)}, 1.0, self.t >= 40, {"failed": False, "metrics": {}}


class _FakeController:
  """Always proposes 0.25; keeps the history of the actions it is told were applied."""
  def reset(self, key):
    self.hist = []

  def __call__(self, proprio, extero, command):
    self.hist.append(np.array([0.25], np.float32))
    return np.array([0.25], np.float32)

  def replace_last_action(self, applied):
    self.hist[-1] = np.array(applied)


def test_run_episode_records_and_remembers_the_applied_action(tmp_path):
  from simdist_jax.adapt import recorder as rec
  dims = {"proprio": 1, "extero": 0, "action": 1, "command": 0, "extero_shape": ()}
  env, ctrl = _FakeEnv(), _FakeController()
  r = rec.EpisodeRecorder(tmp_path, dims)
  ex = loop.ExplorationNoise(0.5, (3, 5), (3, 5), seed=1)
  out = evaluation.run_episode(env, ctrl, jax.random.PRNGKey(0), r, explore=ex)
  eps, _ = rec.load_episodes(tmp_path, dims)
  recorded = eps[0]["action"][:, 0]
  applied = np.array(env.applied)[:, 0]
  np.testing.assert_array_equal(recorded, applied)  # the file holds what the env received
  np.testing.assert_array_equal(np.array(ctrl.hist)[:, 0], applied)  # and so does the controller's history
  noised = applied != np.float32(0.25)
  assert out["noised_steps"] == int(noised.sum()) and 8 <= out["noised_steps"] <= 32 and out["steps"] == 40


@pytest.mark.slow  # runs round 0 of the loop (planner, oracle, evaluation compiles) first: ~100 s
def test_sim_mix_finetunes_on_real_plus_sim_windows(tmp_path, monkeypatch):
  """With adapt.sim_mix > 0 the round's finetuning batches come from a MixedDataset of the real episodes recorded
  so far and the sim dataset (loaded once), at the configured share."""
  from simdist_jax.data import windows  # pylint: disable=import-outside-toplevel
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY + ["adapt.sim_mix=0.25"])
  dims = make_task(cfg).dims
  wm = model_lib.make_world_model(cfg.model, dims)
  ck = ckpt_lib.Checkpointer(str(paths.model_dir(tmp_path) / "checkpoints"), keep=1)
  ck.save(1, wm.init(jax.random.PRNGKey(0)), cfg.model, dims, kind="pretrain")
  ck.close()
  rng = np.random.default_rng(0)
  sim_ep = {"proprio": rng.normal(size=(40, 5)), "extero": np.zeros((40, 0)), "action": rng.normal(size=(40, 1)),
            "command": np.zeros((40, 0))}
  sim = windows.from_episodes([sim_ep], 3, 4, None, 0.0, jax.random.PRNGKey(0))
  loads, seen = [], []
  monkeypatch.setattr(windows, "load_from_config", lambda c, w: loads.append(w) or sim)

  class Stop(Exception):
    pass

  def fake_finetune(config, variables, dataset, steps, key, **kwargs):
    seen.append(dataset)
    raise Stop

  monkeypatch.setattr(loop, "finetune_variables", fake_finetune)
  with pytest.raises(Stop):
    loop.run_stage(cfg, tmp_path)
  (ds,) = seen
  assert isinstance(ds, windows.MixedDataset) and ds.secondary is sim and ds.share == 0.25
  assert ds.split(8) == (6, 2) and len(loads) == 1
  assert ds.primary.train_episodes.size == 1  # the one real episode of round 1


def test_record_episodes_in_seed_order_into_a_fresh_directory(tmp_path):
  """The instruments' episodes: one file per seed (its seed in the meta, in the given order), and whatever the
  directory held before (another controller's episodes) is gone, never mixed in."""
  from simdist_jax.adapt import recorder as rec
  dims = {"proprio": 1, "extero": 0, "action": 1, "command": 0, "extero_shape": ()}
  stale = rec.EpisodeRecorder(tmp_path / "eps", dims)
  stale.start_episode(seed=7)
  for _ in range(3):
    stale.record(np.zeros(1), np.zeros(0), np.ones(1), np.zeros(0), 0.0)
  stale.end_episode()
  eps = evaluation.record_episodes(_FakeEnv(), _FakeController(), dims, [12, 5], tmp_path / "eps")
  assert [ep["meta"]["seed"] for ep in eps] == [12, 5]
  assert all(len(ep["action"]) == 40 and np.all(ep["action"] == np.float32(0.25)) for ep in eps)
  assert len(rec.load_episodes(tmp_path / "eps", dims)[0]) == 2


def test_round_keys_and_eval_seeds_are_the_loops_own():
  """What the diagnostics redo with: redo 0 is the round's own pair of keys, other redos change only the finetuning
  key; the evaluation seeds are one list whose prefix the real evaluation uses."""
  d0, f0 = loop.round_keys(3, 5)
  d1, f1 = loop.round_keys(3, 5, redo=1)
  np.testing.assert_array_equal(d0, jax.random.PRNGKey(8))
  np.testing.assert_array_equal(f0, jax.random.PRNGKey(3 * 7919 + 5))
  np.testing.assert_array_equal(d1, d0)
  assert not np.array_equal(f1, f0)
  assert loop.eval_seeds(2, 3) == [250_000, 250_001, 250_002] and loop.eval_seeds(2, 5)[:3] == loop.eval_seeds(2, 3)


class _FailingEnv(_FakeEnv):
  """As `_FakeEnv`, but the 10th step fails the episode (a termination, not the time limit)."""

  def step(self, action):
    obs, r, done, info = super().step(action)
    failed = self.t == 10
    return obs, float(self.t), done or failed, dict(info, failed=failed)


def test_run_episode_hands_every_transition_to_on_step():
  steps = []
  evaluation.run_episode(_FakeEnv(), _FakeController(), jax.random.PRNGKey(0), on_step=steps.append)
  assert len(steps) == 40 and all(s["not_done"] == 1.0 for s in steps)  # the time limit is not a termination
  for a, b in zip(steps[:-1], steps[1:], strict=True):  # s' of one transition is s of the next; the state is the applied action
    np.testing.assert_array_equal(a["next_proprio"], b["proprio"])
    np.testing.assert_array_equal(a["next_proprio"], a["action"])
  steps = []
  evaluation.run_episode(_FailingEnv(), _FakeController(), jax.random.PRNGKey(0), on_step=steps.append)
  assert [s["not_done"] for s in steps] == [1.0] * 9 + [0.0] and [float(s["reward"]) for s in steps] == list(
      map(float, range(1, 11)))
  assert [s["last"] for s in steps] == [0.0] * 9 + [1.0] and "privileged_state" not in steps[0]


class _PrivilegedEnv(_FakeEnv):
  """As `_FakeEnv`, with a privileged state (the step count) in the obs."""

  def reset(self, key):
    return dict(super().reset(key), privileged_state=np.zeros(1, np.float32))

  def step(self, action):
    obs, r, done, info = super().step(action)
    return dict(obs, privileged_state=np.full(1, self.t, np.float32)), r, done, info


class _SamplingController(_FakeController):
  def transition_extras(self):
    return {"raw_action": np.full(1, len(self.hist), np.float32)}


def test_on_step_carries_the_episode_end_privileged_states_and_controller_extras():
  steps = []
  evaluation.run_episode(_PrivilegedEnv(), _SamplingController(), jax.random.PRNGKey(0), on_step=steps.append,
                         max_steps=5)
  assert len(steps) == 5 and [s["last"] for s in steps] == [0.0] * 4 + [1.0]  # max_steps ends it: last, not failed
  assert all(s["not_done"] == 1.0 for s in steps)
  assert [float(s["privileged_state"][0]) for s in steps] == [0, 1, 2, 3, 4]
  assert [float(s["next_privileged_state"][0]) for s in steps] == [1, 2, 3, 4, 5]
  assert [float(s["raw_action"][0]) for s in steps] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("until_finetuned", [False, True])
def test_gate_until_finetuned_lifts_the_gate_from_the_first_finetuned_model(tmp_path, monkeypatch, until_finetuned):
  """`adapt.gate_until_finetuned`: the advantage gate holds for the pretrained model (held-out episodes, round 0's
  evaluation and sim reference, round 1's collection) and is off from round 1's evaluation on and for the oracle;
  without it every phase plans gated. The loop's pieces are stubbed: what is checked is which planner config each
  phase hands its controller."""
  from simdist_jax.analysis import oracle as oracle_lib  # pylint: disable=import-outside-toplevel
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY + [
      "planner.advantage_gate=True", "planner.gate_margin=0.5", f"adapt.gate_until_finetuned={until_finetuned}",
      "adapt.counterfactual_points=0"])
  dims = make_task(cfg).dims
  wm = model_lib.make_world_model(cfg.model, dims)
  ck = ckpt_lib.Checkpointer(str(paths.model_dir(tmp_path) / "checkpoints"), keep=1)
  ck.save(1, wm.init(jax.random.PRNGKey(0)), cfg.model, dims, kind="pretrain")
  ck.close()
  phases = []  # (phase, gate on?) in call order

  def gate_of(controller):
    return getattr(getattr(controller, "cfg", None), "advantage_gate", None)

  def fake_evaluate(env, controller, seeds, grid="", full_obs=False):
    phases.append(("evaluate", gate_of(controller)))
    if gate_of(controller):  # as if 10 gated steps ran, the plan passing the gate on 3 of them
      controller.gate_steps += 10
      controller.gate_opens += 3
    n = len(seeds)
    return {"return_mean": 1.0, "return_std": 0.0, "returns": [1.0] * n, "success_mean": 0.0,
            "success": [0.0] * n, "success_final": [0.0] * n}

  def fake_run_episode(env, controller, key, recorder=None, **kwargs):  # the held-out episode
    phases.append(("heldout", gate_of(controller)))
    return {"return": 0.0, "steps": 0, "noised_steps": 0}

  monkeypatch.setattr(evaluation, "evaluate_episodes", fake_evaluate)
  monkeypatch.setattr(loop, "run_episode", fake_run_episode)
  monkeypatch.setattr(loop.rec, "load_episodes", lambda *a, **k: ([], []))
  monkeypatch.setattr(evaluation, "prediction_losses",
                      lambda *a: {"model": np.ones(4), "persistence": np.ones(4)})
  monkeypatch.setattr(evaluation, "value_traces", lambda *a: [])
  monkeypatch.setattr(loop, "collect_episodes",
                      lambda env, controller, *a, **k: phases.append(("collect", gate_of(controller))))
  monkeypatch.setattr(loop, "finetune_on_episodes", lambda cfg, start, *a, **k: (start, {}, None))

  class FakeOracle:
    def __init__(self, pcfg, *args, **kwargs):
      phases.append(("oracle", pcfg.advantage_gate))

  monkeypatch.setattr(oracle_lib, "OracleController", FakeOracle)
  loop.run_stage(cfg, tmp_path)
  lifted = until_finetuned  # True: the phases of finetuned models and the oracle plan ungated
  # round 0: held-out episode, evaluation, sim reference, the policy head alone in sim and real (a policy-only
  # config: never gated), the two trivial controllers (no planner config), the oracle and its evaluation; round 1:
  # collection with the pretrained model, evaluation of the finetuned one; round 2: collection, evaluation
  assert phases == [("heldout", True), ("evaluate", True), ("evaluate", True), ("evaluate", False),
                    ("evaluate", False), ("evaluate", None), ("evaluate", None), ("oracle", not lifted),
                    ("evaluate", None), ("collect", True), ("evaluate", not lifted), ("collect", not lifted),
                    ("evaluate", not lifted)]
  # The gate's open share of each gated evaluation (real, and the sim reference at round 0) is in its round.json
  rows = [json.loads((loop._round_dir(paths.adapt_dir(tmp_path), j) / "round.json").read_text())  # pylint: disable=protected-access
          for j in range(3)]
  assert rows[0]["planner/gate_open_frac"] == pytest.approx(0.3)
  assert rows[0]["sim/planner/gate_open_frac"] == pytest.approx(0.3)
  for row in rows[1:]:
    assert (row.get("planner/gate_open_frac") is None) == lifted
