"""Multi-host runs (`simdist_jax.distributed`): the settings from config and environment, the refusals, and (slow) a
2-process `jax.distributed` pretraining on localhost against one process with the same two devices."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from simdist_jax import cli
from simdist_jax import distributed
from tests.conftest import CARTPOLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(**run):
  return {"run": {"mesh": -1, **run}}


def test_settings_from_config_and_environment():
  one = distributed.Settings("", 1, 0)
  assert distributed.settings({"run": {}}, {}) == one and not one.multi  # defaults: one process
  assert distributed.settings(_run(coordinator="", num_processes=0, process_id=-1), {}) == one
  cfg = _run(coordinator="h:1", num_processes=2, process_id=1)
  assert distributed.settings(cfg, {}) == distributed.Settings("h:1", 2, 1)
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:9", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert distributed.settings(_run(num_processes=0, process_id=-1), env) == distributed.Settings("10.0.0.1:9", 4, 3)
  assert distributed.settings(_run(num_processes=0, process_id=2), env).process_id == 2  # the key wins
  bad = [({"run": {"num_processes": 2, "process_id": 0}}, {}, "run.num_processes=2: needs a coordinator address"),
         (_run(coordinator="h:1", num_processes=2, process_id=2), {}, r"run.process_id=2: must be in \[0, 2\)"),
         (_run(coordinator="h:1", num_processes=2), {}, "JAX_PROCESS_ID=None: must be in"),
         ({"run": {"coordinator": "h:1", "num_processes": 2, "process_id": 0, "mesh": 0}}, {},
          "run.mesh=0: must be -1 with 2 processes"),
         (_run(coordinator="h", num_processes=2, process_id=0), {}, "run.coordinator='h': must be host:port"),
         (_run(), {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two': must be an integer"),
         (_run(process_id=1), {}, "run.process_id=1: must be 0 in a single-process run")]
  for cfg, environ, msg in bad:
    with pytest.raises(distributed.DistributedConfigError, match=msg):
      distributed.settings(cfg, environ)
  assert distributed.initialize(one) is False  # one process: jax.distributed is never started


def test_cli_refuses_bad_settings_and_single_process_stages(capsys, tmp_path):
  base = ["--config=" + f"{CARTPOLE}:small", f"--workdir={tmp_path}"]
  multi = ["--config.run.coordinator=localhost:1", "--config.run.num_processes=2", "--config.run.process_id=0",
           "--config.run.mesh=-1"]
  assert cli.main(["generate"] + base + multi) == 2
  assert "stage 'generate' runs in one process; multi-process stages: ['pretrain']" in capsys.readouterr().err
  assert cli.main(["pretrain"] + base + multi[1:]) == 2
  assert "run.num_processes=2: needs a coordinator address" in capsys.readouterr().err
  assert not any(tmp_path.iterdir())  # refused before anything was written


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _write_data(workdir):
  """A CartPole-layout dataset (16 envs x 200 steps, 2 shards, 50-step episodes) with the storage writer."""
  from simdist_jax.data import storage  # pylint: disable=import-outside-toplevel
  n, s = 16, 100
  rng = np.random.default_rng(0)

  def chunk(i):
    steps = np.arange(i * s, (i + 1) * s)[:, None]
    return {"proprio": rng.normal(size=(s, n, 5)).astype(np.float32), "extero": np.zeros((s, n, 0), np.float32),
            "command": np.zeros((s, n, 0), np.float32), "action": rng.uniform(-1, 1, (s, n, 1)).astype(np.float32),
            "reward": rng.normal(size=(s, n)).astype(np.float32), "value": rng.normal(size=(s, n)).astype(np.float32),
            "expert_flag": np.ones((s, n), np.uint8), "noised": np.zeros((s, n), np.uint8),
            "policy_id": np.zeros((s, n), np.uint8),
            "episode_id": ((steps // 50) * n + np.arange(n)).astype(np.int32)}
  storage.write_dataset(os.path.join(workdir, "data"), [chunk(0), chunk(1)],
                        {"proprio": 5, "extero": 0, "extero_shape": (), "action": 1, "command": 0})


_TINY = ["--config.model.num_steps=6", "--config.model.batch_size=8", "--config.model.log_every=3",
         "--config.model.eval_every=6", "--config.model.checkpoint_every=6", "--config.model.eval_batches=1",
         "--config.run.mesh=-1"]


def _launch(workdir, devices, extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
    [ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
  for k in distributed.ENV.values():
    env.pop(k, None)
  cmd = [sys.executable, "-m", "simdist_jax.cli", "pretrain", f"--config={CARTPOLE}:small", f"--workdir={workdir}"]
  return subprocess.Popen(cmd + _TINY + extra, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _losses(text):
  """{step: train loss} and the final eval loss printed by `pretrain`."""
  train = {int(m[1]): float(m[2]) for m in re.finditer(r"\[world_model\] step (\d+)/\d+ loss ([0-9.]+)", text)}
  ev = re.search(r"eval/loss=([0-9.]+)", text)
  return train, float(ev[1]) if ev else None


@pytest.mark.slow  # 3 tiny pretraining runs in fresh processes, two of them side by side (~3 min, 2-core box)
def test_two_process_pretraining_on_localhost_matches_one_process(tmp_path):
  """`simdist-jax pretrain` as 2 `jax.distributed` processes (1 CPU device each, gloo collectives, one shared
  workdir) completes, both processes print the same losses, and those are the losses of 1 process with 2 devices
  (same global batch and keys; only the order of the gradient's reduction differs)."""
  wd2, wd1 = tmp_path / "two_processes", tmp_path / "one_process"
  for wd in (wd2, wd1):
    _write_data(wd)
  port = _free_port()
  procs = [_launch(wd2, 1, [f"--config.run.coordinator=localhost:{port}", "--config.run.num_processes=2",
                            f"--config.run.process_id={i}"]) for i in range(2)]
  outs = [p.communicate(timeout=900)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
    assert p.returncode == 0, (i, out[-4000:])
    assert "data parallel over 2 devices (cpu)" in out, out[-2000:]
  single = _launch(wd1, 2, [])
  out1 = single.communicate(timeout=900)[0]
  assert single.returncode == 0, out1[-4000:]
  (t0, e0), (t1, e1), (ts, es) = _losses(outs[0]), _losses(outs[1]), _losses(out1)
  assert sorted(t0) == [3, 6] and t0 == t1 and e0 == e1  # the two processes agree (printed to 4 decimals)
  assert sorted(ts) == [3, 6]
  np.testing.assert_allclose([t0[3], t0[6], e0], [ts[3], ts[6], es], rtol=1e-3)  # 4 printed decimals
  # process 0 wrote the records, the metrics and log.txt; process 1 only its log; one checkpoint at step 6
  metrics = [json.loads(x) for x in (wd2 / "world_model" / "metrics.jsonl").read_text().splitlines()]
  train = [m for m in metrics if "train/loss" in m]
  assert [m["step"] for m in train] == [3, 6]  # once: process 1 wrote no metrics
  np.testing.assert_allclose(train[-1]["train/loss"], t0[6], atol=1e-4)
  print(f"2 processes: train loss {t0}, eval {e0}; 1 process x 2 devices: train loss {ts}, eval {es}")
  assert (wd2 / "log.txt").exists() and (wd2 / "log.process1.txt").exists()
  assert json.loads((wd2 / "config.json").read_text())["run"]["process_id"] == 0
  assert sorted(p.name for p in (wd2 / "world_model" / "checkpoints").iterdir()) == ["6"]
