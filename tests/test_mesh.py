"""`run.mesh` data parallelism: the helpers, the load-time check, and 4 simulated CPU devices against one.

The multi-device checks run `tests/mesh_runs.py` in a fresh process with
`XLA_FLAGS=--xla_force_host_platform_device_count=4` (JAX fixes its device count at start). Tolerance of the
pretraining / finetuning comparisons: relative 1e-4 on every loss and on the sum of |params| (the batches, keys and
global batch are the same; only the order of the gradient's float reduction differs; measured: the tiny loss curve
agreed bitwise at steps 5..20, the params' |sum| to 2e-6).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from simdist_jax import mesh as mesh_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-4


def _run4(what, tmp_path, *meshes):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
    [ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
  out = subprocess.run([sys.executable, "-m", "tests.mesh_runs", what, str(tmp_path)] + [str(m) for m in meshes],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
  line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


def test_helpers_are_the_identity_without_a_mesh():
  assert [mesh_lib.resolve_size(v, 4) for v in (0, 1, -1, 2)] == [1, 1, 4, 2]
  with pytest.raises(ValueError, match="run.mesh=-3"):
    mesh_lib.resolve_size(-3, 4)
  assert mesh_lib.make_mesh(1) is None and mesh_lib.size(None) == 1
  assert mesh_lib.from_config({"run": {"mesh": 1}}) is None and mesh_lib.from_config({"run": {}}) is None
  tree = {"a": np.ones(3)}
  for fn in (mesh_lib.replicate, mesh_lib.shard, mesh_lib.constrain, mesh_lib.to_default_device):
    assert fn(tree, None) is tree
  mesh_lib.check_divisible(None, {"model.batch_size": 7})
  assert mesh_lib.problems(8, 4, {"model.batch_size": 32}) == [
    "run.mesh=8: must be <= jax.device_count()=4 (devices along the 'data' axis; -1 = every device)"]
  assert mesh_lib.problems(-1, 4, {"model.batch_size": 30, "data.num_envs": 8}) == [
    "run.mesh=-1: must divide model.batch_size=30 (4 devices, each takes an equal share of the batch)"]


def test_load_time_check_on_four_devices(tmp_path):
  """`load_config` accepts 0, 4, -1 and names run.mesh with the device count or the batch size it cannot split."""
  got = _run4("validate", tmp_path, 0, 4, -1, 8, 3, -2)
  assert got["0"] == got["4"] == got["-1"] == ""
  assert "run.mesh=8: must be <= jax.device_count()=4" in got["8"]
  for key in ("model.batch_size=128", "model.finetune.batch_size=32", "data.num_envs=256"):
    assert f"run.mesh=3: must divide {key}" in got["3"]
  assert "run.mesh=-2: must be an integer >= -1" in got["-2"]


@pytest.mark.slow  # 3 tiny pretraining runs, 2 compiles (~2 min on the loaded 2-core box)
def test_four_device_pretraining_matches_one_device(tmp_path):
  got = _run4("pretrain", tmp_path, 0, 1, 4)
  assert got["1"] == got["0"]  # mesh 1 is no mesh: the single-device program, bitwise
  one, four = got["0"], got["4"]
  assert sorted(four["curve"]) == sorted(one["curve"]) == ["10", "15", "20", "5"]
  for step, loss in one["curve"].items():
    np.testing.assert_allclose(four["curve"][step], loss, rtol=RTOL, err_msg=f"train/loss at step {step}")
  np.testing.assert_allclose(four["eval_loss"], one["eval_loss"], rtol=RTOL)
  np.testing.assert_allclose(four["params"], one["params"], rtol=RTOL)
  assert one["curve"]["20"] < 0.7 * one["curve"]["5"]  # it trained
  assert four["result_devices"] == [0]  # results come back to the default device


@pytest.mark.slow  # 2 tiny finetuning runs, 2 compiles (~80 s on the loaded 2-core box)
def test_four_device_finetuning_matches_one_device(tmp_path):
  got = _run4("finetune", tmp_path, 0, 4)
  one, four = got["0"], got["4"]
  assert one["frozen_equal"] and four["frozen_equal"]  # only the dynamics moved
  assert set(one["metrics"]) == set(four["metrics"])
  for k, v in one["metrics"].items():
    np.testing.assert_allclose(four["metrics"][k], v, rtol=RTOL, err_msg=k)
  np.testing.assert_allclose(four["dynamics"], one["dynamics"], rtol=RTOL)


@pytest.mark.slow  # 2 toy generations + 1 compile each (~30 s on the loaded 2-core box)
def test_four_device_generation_gives_the_same_dataset(tmp_path):
  got = _run4("generate", tmp_path, 0, 4)
  one, four = got["0"], got["4"]
  assert one["shards"] == {"steps_reward": [[10, 40]], "carry_policy_id": [[40]]}
  assert four["shards"] == {"steps_reward": [[10, 10]] * 4, "carry_policy_id": [[10]] * 4}  # 10 envs per device
  for k in ("transitions", "episodes", "bytes_on_disk"):
    assert four[k] == one[k], k
  for k in ("expert_flag_share", "noised_share"):
    np.testing.assert_allclose(four[k], one[k], rtol=1e-6)
  for name, st in one["scaler"].items():
    for stat in ("mean", "std"):
      np.testing.assert_allclose(four["scaler"][name][stat], st[stat], rtol=1e-5, atol=1e-7, err_msg=name)
