"""Sim on-policy refinement (`simdist-jax refine`): off by default, its rounds on a tiny config, resumption, and
the model `adapt` deploys."""

import json

import jax
import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax import stages
from simdist_jax.adapt import recorder as rec
from simdist_jax.adapt import refine
from simdist_jax.envs.registry import make_task
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model.finetune import split_params
from tests.adapt.test_loop import TINY
from tests.conftest import CARTPOLE

REFINE = ["refine.rounds=2", "refine.episodes_per_round=2", "refine.finetune_steps=3", "refine.eval_episodes=2",
          "refine.sim_mix=0.0"]


def _pretrained(cfg, wd):
  dims = make_task(cfg).dims
  variables = model_lib.make_world_model(cfg.model, dims).init(jax.random.PRNGKey(0))
  ck = ckpt_lib.Checkpointer(str(paths.model_dir(wd) / "checkpoints"), keep=1)
  ck.save(1, variables, cfg.model, dims, kind="pretrain")
  ck.close()
  return variables


def test_off_by_default_deploys_the_pretrained_model(tmp_path, capsys):
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY)
  assert int(cfg.refine.rounds) == 0
  assert refine.is_complete(cfg, tmp_path)  # nothing to do, nothing on disk
  assert refine.run_stage(cfg, tmp_path) == {"complete": True, "rounds": []}
  assert "nothing to do" in capsys.readouterr().out and not paths.refine_dir(tmp_path).exists()
  assert paths.planning_model_dir(cfg, tmp_path) == paths.model_dir(tmp_path)
  on = config_lib.load_config(CARTPOLE + ":small", TINY + ["refine.rounds=1"])
  assert paths.planning_model_dir(on, tmp_path) == paths.refine_dir(tmp_path) / "model"
  assert not refine.is_complete(on, tmp_path)


def test_planner_keys_are_in_the_fingerprint_only_while_it_runs():
  off = config_lib.load_config(CARTPOLE + ":small", [])
  on = config_lib.load_config(CARTPOLE + ":small", ["refine.rounds=3"])
  for key in ("planner.num_samples", "model.finetune.batch_size"):
    assert not stages.covers("refine", key, off) and stages.covers("refine", key, on)
  assert stages.covers("refine", "refine.rounds", off) and stages.covers("refine", "model.batch_size", off)
  assert not stages.covers("refine", "model.finetune.num_steps", on)  # the `finetune` command's, not refine's
  assert "planner.num_samples" not in stages.fingerprint("refine", off)
  assert stages.fingerprint("refine", on)["planner.num_samples"] == on.planner.num_samples
  # adapt reads the refined model: its fingerprint holds refine's section
  assert stages.covers("adapt", "refine.sim_mix", off)


@pytest.mark.parametrize("override,match", [
    ("refine.episodes_per_round=101", r"refine\.episodes_per_round=101: must be an integer in \[1, 100\]"),
    ("refine.sim_mix=1.0", r"refine\.sim_mix=1\.0: must be in \[0, 1\)"),
    ("refine.rounds=-1", r"refine\.rounds=-1: must be an integer >= 0"),
    ("refine.explore_noisy_len=(3,2)", r"refine\.explore_noisy_len"),
])
def test_bad_values_are_refused_at_load(override, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.load_config(CARTPOLE + ":small", [override])


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY + REFINE)
  wd = tmp_path_factory.mktemp("run")
  variables0 = _pretrained(cfg, wd)
  summary = stages.run_one("refine", cfg, wd)
  return cfg, wd, variables0, summary


@pytest.mark.slow
def test_rounds_collect_finetune_the_dynamics_and_evaluate(refined):
  cfg, wd, variables0, summary = refined
  assert summary["complete"] and refine.is_complete(cfg, wd) and summary["frozen_unchanged_all_rounds"]
  r1, r2 = summary["rounds"]
  assert (r1["episodes"], r2["episodes"]) == (2, 4)  # every round trains on all sim planner episodes so far
  assert (r1["finetune_steps"], r2["finetune_steps"]) == (3, 6)  # j x refine.finetune_steps, from the pretrained
  dims = make_task(cfg).dims
  for j in (1, 2):
    eps = rec.load_episodes(paths.refine_dir(wd) / "rounds" / f"round_{j:02d}" / "episodes", dims)[0]
    assert sorted(ep["meta"]["seed"] for ep in eps) == refine.collection_seeds(0, j, 2)
    assert all(len(ep["action"]) == 16 for ep in eps)
  # the deployed model: dynamics changed, every other leaf (heads, encoder, policy, scaler) bitwise the pretrained
  v, _, _ = ckpt_lib.load_checked(str(paths.planning_model_dir(cfg, wd)), cfg.model, dims)
  tr0, fr0 = split_params(variables0["params"], str(cfg.model.finetune.train))
  tr, fr = split_params(v["params"], str(cfg.model.finetune.train))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fr0), jax.tree.leaves(fr), strict=True))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(tr0), jax.tree.leaves(tr), strict=True))
  # the evaluation: three controllers on the same seeds, paired against the head
  for name in ("policy_head", "pretrained_planner", "refined_planner"):
    assert len(summary[f"sim/{name}/returns"]) == 2
  d = summary["sim/refined_planner_minus_head"]
  assert d["diff"] == pytest.approx(np.mean(summary["sim/refined_planner/returns"])
                                    - np.mean(summary["sim/policy_head/returns"]))
  assert d["lo"] <= d["diff"] <= d["hi"]
  assert json.loads((paths.refine_dir(wd) / refine.RESULTS).read_text())["complete"] is True


