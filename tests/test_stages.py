"""The stage table: fingerprints, stale-stage refusal, --restart-from, the workdir lock and the console log.

`run` is driven over fake stage functions (each writes one artifact and records its call), so these tests check
the bookkeeping in seconds; the real stages are exercised by their own tests and tests/test_pipeline_slow.py.
"""

import ast
import dataclasses
import fcntl
import json
import os
import pathlib
import subprocess
import sys

import pytest

from simdist_jax import cli
from simdist_jax import config as config_lib
from simdist_jax import pipeline, stages
from tests.conftest import CARTPOLE, ROOT

GO2 = str(ROOT / "experiments" / "configs" / "go2.py")
PEG = str(ROOT / "experiments" / "configs" / "peg_insertion.py")


def _cfg(*overrides):
  return config_lib.load_config(f"{CARTPOLE}:small", list(overrides))


def _artifact(name: str, workdir) -> pathlib.Path:
  st = stages.STAGES[name]
  return pathlib.Path(workdir) / st.dir / (st.owns[0] if st.owns else "artifact.json")


@pytest.fixture
def fake(monkeypatch):
  """Replaces the run function and completion check of every stage by fakes; returns the list of calls."""
  calls = []

  def make(name):
    def run(cfg, workdir):
      calls.append(name)
      print(f"fake {name} ran")
      print(f"fake {name} warning", file=sys.stderr)
      path = _artifact(name, workdir)
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(json.dumps(stages.fingerprint(name, cfg), sort_keys=True))

    def complete(cfg, workdir):
      del cfg
      return _artifact(name, workdir).exists()

    return run, complete

  for name in list(stages.STAGES):
    if name == "run":
      continue
    run, complete = make(name)
    st = stages.STAGES[name]
    monkeypatch.setitem(stages.STAGES, name, dataclasses.replace(
        st, run=run, complete=None if st.complete is None else complete))
  return calls


def _stale_set(cfg, workdir):
  with pytest.raises(stages.StaleStagesError) as e:
    pipeline.run_stage(cfg, workdir)
  return e.value


# ---- fingerprints -----------------------------------------------------------------------------------------------
def test_fingerprint_prefixes_excludes_and_upstream():
  # A key added to a section later is covered by the stages that read that section.
  assert stages.covers("expert", "expert.a_knob_added_later")
  assert stages.covers("generate", "data.another_new_key") and stages.covers("pretrain", "data.another_new_key")
  # Upstream fingerprints are part of a stage's own (transitively: adapt <- pretrain <- generate <- expert).
  assert stages.covers("adapt", "expert.entropy_cost") and stages.covers("report", "expert.entropy_cost")
  # Evaluation / logging keys never reach the artifacts that do not use them.
  for key in ("expert.eval_real_episodes", "expert.eval_sim_episodes", "expert.eval_seed",
              "expert.train_eval_episodes"):
    assert not stages.covers("expert", key) and not stages.covers("pretrain", key), key
  assert stages.covers("expert-eval", "expert.eval_real_episodes")
  assert not stages.covers("expert-eval", "expert.train_eval_episodes")  # it only logs during training
  for stage in ("expert", "generate", "pretrain"):
    assert not stages.covers(stage, "domain.real.pole_mass"), stage
    assert not stages.covers(stage, "planner.num_samples"), stage
    assert not stages.covers(stage, "adapt.rounds"), stage
  assert stages.covers("expert-eval", "domain.real.pole_mass") and stages.covers("adapt", "domain.real.pole_mass")
  assert not stages.covers("pretrain", "model.finetune.lr.peak") and stages.covers("adapt", "model.finetune.lr.peak")
  assert not stages.covers("adapt", "model.finetune.num_steps") and stages.covers("finetune", "model.finetune.num_steps")
  assert not stages.covers("generate", "data.window_start_margin")
  assert stages.covers("pretrain", "data.window_start_margin")
  for key in ("run.log_every_s", "model.log_every", "model.eval_every", "model.eval_batches"):
    assert not any(stages.covers(n, key) for n in stages.STAGES), key
  # the evaluation grid (tasks with initial-condition grids) moves the evaluations, never the expert or the data
  assert not stages.covers("expert", "env.eval_grid") and not stages.covers("pretrain", "env.eval_grid")
  assert stages.covers("adapt", "env.eval_grid") and stages.covers("baseline-bc", "env.eval_grid")


@pytest.mark.parametrize("spec", [f"{CARTPOLE}:small", f"{CARTPOLE}:paper", f"{GO2}:small", f"{PEG}:small"])
def test_every_config_key_is_in_some_fingerprint_or_log_only(spec):
  cfg = config_lib.load_config(spec)
  keys = [k for k, _ in config_lib.leaf_items(cfg)]
  uncovered = {k for k in keys if not any(stages.covers(n, k) for n in stages.STAGES)}
  assert uncovered == set(stages.LOG_ONLY)  # exactly the declared logging-only keys


