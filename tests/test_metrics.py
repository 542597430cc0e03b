"""MetricsWriter: no repeated steps after a resume, partial last lines dropped, in-run lines never dropped."""

import json

from simdist_jax.metrics import MetricsWriter


def _steps(d):
  return [json.loads(l)["step"] for l in (d / "metrics.jsonl").read_text().splitlines()]


def _killed_run(d, steps):
  w = MetricsWriter(d)
  for s in steps:
    w.write(s, {"train/loss": float(s)})
  w.close()


def test_resume_step_drops_the_lines_after_it(tmp_path):
  _killed_run(tmp_path, range(10, 80, 10))  # checkpoint at 50, killed after logging 70
  w = MetricsWriter(tmp_path, resume_step=50)
  assert _steps(tmp_path) == [10, 20, 30, 40, 50]
  for s in (60, 70, 80):
    w.write(s, {"train/loss": -float(s)})
  w.close()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [10, 20, 30, 40, 50, 60, 70, 80]
  assert [l["train/loss"] for l in lines[-3:]] == [-60.0, -70.0, -80.0]  # the resumed run's values


def test_without_resume_step_a_rewritten_step_supersedes_the_old_lines(tmp_path):
  _killed_run(tmp_path, [10, 20, 20, 30, 40])  # two lines at 20 (train + eval) are both kept within a run
  assert _steps(tmp_path) == [10, 20, 20, 30, 40]
  w = MetricsWriter(tmp_path)
  assert _steps(tmp_path) == [10, 20, 20, 30, 40]  # nothing is dropped before a step is rewritten
  w.write(30, {"a": 1.0})  # the resumed run rewrites 30: the old 30 and 40 go
  assert _steps(tmp_path) == [10, 20, 20, 30]
  w.write(30, {"b": 2.0})  # a second line of this run at the same step stays
  w.write(40, {"a": 3.0})
  w.close()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [10, 20, 20, 30, 30, 40]
  assert lines[3] == {"step": 30, "a": 1.0} and lines[4] == {"step": 30, "b": 2.0}


def test_partial_last_line_is_dropped(tmp_path, capsys):
  _killed_run(tmp_path, [1, 2, 3])
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "train/lo')  # killed mid-write
  w = MetricsWriter(tmp_path, resume_step=3)
  w.write(4, {"x": 1.0})
  w.close()
  assert _steps(tmp_path) == [1, 2, 3, 4]
  assert "dropped 1 partial/unparsable line" in capsys.readouterr().out


def test_fresh_start_over_an_old_file_drops_everything(tmp_path):
  _killed_run(tmp_path, [0, 5])
  w = MetricsWriter(tmp_path, resume_step=-1)
  w.write(0, {"x": 1.0})
  w.close()
  assert _steps(tmp_path) == [0]
  assert list(tmp_path.glob("events.out.tfevents.*"))
