"""The ablation runner's planning (no stage runs): the rows load, which stages each row takes from the default run
(from the stage table's fingerprints), links vs copies, refused names, overrides and stale run directories, ETA."""

import json
import os

import ml_collections
import pytest

from simdist_jax import ablate
from simdist_jax import config as config_lib
from simdist_jax import stages
from tests.conftest import CARTPOLE

UPSTREAM = ("expert", "expert-eval", "generate", "data-report")


def _variant(cfg, overrides):
  return ml_collections.FrozenConfigDict(config_lib.apply_overrides(cfg, list(overrides)))


def test_every_row_loads_and_shares_what_it_does_not_change(cartpole_cfg):
  rows = ablate.select(None)
  assert [r.name for r in rows] == [ablate.DEFAULT, *ablate.names()]
  assert all(r.direction in ablate.DIRECTIONS and r.source for r in rows)
  cfgs = ablate.row_configs(CARTPOLE + ":full", [], rows)  # every row's overrides validate at `full`
  default = cfgs[ablate.DEFAULT]
  shared = {n: ablate.shared_stages(c, default) for n, c in cfgs.items()}
  for n in ("heads_mlp", "dynamics_ar_mlp"):  # a new model: own pretraining, the seed's expert and data
    assert shared[n] == UPSTREAM, n
    assert ablate.share_plan(shared[n]) == {"expert": "link", "data": "link"}
  for n in ("finetune_dynamics_encoder", "finetune_all", "no_terminal_value", "no_policy_prior",
            "warm_start_paper_code", "warm_start_shift"):  # planner / finetuning: the seed's pretrained model too
    # (and the sim refinement, off: at refine.rounds = 0 it reads neither the planner nor the finetuning keys)
    assert shared[n] == UPSTREAM + ("pretrain", "refine"), n
    assert ablate.share_plan(shared[n]) == {"expert": "link", "data": "link", "world_model": "link",
                                            "refine": "link"}
  assert shared[ablate.DEFAULT] == ablate.ORDER
  # A key no stage reads (log-only) changes nothing: the row is the default run itself.
  assert ablate.shared_stages(_variant(cartpole_cfg, ["run.log_every_s=3.0"]), cartpole_cfg) == ablate.ORDER


def test_a_new_real_world_copies_the_expert_without_its_evaluation(cartpole_cfg, tmp_path, monkeypatch):
  cfg = _variant(cartpole_cfg, ["domain.real.pole_mass=0.4"])
  shared = ablate.shared_stages(cfg, cartpole_cfg)
  # expert-eval and adapt read the real world; the expert, the data and the model do not
  assert shared == ("expert", "generate", "data-report", "pretrain", "refine")
  dirs = ablate.share_plan(shared)
  assert dirs == {"expert": "copy", "data": "link", "world_model": "link", "refine": "link"}
  base = tmp_path / "seed_0" / ablate.DEFAULT
  for f in ("ckpt/params.msgpack", "config.json", "expert_eval.json", "expert_eval_config.json", "expert_ladder.png"):
    (base / "expert" / f).parent.mkdir(parents=True, exist_ok=True)
    (base / "expert" / f).write_text(f)
  (base / "data").mkdir()
  (base / "world_model").mkdir()
  (base / "refine").mkdir()
  monkeypatch.setattr(stages, "is_complete", lambda *a: True)  # the default run's stages are done
  job = ablate.Job(0, "real04", tmp_path / "seed_0" / "real04", cfg, shared, dirs, base)
  assert ablate.link_shared(job) == ["expert (copy)", "data (link)", "world_model (link)", "refine (link)"]
  got = sorted(str(p.relative_to(job.workdir / "expert")) for p in (job.workdir / "expert").rglob("*") if p.is_file())
  assert got == ["ckpt/params.msgpack", "config.json"]  # expert-eval's files stay behind
  assert os.readlink(job.workdir / "data") == os.path.join("..", ablate.DEFAULT, "data")  # relative
  assert ablate.link_shared(job) == []  # existing links and copies are kept


