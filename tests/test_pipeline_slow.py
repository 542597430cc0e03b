"""End to end on a tiny CartPole config: `run` from nothing to a report; real-data prediction loss goes down; the
baselines on its data; the ablation runner on its expert, data and model."""

import json
import os

import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax import paths, pipeline, stages
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

BASELINES = ["baselines.bc.num_steps=100", "baselines.bc.chunk_steps=50", "baselines.bc.batch_size=64",
             "baselines.bc.lr.warmup_steps=10", "baselines.bc.lr.decay_steps=100", "baselines.bc.hidden=[16]",
             "baselines.rlpd.hidden=[16]", "baselines.rlpd.num_critics=3", "baselines.rlpd.utd=2",
             "baselines.rlpd.batch_size=32", "baselines.rlpd.update_chunk=100", "baselines.iql.hidden=[16]",
             "baselines.iql.offline_steps=200", "baselines.iql.batch_size=32", "baselines.iql.update_chunk=100",
             "baselines.sgft.value_steps=100"]


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory):
  """The tiny pipeline's run directory (made by the first test; the ablation test reuses its stages)."""
  return tmp_path_factory.mktemp("e2e")


@pytest.mark.slow
def test_pipeline_end_to_end(e2e_dir, capsys):
  tmp_path = e2e_dir
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

  # The baselines on the same sim data, with the adaptation loop's budget and evaluation seeds.
  base = config_lib.load_config(CARTPOLE + ":small", E2E + BASELINES)
  bc_res = stages.run_one("baseline-bc", base, tmp_path)
  assert bc_res["complete"] and not bc_res["uses_real_data"] and len(bc_res["rounds"]) == 1
  # the tiny expert's actions hardly vary, so only the check's presence is asserted here; the imitation margin is
  # tested on a known linear expert (tests/baselines/test_bc.py) and measured on CartPole (docs/results.md)
  assert np.isfinite(bc_res["bc/heldout_mse_over_constant"]) and bc_res["bc/heldout_expert_steps"] > 0, bc_res
  adapt_round0 = res["rounds"][0]
  assert len(bc_res["rounds"][0]["real/returns"]) == len(adapt_round0["real/returns"])  # the same seeds
  rl = stages.run_one("baseline-rlpd", base, tmp_path)
  assert rl["complete"] and rl["uses_real_data"] and [r["round"] for r in rl["rounds"]] == [0, 1, 2]
  assert [r["real_episodes"] for r in rl["rounds"]] == [0, 2, 4]
  assert rl["rounds"][2]["real_transitions"] == 4 * 60  # every collected step is in the replay
  assert "real/return_vs_round0" in rl["rounds"][2] and all(np.isfinite(r["real/return_mean"]) for r in rl["rounds"])
  rdir = tmp_path / "baselines" / "rlpd" / "rounds"
  assert (rdir / "round_02" / "transitions.npz").exists() and (rdir / "round_02" / "agent.msgpack").exists()
  capsys.readouterr()
  (tmp_path / "baselines" / "rlpd" / "results.json").unlink()
  stages.run_one("baseline-rlpd", base, tmp_path)  # resumes: every round is on disk
  out = capsys.readouterr().out
  assert "round 2: complete, skipped" in out and " updates (" not in out
  iq = stages.run_one("baseline-iql", base, tmp_path)
  assert iq["complete"] and [r["real_transitions"] for r in iq["rounds"]] == [0, 2 * 60, 4 * 60]
  assert np.isfinite(iq["rounds"][0]["offline/value/loss"]) and np.isfinite(iq["sim_return"])
  sg = stages.run_one("baseline-sgft", base, tmp_path)
  assert sg["complete"] and len(sg["rounds"]) == 3 and np.isfinite(sg["rounds"][0]["sgft/value_heldout_mse"])
  _check_ppo(stages.run_one("baseline-ppo", base, tmp_path), tmp_path, adapt_round0)
  from simdist_jax.analysis import compare  # pylint: disable=import-outside-toplevel
  summary = compare.write([tmp_path], tmp_path / "compare")
  assert set(summary) == {"simdist", "bc", "rlpd", "iql", "sgft", "ppo"}


