"""`benchmarks/gpu_suite.sh --dry-run` runs end to end on the CPU (tiny sizes, install skipped because the packages
import) and writes one JSON with the device, every step ok and finite figures of every benchmark.
About a minute on an idle 2-core CPU and 138 s beside two training jobs (2026-12-03; the suite's dry-run limits, 120 s a
step and 400 s in all, leave room for that), most of it XLA compiling the tiny pretraining steps.
"""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout")
def test_dry_run_writes_one_json_with_every_figure(tmp_path):
  out = tmp_path / "suite.json"
  env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_suite.sh"), "--dry-run", "--out", str(out)],
                        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
  res = json.loads(out.read_text())
  assert res["mode"] == "dry-run" and res["device"]["platform"] == "cpu" and res["device"]["count"] >= 1
  assert res["device"]["device_kind"] and res["device"]["jax"]
  assert res["steps"]["install"]["status"] == "skipped-importable"
  for name in ("smoke", "planner_paper", "pretrain", "pretrain_bf16", "data"):
    assert res["steps"][name]["status"] == "ok", (name, res["steps"][name]["log_tail"])
  fig = res["figures"]
  for key in ("planner_paper_N16_it1_T4_ours_p50_ms", "planner_paper_N16_it1_T4_ours_p99_ms",
              "pretrain_after_windows_per_s", "pretrain_batch", "pretrain_bf16_after_windows_per_s",
              "data_generation_transitions_per_s", "data_sampler_windows_per_s", "data_bytes_per_transition"):
    assert key in fig, (key, sorted(fig))
  assert all(isinstance(v, float) and math.isfinite(v) for v in fig.values())
  assert fig["planner_paper_N16_it1_T4_ours_p50_ms"] > 0 and fig["pretrain_after_windows_per_s"] > 0
  assert set(res["targets"]) == {"generation_transitions_per_s", "pretrain_windows_per_s", "planner_p50_ms",
                                 "planner_p99_ms"}
  assert res["total_s"] < res["budget_s"]
