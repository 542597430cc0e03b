"""The ablation table on synthetic run directories with hand-worked numbers: means and intervals over seeds, the
paired differences against simdist, the direction verdicts, missing and identical rows, the report commands.

With two seeds the percentile bootstrap interval of the mean is exactly [min, max] (the resampled means are a,
(a + b) / 2 and b with probabilities 1/4, 1/2, 1/4), so every interval below is hand-worked."""

import json

import pytest

from simdist_jax.analysis import ablations


def _run(root, seed, row, final, gap=None, round0=10.0):
  d = root / f"seed_{seed}" / row / "adapt"
  d.mkdir(parents=True)
  (d / "adapt_results.json").write_text(json.dumps({
      "complete": True, "real_return_final": final, "real_return_round0": round0, "gap_closed_fraction": gap,
      "real_success_final": final / 200}))


def _row(overrides, direction="none", source="src", identical=False, dirs=()):
  return {"overrides": list(overrides), "direction": direction, "source": source, "what": "w",
          "dirs": {d: "link" for d in dirs}, "identical": identical}


@pytest.fixture
def root(tmp_path):
  rows = {"simdist": _row([]),
          "heads_mlp": _row(["model.heads=mlp"], "worse", "Table I", dirs=["expert", "data"]),
          "finetune_all": _row(["model.finetune.train=all"], "worse", "Fig. 10",
                               dirs=["expert", "data", "world_model"]),
          "no_terminal_value": _row(["planner.terminal_discount=none"], "worse"),
          "dynamics_ar_mlp": _row(["model.dynamics=autoregressive_mlp"], "none"),
          "warm_start_paper_code": _row(["planner.warm_start=paper_code"], "worse"),
          "warm_start_shift": _row(["planner.warm_start=shift"], identical=True),
          "better_row": _row(["x=1"], "better")}
  (tmp_path / "ablate.json").write_text(json.dumps({
      "config": "cartpole.py:full", "overrides": [], "seeds": [0, 1], "rows": rows,
      "contrasts": [{"row": "warm_start_paper_code", "ref": "warm_start_shift", "direction": "worse",
                     "source": "s"}]}))
  for s, (default, gap) in enumerate(((100.0, 0.5), (120.0, 0.7))):
    _run(tmp_path, s, "simdist", default, gap)
  for s, v in enumerate((80.0, 90.0)):  # -20, -30: below 0 -> the paper's "worse" holds
    _run(tmp_path, s, "heads_mlp", v, gap=0.2 + 0.2 * s)
  for s, v in enumerate((130.0, 125.0)):  # +30, +5: above 0 -> it does not
    _run(tmp_path, s, "finetune_all", v)
  for s, v in enumerate((95.0, 130.0)):  # -5, +10: straddles 0
    _run(tmp_path, s, "no_terminal_value", v)
  for s, v in enumerate((60.0, 70.0)):
    _run(tmp_path, s, "dynamics_ar_mlp", v)
  _run(tmp_path, 0, "warm_start_paper_code", 90.0)  # seed 1 missing: one paired seed
  for s, v in enumerate((110.0, 140.0)):  # +10, +20 against a "better" direction: holds
    _run(tmp_path, s, "better_row", v)
  return tmp_path