def _check_ppo(pp, workdir, adapt_round0):
  """PPO finetuning of the tiny expert: the loop's budget and seeds, on-policy transitions with what PPO needs."""
  from simdist_jax import fileio  # pylint: disable=import-outside-toplevel
  assert pp["complete"] and [r["real_transitions"] for r in pp["rounds"]] == [0, 2 * 60, 4 * 60]
  assert len(pp["rounds"][0]["real/returns"]) == len(adapt_round0["real/returns"])  # the same evaluation seeds
  assert np.isfinite(pp["sim_return"]) and "real/return_vs_round0" in pp["rounds"][2]
  assert all(np.isfinite(r["train/ppo/kl"]) and r["train/ppo/lr"] > 0 for r in pp["rounds"][1:])
  tr = fileio.load_npz(workdir / "baselines" / "ppo" / "rounds" / "round_02" / "transitions.npz")
  assert tr["last"].sum() == 2 and tr["last"][59] == 1 and tr["not_done"].min() == 1  # two time-limited episodes
  np.testing.assert_allclose(np.tanh(tr["raw_action"]), tr["action"], atol=1e-6)  # the stored pre-tanh samples
  np.testing.assert_array_equal(tr["next_privileged_state"][:59], tr["privileged_state"][1:60])


# Adaptation of the ablation runs: one round, no oracle or counterfactuals (adapt keys only, so the expert, data and
# pretrained model of the pipeline above stay valid for them).
ABLATE_ADAPT = ["adapt.rounds=1", "adapt.episodes_per_round=1", "adapt.finetune_steps=20", "adapt.oracle_episodes=0",
                "adapt.counterfactual_points=0", "adapt.sim_eval_episodes=2"]


@pytest.mark.slow
def test_ablate_end_to_end(e2e_dir, tmp_path, capsys):
  """`simdist-jax ablate` with a planner-only row (shares the pretrained model) and the MLP-heads row (pretrains
  its own), on the pipeline's stages: links, own stages, the table, and a rerun that runs nothing."""
  from simdist_jax import ablate, cli  # pylint: disable=import-outside-toplevel
  cfg = config_lib.load_config(CARTPOLE + ":small", E2E)
  if not stages.is_complete("pretrain", cfg, e2e_dir):  # run alone (-k): make the pipeline's stages first
    pipeline.run_stage(cfg, e2e_dir)
  root = tmp_path / "ablate"
  default = root / "seed_0" / ablate.DEFAULT
  default.mkdir(parents=True)
  for d in ("expert", "data", "world_model", "refine"):  # the default row's upstream stages: the pipeline's
    os.symlink(e2e_dir / d, default / d)
  argv = ["ablate", "--config", CARTPOLE + ":small", "--seeds", "0", "--ablation", "no_terminal_value",
          "--ablation", "heads_mlp", "--root", str(root), *["--config." + o for o in E2E + ABLATE_ADAPT]]
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert "no_terminal_value: shares expert, expert-eval, generate, data-report, pretrain, refine with simdist" in out
  planner_row, heads_row = root / "seed_0" / "no_terminal_value", root / "seed_0" / "heads_mlp"
  for d in ("expert", "data", "world_model", "refine"):  # refine: off, so it reads no planner key
    assert os.readlink(planner_row / d) == os.path.join("..", ablate.DEFAULT, d)
  assert (heads_row / "expert").is_symlink() and not (heads_row / "world_model").is_symlink()
  assert json.loads((heads_row / "world_model" / "config.json").read_text())["model"]["heads"] == "mlp"
  for row in (default, planner_row, heads_row):
    res = json.loads((row / "adapt" / "adapt_results.json").read_text())
    assert res["complete"] and len(res["rounds"]) == 2 and (row / "report" / "report.md").exists()
  assert json.loads((planner_row / "adapt" / "config.json").read_text())["planner"]["terminal_discount"] == "none"
  table = json.loads((root / "ablations.json").read_text())
  assert [r["name"] for r in table["rows"]] == ["simdist", "no_terminal_value", "heads_mlp"] and not table["missing"]
  md = (root / "report.md").read_text()
  assert "| no_terminal_value | `planner.terminal_discount=none` | expert, data, world_model, refine | 1 |" in md
  assert "| heads_mlp | `model.heads=mlp` | expert, data | 1 |" in md and "inconclusive (< 2 seeds)" in md
  assert {"adapt", "pretrain"} <= set(json.loads((root / "times.json").read_text())) <= {"adapt", "pretrain", "refine"}
  assert cli.main(argv) == 0  # resumed: everything complete
  out = capsys.readouterr().out
  assert "0 stage runs to do" in out and " running" not in out