def test_refused_names_and_overrides():
  with pytest.raises(config_lib.ConfigError, match="unknown ablation 'nope'; known: heads_mlp"):
    ablate.select(["heads_mlp", "nope"])
  with pytest.raises(config_lib.ConfigError, match="taken"):
    ablate.select([], ["heads_mlp=model.heads=mlp"])
  with pytest.raises(config_lib.ConfigError, match="expected NAME=key=value"):
    ablate.select([], ["=model.heads=mlp"])
  rows = ablate.select(["no_terminal_value"], ["mine=planner.no_such_key=1"])
  assert [r.name for r in rows] == [ablate.DEFAULT, "no_terminal_value", "mine"] and rows[2].direction == "none"
  with pytest.raises(config_lib.ConfigError, match=r"ablation 'mine' \(planner.no_such_key=1\): unknown config key "
                                                   r"'planner.no_such_key'"):
    ablate.row_configs(CARTPOLE + ":small", [], rows)
  with pytest.raises(config_lib.ConfigError, match="--seeds"):
    ablate.row_configs(CARTPOLE + ":small", ["--config.run.seed=3"], rows[:1])


def test_plan_jobs_and_a_stale_run_directory_is_refused(cartpole_cfg, tmp_path):
  cfgs = {ablate.DEFAULT: cartpole_cfg, "no_terminal_value": _variant(cartpole_cfg, ["planner.terminal_discount=none"]),
          "noop": _variant(cartpole_cfg, ["run.log_every_s=3.0"])}
  jobs = ablate.plan(tmp_path, cfgs, [0, 5])
  assert [j.label for j in jobs] == ["seed_0/simdist", "seed_0/no_terminal_value", "seed_0/noop",
                                     "seed_5/simdist", "seed_5/no_terminal_value", "seed_5/noop"]
  assert [int(j.cfg.run.seed) for j in jobs] == [0, 0, 0, 5, 5, 5]
  assert jobs[4].base == tmp_path / "seed_5" / "simdist" and jobs[3].base is None
  assert jobs[2].identical and not jobs[1].identical and jobs[2].pending() == []
  assert jobs[1].pending() == ["adapt"] and jobs[0].pending() == list(ablate.ORDER)
  ablate.check_jobs(jobs)  # nothing on disk yet
  # The row's adapt directory made with another planner: refused before anything runs, naming the key.
  stages.prepare("adapt", _variant(jobs[1].cfg, ["planner.warm_start=shift"]), jobs[1].workdir)
  with pytest.raises(stages.StaleStagesError, match="planner.warm_start"):
    ablate.check_jobs(jobs)


def test_manifest_merges_rows_and_seeds(cartpole_cfg, tmp_path):
  rows = ablate.select(["no_terminal_value"])
  cfgs = {ablate.DEFAULT: cartpole_cfg, "no_terminal_value": _variant(cartpole_cfg, rows[1].overrides)}
  ablate.write_manifest(tmp_path, "c.py:small", [], rows, ablate.plan(tmp_path, cfgs, [1]), [1])
  rows2 = ablate.select(["warm_start_shift", "no_policy_prior"])
  cfgs2 = {ablate.DEFAULT: cartpole_cfg, **{r.name: _variant(cartpole_cfg, r.overrides) for r in rows2[1:]}}
  man = ablate.write_manifest(tmp_path, "c.py:small", [], rows2, ablate.plan(tmp_path, cfgs2, [0]), [0])
  assert man["seeds"] == [0, 1] and set(man["rows"]) == {"simdist", "no_terminal_value", "warm_start_shift",
                                                         "no_policy_prior"}
  assert man["rows"]["no_terminal_value"]["shares"] == list(UPSTREAM) + ["pretrain", "refine"]
  assert man["contrasts"] == [{"row": "no_policy_prior", "ref": "warm_start_shift", "direction": "worse",
                               "source": ablate.CONTRASTS[1].source}]
  assert json.loads((tmp_path / ablate.MANIFEST).read_text()) == man


def test_eta():
  times = {"pretrain": [100.0, 140.0], "adapt": [600.0]}
  assert ablate.eta(["pretrain", "adapt", "adapt"], times) == "22m00s"  # mean 120 + 2 x 600 = 1320 s
  assert ablate.eta(["adapt"] * 7, times) == "1h10m"
  assert ablate.eta(["adapt"], times) == "10m00s"
  assert ablate.eta(["expert", "adapt"], times) == ">= 10m00s + expert (not measured yet)"
  assert ablate.eta([], times) == "0m00s"


def test_a_seed_in_use_is_refused_at_once(tmp_path):
  # Commands on one root exclude each other per seed (disjoint seeds may run side by side, one per core).
  with stages.workdir_lock(tmp_path / "seed_0"):
    with pytest.raises(stages.WorkdirLockedError, match="seed_0"):
      ablate.run(CARTPOLE + ":small", [], [0], tmp_path, ["no_terminal_value"], log=lambda msg: None)
  assert not (tmp_path / ablate.MANIFEST).exists()  # nothing was written