@pytest.mark.slow
def test_rerun_resumes_without_recollecting(refined, capsys):
  cfg, wd, _, summary = refined
  r2 = paths.refine_dir(wd) / "rounds" / "round_02"
  (r2 / "round.json").unlink()  # interrupted after round 2's episodes were recorded
  again = refine.run_stage(cfg, wd)
  out = capsys.readouterr().out
  assert "round 1: complete, skipped" in out and "sim planner episode 1/" not in out
  assert again["rounds"][0] == summary["rounds"][0]
  assert again["rounds"][1]["episodes"] == 4 and (r2 / "round.json").exists()
  other = config_lib.load_config(CARTPOLE + ":small", TINY + REFINE + ["planner.num_samples=8"])
  with pytest.raises(config_lib.ConfigError, match=r"planner\.num_samples: 16 -> 8"):
    stages.run_one("refine", other, wd)  # while it runs, the planner is part of what it made


@pytest.mark.slow
def test_branches_are_recorded_per_round_and_trained_on(tmp_path):
  """With `refine.branch_points` the collection also records points x per_point branch episodes per trunk episode
  (ids trunk seed * 1000 + i), each the trunk's last H steps and T + 1 branch steps, and round j trains on them
  too; a rerun of an interrupted round keeps one copy of each."""
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY + REFINE + ["refine.rounds=1", "refine.eval_episodes=0",
                                                                      "refine.branch_points=2"])
  _pretrained(cfg, tmp_path)
  summary = stages.run_one("refine", cfg, tmp_path)
  (row,) = summary["rounds"]
  assert row["branch_episodes"] == 2 * 2 * 2 and row["episodes"] == 2 + 8
  bdir = paths.refine_dir(tmp_path) / "rounds" / "round_01" / "branches"
  eps = rec.load_episodes(bdir, make_task(cfg).dims)[0]
  seeds = refine.collection_seeds(0, 1, 2)
  assert sorted(ep["meta"]["seed"] for ep in eps) == sorted(s * 1000 + i for s in seeds for i in range(4))
  H, T = int(cfg.model.history), int(cfg.model.horizon)
  assert all(len(ep["action"]) == min(H, int(ep["meta"]["branch_step"])) + T + 1 for ep in eps)
  (paths.refine_dir(tmp_path) / "rounds" / "round_01" / "round.json").unlink()
  again = refine.run_stage(cfg, tmp_path)
  assert again["rounds"][0]["branch_episodes"] == 8


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")  # no episodes: stubbed
def test_collection_searches_ungated_and_evaluation_plans_as_configured(tmp_path, monkeypatch):
  """With `planner.advantage_gate` on, the refinement's collection episodes follow the search's own plans (gate off:
  the gate would hide the states the search leads to), while its evaluation runs the planners as configured, gated.
  Collection, finetuning and evaluation are stubbed: what is checked is the planner config each one is handed."""
  from simdist_jax.adapt import evaluation  # pylint: disable=import-outside-toplevel
  from simdist_jax.adapt import loop  # pylint: disable=import-outside-toplevel
  cfg = config_lib.load_config(CARTPOLE + ":small", TINY + REFINE + ["planner.advantage_gate=True",
                                                                     "planner.gate_margin=0.5"])
  _pretrained(cfg, tmp_path)
  seen = []

  def fake_collect(env, controller, seeds, directory, *args, **kwargs):
    seen.append(("collect", controller.cfg.advantage_gate))
    directory.mkdir(parents=True, exist_ok=True)

  def fake_evaluate(env, controller, seeds, grid="", full_obs=False):
    seen.append(("evaluate", controller.cfg.advantage_gate, controller.cfg == head_cfg))
    return {"returns": [1.0] * len(seeds)}

  monkeypatch.setattr(loop, "collect_episodes", fake_collect)
  monkeypatch.setattr(loop, "finetune_on_episodes", lambda cfg, start, *a, **k: (start, {}, None))
  monkeypatch.setattr(evaluation, "evaluate_episodes", fake_evaluate)
  from simdist_jax.planner import mppi  # pylint: disable=import-outside-toplevel
  head_cfg = evaluation.policy_only_config(mppi.PlannerConfig.from_config(cfg.planner, model_horizon=4))
  refine.run_stage(cfg, tmp_path)
  # 2 rounds of collection, ungated; then the head (its policy-only config, never gated), the pretrained and the
  # refined planner, both gated
  assert seen == [("collect", False), ("collect", False), ("evaluate", False, True), ("evaluate", True, False),
                  ("evaluate", True, False)]
