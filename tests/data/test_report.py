"""data-report numbers agree with direct computations on the stored arrays."""

import json

import numpy as np

from simdist_jax.data import report, storage
from tests.data import generated_dataset


def test_report_matches_direct_computation(tmp_path, capsys):
  d = generated_dataset()
  work = tmp_path / "run"
  work.mkdir()
  (work / "data").symlink_to(d)
  r = report.run_stage(None, work)
  printed = capsys.readouterr().out
  assert "clean expert actions" in printed and "per policy" in printed
  assert json.loads((d / "data_report.json").read_text())["transitions"] == 12000

  man, a = storage.load_all(d, ["reward", "episode_id", "policy_id", "noised", "expert_flag"])
  assert r["transitions"] == 12000 and r["episodes"] == man["episodes"] == len(np.unique(a["episode_id"]))
  assert r["share_clean_expert"] == a["expert_flag"].mean() == man["expert_flag_share"]
  assert sum(v["steps"] for v in r["per_policy"].values()) == 12000
  assert r["per_policy"]["3"]["expert"] and r["per_policy"]["3"]["iteration"] == 100
  # Expert return mean over complete episodes, recomputed: episodes of env j whose id is not env j's last id.
  ep, rew, pid = a["episode_id"], a["reward"], a["policy_id"]
  rets = []
  for j in range(ep.shape[1]):
    ids = np.unique(ep[:, j])
    for e in ids[:-1]:
      sel = ep[:, j] == e
      if pid[sel, j][0] == 3:
        rets.append(rew[sel, j].astype(np.float64).sum())
  assert r["per_policy"]["3"]["return"]["count"] == len(rets) > 20
  np.testing.assert_allclose(r["per_policy"]["3"]["return"]["mean"], np.mean(rets), rtol=1e-9)
  # The expert (PD to the command) beats the unstable checkpoint 1 per step.
  assert r["per_policy"]["3"]["return_per_step"]["mean"] > r["per_policy"]["1"]["return_per_step"]["mean"]
  nz = r["noise"]
  assert nz["never_noised_envs"] == 4 and abs(nz["noised_share"] - a["noised"].mean()) < 1e-12
  assert 1 <= nz["noisy_interval"]["min"] and nz["noisy_interval"]["max"] <= 8
  assert 5 <= nz["clean_interval"]["min"] and nz["clean_interval"]["max"] <= 20
  assert abs(r["share_expert_and_not_noised"] + r["share_flag_by_clip_coincidence"] - r["share_clean_expert"]) < 1e-12