def test_record_diff_names_absent_keys(tmp_path):
  cfg = _cfg()
  config_lib.prepare_run_dir(tmp_path, cfg, covers=lambda k: stages.covers("expert", k))
  rec = json.loads((tmp_path / "config.json").read_text())
  del rec["expert"]["entropy_cost"]  # a record from before a key existed
  (tmp_path / "config.json").write_text(json.dumps(rec))
  assert stages.stale_keys("expert", cfg, tmp_path.parent / "nope") is None  # no record
  diffs = config_lib.record_diff(tmp_path / "config.json", cfg, covers=lambda k: stages.covers("expert", k))
  assert diffs == [("expert.entropy_cost", config_lib.ABSENT, 0.01)]
  (tmp_path / "config.json").write_text('{"task": "cartpole", "env": {')
  with pytest.raises(config_lib.ConfigError, match=r"config.json' is not valid JSON"):
    config_lib.prepare_run_dir(tmp_path, cfg)


@pytest.mark.parametrize("spec", [f"{CARTPOLE}:small", f"{CARTPOLE}:paper", f"{GO2}:small", f"{PEG}:small"])
def test_added_keys_are_real_keys_of_every_task(spec):
  """Every `ADDED_KEYS` entry is a key of every task's config (so filling an old record never invents one)."""
  plain = json.loads(config_lib.to_json(config_lib.load_config(spec)))
  assert config_lib.with_added_keys(plain)[1] == []
  keys = {k for k, _ in config_lib.leaf_items(plain)}
  assert set(config_lib.ADDED_KEYS) <= keys


def test_a_record_from_before_a_key_existed_is_current_at_the_value_it_ran_with(tmp_path):
  """An adapt record without `planner.advantage_gate` / `gate_margin` (added later) agrees with the config while they
  are at the values it ran with (off, 0), and is stale once either changes; `from_json` reads the old record with
  the keys filled in, so `apply_overrides` can set them."""
  cfg = _cfg()
  covers = lambda k: stages.covers("adapt", k, cfg)  # noqa: E731
  config_lib.prepare_run_dir(tmp_path, cfg, covers=covers)
  rec = json.loads((tmp_path / "config.json").read_text())
  del rec["planner"]["advantage_gate"], rec["planner"]["gate_margin"], rec["model"]["dynamics_ensemble"]
  (tmp_path / "config.json").write_text(json.dumps(rec))
  assert config_lib.record_diff(tmp_path / "config.json", cfg, covers=covers) == []
  gated = _cfg("planner.advantage_gate=True")
  assert config_lib.record_diff(tmp_path / "config.json", gated, covers=lambda k: stages.covers("adapt", k, gated)) \
      == [("planner.advantage_gate", config_lib.ABSENT, True)]
  old = config_lib.from_json(json.dumps(rec))
  assert old.planner.advantage_gate is False and old.planner.gate_margin == 0.0 and old.model.dynamics_ensemble == 1
  assert config_lib.apply_overrides(old, ["planner.gate_margin=0.5"]).planner.gate_margin == 0.5


# ---- run: stale stages, --restart-from ------------------------------------------------------------------------
def test_dependency_change_stops_run_and_restart_recomputes_downstream(tmp_path, fake):
  wd = tmp_path / "wd"
  pipeline.run_stage(_cfg(), wd)
  assert fake == list(stages.RUN_ORDER)
  fake.clear()
  pipeline.run_stage(_cfg(), wd)
  assert fake == ["report"]  # everything else complete (the report always reruns)
  root = (wd / "config.json").read_bytes()

  fake.clear()
  changed = _cfg("expert.entropy_cost=0.5")
  err = _stale_set(changed, wd)
  assert fake == []  # nothing ran
  assert set(err.stale) == {"expert", "expert-eval", "generate", "data-report", "pretrain", "refine", "adapt"}
  assert all(d == [("expert.entropy_cost", 0.01, 0.5)] for d in err.stale.values())
  assert "--restart-from=expert" in str(err) and "expert.entropy_cost: 0.01 -> 0.5" in str(err)
  assert (wd / "config.json").read_bytes() == root  # the refused invocation did not touch the root config

  pipeline.run_stage(changed, wd, restart_from="expert")
  assert fake == list(stages.RUN_ORDER)
  stale = sorted(p.name.rsplit("-", 1)[0] for p in (wd / "stale").iterdir())
  assert stale == sorted(stages.RUN_ORDER)
  old_expert = next((wd / "stale").glob("expert-2*"))
  assert json.loads((old_expert / "config.json").read_text())["expert"]["entropy_cost"] == 0.01
  assert (old_expert / "artifact.json").exists() and not (old_expert / "expert_eval.json").exists()
  old_eval = next((wd / "stale").glob("expert-eval-*"))
  assert sorted(p.name for p in old_eval.iterdir()) == ["expert_eval.json", "expert_eval_config.json"]
  assert json.loads((wd / "expert" / "config.json").read_text())["expert"]["entropy_cost"] == 0.5
  assert json.loads((wd / "config.json").read_text())["expert"]["entropy_cost"] == 0.5
  fake.clear()
  pipeline.run_stage(changed, wd)
  assert fake == ["report"]


