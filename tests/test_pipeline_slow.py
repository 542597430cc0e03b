"""End to end on a tiny CartPole config: `run` from nothing to a report; real-data prediction loss goes down."""

import json

import pytest

from simdist_jax import config as config_lib
from simdist_jax import paths, pipeline
from tests.adapt.test_loop import TINY
from tests.conftest import CARTPOLE

E2E = TINY + [
    "env.episode_length=60",
    "expert.num_envs=32", "expert.unroll_length=8", "expert.num_minibatches=4", "expert.num_updates_per_batch=2",
    "expert.num_iterations=8", "expert.checkpoint_iterations=[0, 4]", "expert.resume_every_iterations=4",
    "expert.train_eval_episodes=4", "expert.eval_sim_episodes=8", "expert.eval_real_episodes=1",
    "expert.policy_hidden=[16, 16]", "expert.value_hidden=[16, 16]",
    "data.num_envs=16", "data.num_steps=200", "data.shard_steps=100",
    "model.num_steps=200", "model.batch_size=32", "model.eval_every=100", "model.checkpoint_every=100",
    "model.log_every=50", "model.lr.warmup_steps=10", "model.lr.decay_steps=200",
    "adapt.rounds=2", "adapt.episodes_per_round=2", "adapt.finetune_steps=150",
]


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path, capsys):
  cfg = config_lib.load_config(CARTPOLE + ":small", E2E)
  pipeline.run_stage(cfg, tmp_path)
  res = json.loads((paths.adapt_dir(tmp_path) / "adapt_results.json").read_text())
  assert res["complete"] and res["frozen_unchanged_all_rounds"]
  assert res["pred_loss_final"] < res["pred_loss_round0"], res
  assert (paths.report_dir(tmp_path) / "report.md").exists()
  assert (paths.report_dir(tmp_path) / "learning_curve.png").exists()
  capsys.readouterr()
  pipeline.run_stage(cfg, tmp_path)  # everything complete: every stage but the report is skipped
  out = capsys.readouterr().out
  for stage in ("expert", "expert-eval", "pretrain", "adapt"):
    assert f"{stage}: complete, skipped" in out
