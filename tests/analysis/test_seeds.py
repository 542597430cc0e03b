"""The multi-seed table: hand-made rounds with known answers (paired CIs, drops, gap closed, criteria)."""
import json

import numpy as np
import pytest

from simdist_jax.analysis import seeds


def _round(returns, success, sim=100.0, head=90.0, oracle=None):
  r = {"real/return_mean": float(np.mean(returns)), "real/returns": list(returns),
       "real/success_mean": float(np.mean(success)), "real/success": list(success),
       "heldout/pred_loss_mean": 1.0, "heldout/pred_over_persistence": 0.5, "frozen_unchanged": True,
       "sim/return_mean": sim, "sim/policy_head/return_mean": head, "counterfactual/effect_error": 0.7}
  if oracle is not None:
    r["oracle/heads/returns"] = list(oracle)
  return r


def test_seed_row_hand_case():
  base = np.arange(10.0)
  rounds = [_round(base, np.zeros(10), oracle=[110.0] * 4),   # round 0: mean of the first 4 = 1.5
            _round(base + 50.0, np.full(10, 0.2)),            # +50 on every episode
            _round(base + 40.0, np.full(10, 0.3))]            # -10 on every episode: a drop with CI [-10, -10]
  row = seeds.seed_row(rounds, expert_sim=125.0)
  assert row["curve"] == pytest.approx([4.5, 54.5, 44.5])
  assert row["return_vs_round0"]["diff"] == pytest.approx(40.0) and row["return_vs_round0"]["lo"] == pytest.approx(40.0)
  assert row["success_vs_round0"]["lo"] == pytest.approx(0.3)
  # gap closed on the oracle's 4 episodes: (41.5 - 1.5) / (110 - 1.5)
  assert row["gap_closed"] == pytest.approx(40.0 / 108.5)
  (drop,) = row["drops"]
  assert drop["round"] == 2 and drop["diff"] == pytest.approx(-10.0) and drop["hi"] == pytest.approx(-10.0)
  assert row["planner_above_head"] is True and row["planner_over_expert"] == pytest.approx(0.8)
  assert row["oracle"] == pytest.approx(110.0)


def test_criteria_counts_and_cut_at_a_round(tmp_path):
  rng = np.random.default_rng(0)
  for i, (gain, head) in enumerate([(30.0, 90.0), (0.0, 120.0)]):
    rd = tmp_path / f"run{i}" / "adapt" / "rounds"
    for j, g in enumerate([0.0, gain, gain]):
      (rd / f"round_{j:02d}").mkdir(parents=True)
      r = _round(rng.normal(20.0, 1.0, 8) + g, np.zeros(8), head=head, oracle=[80.0] * 8 if j == 0 else None)
      (rd / f"round_{j:02d}" / "round.json").write_text(json.dumps(r))
  rows = [seeds.seed_row(seeds.load_rounds(tmp_path / f"run{i}", upto=1)) for i in range(2)]
  assert all(r["rounds"] == 1 for r in rows)
  c = seeds.criteria(rows)
  assert c["seeds"] == 2 and c["return_up_seeds"] == 1 and c["planner_above_head_seeds"] == 1
  assert c["gap_closed_range"][1] == pytest.approx(0.5, abs=0.05) and c["sim_planner_over_expert_mean"] is None
  with pytest.raises(ValueError, match="only rounds 0..2"):
    seeds.load_rounds(tmp_path / "run0", upto=5)
  with pytest.raises(FileNotFoundError, match="round_00"):
    seeds.load_rounds(tmp_path / "nothing")


def _write_run(root, rounds, seed=4, world="default"):
  for j, r in enumerate(rounds):
    (root / "adapt" / "rounds" / f"round_{j:02d}").mkdir(parents=True)
    (root / "adapt" / "rounds" / f"round_{j:02d}" / "round.json").write_text(json.dumps(r))
  cfg = {"run": {"seed": seed}, "adapt": {"eval_episodes": 10, "sim_eval_episodes": 12}, "env": {}, "domain": {
      "real_world": world}}
  (root / "adapt" / "config.json").write_text(json.dumps(cfg))


def test_paired_against_a_base_run_on_the_same_episodes(tmp_path, capsys):
  """Run minus base, episode by episode: +5 on every episode at round 0 (CI [5, 5]), -3 at the last round both have
  (the base has 3 rounds, the run 2: round 1), +0.1 success; the sim planner's episodes paired at round 0."""
  base = np.arange(10.0)
  sim = list(np.arange(12.0))
  b = [_round(base, np.zeros(10)) | {"sim/returns": sim}, _round(base + 20.0, np.full(10, 0.2)),
       _round(base + 30.0, np.full(10, 0.2))]
  r = [_round(base + 5.0, np.zeros(10)) | {"sim/returns": [x + 2.0 for x in sim]},
       _round(base + 17.0, np.full(10, 0.3))]
  out = seeds.paired_against(r, b)
  assert out["round"] == 1
  assert out["round0/return"]["diff"] == pytest.approx(5.0) and out["round0/return"]["lo"] == pytest.approx(5.0)
  assert out["final/return"]["diff"] == pytest.approx(-3.0) and out["final/return"]["hi"] == pytest.approx(-3.0)
  assert out["final/success"]["diff"] == pytest.approx(0.1)
  assert out["round0/sim_planner"]["diff"] == pytest.approx(2.0)
  with pytest.raises(ValueError, match="not the same episodes"):
    seeds.paired_against([_round(base[:8], np.zeros(8))], b)
  _write_run(tmp_path / "run", r)
  _write_run(tmp_path / "base", b)
  _write_run(tmp_path / "other_seed", b, seed=5)
  _write_run(tmp_path / "other_world", b, world="stress")
  assert seeds.main([str(tmp_path / "run"), "--against", str(tmp_path / "base"),
                     "--json", str(tmp_path / "out.json")]) == 0
  printed = capsys.readouterr().out
  assert "| +5.0 [+5.0, +5.0] |" in printed and "| 1 | -3.0 [-3.0, -3.0] |" in printed
  assert json.loads((tmp_path / "out.json").read_text())["against"][0]["round0/return"]["diff"] == pytest.approx(5.0)
  with pytest.raises(ValueError, match="run.seed differs"):
    seeds.check_pairable(tmp_path / "run", tmp_path / "other_seed")
  with pytest.raises(ValueError, match="domain differs"):
    seeds.check_pairable(tmp_path / "run", tmp_path / "other_world")
  with pytest.raises(SystemExit):  # one base per run
    seeds.main([str(tmp_path / "run"), str(tmp_path / "base"), "--against", str(tmp_path / "base")])
  assert "one base run per run" in capsys.readouterr().err