def test_restart_from_a_middle_stage_keeps_upstream(tmp_path, fake):
  wd = tmp_path / "wd"
  pipeline.run_stage(_cfg(), wd)
  expert_mtime = _artifact("expert", wd).stat().st_mtime_ns
  fake.clear()
  changed = _cfg("model.batch_size=64")
  assert set(_stale_set(changed, wd).stale) == {"pretrain", "refine", "adapt"}
  with pytest.raises(stages.StaleStagesError):  # restarting below the stale stage does not cover it
    pipeline.run_stage(changed, wd, restart_from="adapt")
  assert fake == []
  pipeline.run_stage(changed, wd, restart_from="pretrain")
  assert fake == ["pretrain", "refine", "adapt", "report"]
  assert _artifact("expert", wd).stat().st_mtime_ns == expert_mtime
  assert sorted(p.name.rsplit("-", 1)[0] for p in (wd / "stale").iterdir()) == ["adapt", "pretrain", "refine", "report"]
  with pytest.raises(config_lib.ConfigError, match=r"\['env'\] not a stage of `run`"):
    pipeline.run_stage(changed, wd, restart_from="pretrain,env")


@pytest.mark.parametrize("override,stale", [
    ("expert.eval_real_episodes=5", {"expert-eval"}),
    ("expert.eval_seed=7", {"expert-eval"}),
    ("expert.train_eval_episodes=8", set()),
    ("run.log_every_s=1.0", set()),
    ("model.log_every=7", set()),
    ("model.eval_batches=9", set()),
    ("planner.num_samples=32", {"adapt"}),
    ("model.finetune.batch_size=16", {"adapt"}),
    ("domain.real.pole_mass=0.5", {"expert-eval", "adapt"}),
    ("data.eval_fraction=0.2", {"pretrain", "refine", "adapt"}),
    ("data.p_expert=0.7", {"generate", "data-report", "pretrain", "refine", "adapt"}),
    ("refine.sim_mix=0.25", {"refine", "adapt"}),
])
def test_evaluation_only_keys_keep_upstream_stages(tmp_path, fake, override, stale):
  wd = tmp_path / "wd"
  pipeline.run_stage(_cfg(), wd)
  fake.clear()
  changed = _cfg(override)
  if not stale:
    pipeline.run_stage(changed, wd)
    assert fake == ["report"]
    return
  err = _stale_set(changed, wd)
  assert set(err.stale) == stale
  first = stages.roots(list(stale))
  assert f"--restart-from={','.join(first)}" in str(err)
  pipeline.run_stage(changed, wd, restart_from=",".join(first))
  assert set(fake) == stale | {"report"}  # upstream artifacts reused


# ---- the CLI: single stages, the root config, the lock, the console log --------------------------------------
def _main(wd, *args):
  return cli.main([args[0], f"--config={CARTPOLE}:small", f"--workdir={wd}", *args[1:]])


def test_single_stage_refuses_stale_upstream_and_own_record(tmp_path, fake, capsys):
  wd = tmp_path / "wd"
  assert _main(wd, "run") == 0
  fake.clear()
  capsys.readouterr()
  assert _main(wd, "pretrain", "--config.expert.entropy_cost=0.5") == 2
  err = capsys.readouterr().err
  assert "expert.entropy_cost: 0.01 -> 0.5" in err and "--restart-from=expert" in err and fake == []
  assert _main(wd, "pretrain", "--config.model.batch_size=64") == 2
  assert "model.batch_size: 128 -> 64" in capsys.readouterr().err and fake == []
  assert _main(wd, "adapt", "--config.planner.num_samples=32") == 2 and fake == []
  assert _main(wd, "pretrain", "--config.planner.num_samples=32") == 0  # pretrain does not read the planner
  assert fake == ["pretrain"]


