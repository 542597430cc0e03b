"""The comparison report over run directories, on a tiny synthetic set: means and intervals over seeds, BC as a
line, missing and cut runs named, a directory with nothing in it refused by name."""

import json

import pytest

from simdist_jax.analysis import compare


def _write(wd, method, returns, minutes=None):
  base = wd / "adapt" if method == "simdist" else wd / "baselines" / method
  for j, r in enumerate(returns):
    d = base / "rounds" / f"round_{j:02d}"
    d.mkdir(parents=True)
    (d / "round.json").write_text(json.dumps({"round": j, "real/return_mean": r, "real/success_mean": r / 100,
                                              "real_minutes": (minutes or list(range(len(returns))))[j]}))


def test_comparison_of_a_tiny_synthetic_set(tmp_path):
  a, b, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
  _write(a, "simdist", [10, 20, 40])
  _write(a, "rlpd", [12, 5, 0])
  _write(a, "bc", [15], [0])
  _write(b, "simdist", [20, 30, 60, 70])  # one round more: cut to the shortest, and said
  _write(b, "bc", [25], [0])
  s = compare.write([a, b], tmp_path / "out")
  assert list(s) == ["simdist", "bc", "rlpd"]
  sd = s["simdist"]
  assert sd["return"] == [15.0, 25.0, 50.0] and sd["rounds"] == 2 and sd["cut"] == [str(b)]
  assert sd["per_seed_final_minus_round0"] == [30.0, 40.0] and sd["final_minus_round0"] == 35.0
  lo, hi = sd["final_minus_round0_ci"]
  assert 30.0 <= lo <= 35.0 <= hi <= 40.0
  assert s["bc"]["return"] == [20.0] and s["bc"]["rounds"] == 0
  assert s["rlpd"]["missing"] == [str(b)] and s["rlpd"]["final_minus_round0_ci"] is None
  md = (tmp_path / "out" / "compare.md").read_text()
  assert f"rlpd is missing from: {b}" in md and "n/a (1 seed)" in md and "| simdist | 2 | 2 |" in md
  assert "| bc | 2 | 0 | 0.00 | 20.0 | 20.0 | no real data (a line) |" in md
  assert "- simdist: 15.0 -> 25.0 -> 50.0" in md
  assert (tmp_path / "out" / "compare_return.png").stat().st_size > 0
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=str(empty)):
    compare.write([a, empty], tmp_path / "out2", plots=False)


def test_interval_hand_cases():
  assert compare.interval([3.0]) is None
  lo, hi = compare.interval([1.0, 1.0, 1.0])
  assert lo == hi == 1.0


def test_cli_report_over_several_run_directories(tmp_path, capsys):
  from simdist_jax import cli
  a, b = tmp_path / "a", tmp_path / "b"
  for wd, rets in ((a, [10, 30]), (b, [20, 50])):
    _write(wd, "simdist", rets)
    (wd / "config.json").write_text("{}")
  assert cli.main(["report", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
  md = (tmp_path / "cmp" / "compare.md").read_text()
  assert "- simdist: 15.0 -> 40.0" in md and "| simdist | 2 | 1 |" in md
  # Several directories need --out; a directory that is not a run directory is named.
  assert cli.main(["report", str(a), str(b)]) == 2
  assert "--out" in capsys.readouterr().err
  (tmp_path / "c").mkdir()
  assert cli.main(["report", str(a), str(tmp_path / "c"), "--out", str(tmp_path / "cmp2")]) == 2
  assert str(tmp_path / "c") in capsys.readouterr().err