def test_table_hand_worked(root):
  t = ablations.tabulate(root)
  rows = {r["name"]: r for r in t["rows"]}
  sd = rows["simdist"]
  assert sd["final_mean"] == 110.0 and sd["final_ci"] == (100.0, 120.0)
  assert sd["gap_mean"] == pytest.approx(0.6) and sd["gap_ci"] == (0.5, 0.7)
  assert rows["heads_mlp"]["final_mean"] == 85.0 and rows["heads_mlp"]["final_ci"] == (80.0, 90.0)
  assert rows["heads_mlp"]["gap_mean"] == pytest.approx(0.3) and rows["heads_mlp"]["gap_seeds"] == 2
  assert rows["finetune_all"]["gap_mean"] is None and rows["finetune_all"]["gap_ci"] is None
  c = {(x["row"], x["ref"]): x for x in t["contrasts"]}
  h = c[("heads_mlp", "simdist")]
  assert h["per_seed"] == {0: -20.0, 1: -30.0} and h["mean"] == -25.0 and h["ci"] == (-30.0, -20.0)
  assert h["verdict"] == "yes"
  f = c[("finetune_all", "simdist")]
  assert f["per_seed"] == {0: 30.0, 1: 5.0} and f["mean"] == 17.5 and f["ci"] == (5.0, 30.0) and f["verdict"] == "no"
  nt = c[("no_terminal_value", "simdist")]
  assert nt["mean"] == 2.5 and nt["ci"] == (-5.0, 10.0) and nt["verdict"] == "inconclusive"
  assert c[("dynamics_ar_mlp", "simdist")]["verdict"].startswith("n/a")
  assert c[("better_row", "simdist")]["ci"] == (10.0, 20.0) and c[("better_row", "simdist")]["verdict"] == "yes"
  # One paired seed: no interval, no verdict; the missing run is named.
  wp = c[("warm_start_paper_code", "simdist")]
  assert wp["per_seed"] == {0: -10.0} and wp["ci"] is None and wp["verdict"] == "inconclusive (< 2 seeds)"
  assert t["missing"] == ["seed_1/warm_start_paper_code"]
  # An identical row reads the default's runs and gets no contrast against it; the extra contrast pairs it.
  assert rows["warm_start_shift"]["final_mean"] == 110.0 and ("warm_start_shift", "simdist") not in c
  assert c[("warm_start_paper_code", "warm_start_shift")]["per_seed"] == {0: -10.0}


def test_verdict_cases():
  assert ablations.verdict("worse", (-3.0, -1.0)) == "yes"
  assert ablations.verdict("worse", (1.0, 3.0)) == "no"
  assert ablations.verdict("worse", (-1.0, 0.0)) == "inconclusive"  # the interval touches 0
  assert ablations.verdict("better", (1.0, 3.0)) == "yes"
  assert ablations.verdict("better", (-3.0, -1.0)) == "no"
  assert ablations.verdict("worse", None) == "inconclusive (< 2 seeds)"
  assert ablations.verdict("none", (-3.0, -1.0)).startswith("n/a")


def test_report_files_and_markdown(root):
  ablations.write(root)
  md = (root / "report.md").read_text()
  assert "| **simdist** | (default) | - | 2 | 110.0 [100.0, 120.0] | 60% [50%, 70%] |" in md
  assert ("| heads_mlp | `model.heads=mlp` | expert, data | 2 | 85.0 [80.0, 90.0] | 30% [20%, 40%] | s0 -20.0, "
          "s1 -30.0 | -25.0 [-30.0, -20.0] | worse | yes |") in md
  assert "| finetune_all | `model.finetune.train=all` | expert, data, world_model |" in md
  assert "identical to simdist" in md and "warm_start_paper_code - warm_start_shift | s0 -10.0" in md
  assert "Missing (adaptation not complete): seed_1/warm_start_paper_code" in md
  data = json.loads((root / "ablations.json").read_text())
  assert {r["name"] for r in data["rows"]} >= {"simdist", "heads_mlp"} and data["seeds"] == [0, 1]


def test_report_commands(root, tmp_path_factory, capsys):
  from simdist_jax import cli
  assert cli.main(["report", str(root)]) == 0  # an ablation root: its table
  assert (root / "report.md").exists() and "report.md" in capsys.readouterr().out
  # The comparison over run directories, with the ablation table appended.
  out = tmp_path_factory.mktemp("cmp")
  a, b = root / "seed_0" / "simdist", root / "seed_1" / "simdist"
  for wd, rets in ((a, [10, 30]), (b, [20, 50])):
    for j, r in enumerate(rets):
      d = wd / "adapt" / "rounds" / f"round_{j:02d}"
      d.mkdir(parents=True)
      (d / "round.json").write_text(json.dumps({"real/return_mean": r, "real/success_mean": 0.0,
                                                "real_minutes": j}))
    (wd / "config.json").write_text("{}")
  assert cli.main(["report", str(a), str(b), "--out", str(out), "--ablations", str(root)]) == 0
  md = (out / "compare.md").read_text()
  assert "- simdist: 15.0 -> 40.0" in md and "## Ablations" in md and "| heads_mlp |" in md
  with pytest.raises(FileNotFoundError, match="ablate.json"):
    ablations.tabulate(out)