def test_failing_invocations_leave_the_root_config_untouched(tmp_path, fake, capsys):
  wd = tmp_path / "wd"
  assert _main(wd, "run") == 0
  root = (wd / "config.json").read_bytes()
  fake.clear()
  for bad in ("--config.expert.num_iterations=-5", "--config.expert.num_iterations=abc", "--config.expert.nope=1",
              "--config.planner.num_samples=32"):
    assert _main(wd, "run", bad) == 2, bad
    assert (wd / "config.json").read_bytes() == root, bad
  assert fake == []
  assert "planner.num_samples: 64 -> 32" in capsys.readouterr().err
  assert _main(wd, "run", "--restart-from=adapt", "--config.planner.num_samples=32") == 0
  assert fake == ["adapt", "report"]
  assert json.loads((wd / "config.json").read_text())["planner"]["num_samples"] == 32


def test_a_second_invocation_stops_on_the_lock(tmp_path, fake, capsys):
  wd = tmp_path / "wd"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom simdist_jax import stages\n"
       "with stages.workdir_lock(sys.argv[1]):\n  print('locked', flush=True)\n  time.sleep(60)\n", str(wd)],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    assert _main(wd, "run") == 2
    err = capsys.readouterr().err
    assert f"workdir '{wd}' is in use" in err and f"PID {holder.pid}" in err
    assert fake == [] and not (wd / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()
  assert _main(wd, "run") == 0 and fake == list(stages.RUN_ORDER)  # released when the holder died
  with open(wd / stages.LOCK_FILE, "a+") as f:  # and released by the finished invocation
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.seek(0)
    assert f.read().strip() == str(os.getpid())  # the PID of the last holder
    with pytest.raises(stages.WorkdirLockedError, match=f"PID {os.getpid()}"):  # a second open in-process
      with stages.workdir_lock(wd):
        pass


def test_console_output_is_appended_to_log_txt(tmp_path, fake, capsys):
  wd = tmp_path / "wd"
  assert _main(wd, "run") == 0
  out = capsys.readouterr()
  assert "fake expert ran" in out.out and "fake expert warning" in out.err  # still printed
  assert _main(wd, "run", "--config.expert.entropy_cost=0.5") == 2
  log = (wd / "log.txt").read_text()
  assert log.count("==== ") == 2 and "simdist-jax run --config=" in log
  for text in ("fake expert ran", "fake expert warning", "[run] [1/8] expert: running", "fake report ran",
               "expert.entropy_cost: 0.01 -> 0.5"):
    assert text in log, text
  assert not isinstance(sys.stdout, cli._Tee)  # pylint: disable=protected-access


# ---- the table is the only registry -----------------------------------------------------------------------------
def test_the_table_lists_every_subcommand_and_nothing_else_registers_stages():
  parser = cli._parser()  # pylint: disable=protected-access
  sub = next(a for a in parser._actions if a.dest == "stage")  # pylint: disable=protected-access
  # every stage, plus the one alias `baseline --algo=NAME` of the stages baseline-NAME and `ablate` (a driver of
  # `run`'s stages over several run directories, simdist_jax/ablate.py)
  assert set(sub.choices) == set(stages.STAGES) | {"baseline", "ablate"}
  assert stages.BASELINES and all(f"baseline-{a}" in stages.STAGES for a in stages.BASELINES)
  algo = next(a for a in sub.choices["baseline"]._actions if a.dest == "algo")  # pylint: disable=protected-access
  assert tuple(algo.choices) == stages.BASELINES
  assert set(stages.RUN_ORDER) <= set(stages.STAGES)
  for name in stages.RUN_ORDER:  # upstream stages come first
    assert all(stages.RUN_ORDER.index(u) < stages.RUN_ORDER.index(name) for u in stages.STAGES[name].upstream
               if u in stages.RUN_ORDER), name
  names = set(stages.STAGES) - set(config_lib.SECTIONS)  # expert-eval, generate, ...: not config sections
  for path in (ROOT / "simdist_jax").rglob("*.py"):
    if path.name == "stages.py" and path.parent.name == "simdist_jax":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        elts = node.keys if isinstance(node, ast.Dict) else node.elts
        found = {e.value for e in elts if isinstance(e, ast.Constant) and e.value in names}
        assert len(found) < 2, f"{path} lists stages {sorted(found)}: register them in simdist_jax/stages.py"
      if isinstance(node, ast.Constant) and isinstance(node.value, str) and path.name == "cli.py":
        assert not node.value.startswith("simdist_jax."), f"cli.py names module {node.value}"


def test_every_stage_reference_resolves():
  for st in stages.STAGES.values():
    for ref in (st.run, st.complete):
      if ref is not None:
        module, _, fn = ref.partition(":")
        tree = ast.parse(pathlib.Path(ROOT / (module.replace(".", "/") + ".py")).read_text())
        assert fn in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, ref
