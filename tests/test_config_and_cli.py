"""Config loading/overrides/freezing, run-directory checks, the CLI, and the pinned stack."""

import json
import os

import ml_collections
import pytest

from simdist_jax import cli
from simdist_jax import config as config_lib
from tests.conftest import CARTPOLE, ROOT


def test_sections_and_presets():
  for preset in ("small", "paper"):
    cfg = config_lib.load_config(f"{CARTPOLE}:{preset}")
    assert isinstance(cfg, ml_collections.FrozenConfigDict)
    for s in ("env", "domain", "expert", "data", "model", "planner", "adapt", "run"):
      assert s in cfg
    assert "sim" in cfg.domain and "real" in cfg.domain


def test_override_is_typed_and_frozen():
  cfg = config_lib.load_config(f"{CARTPOLE}:small", ["env.episode_length=123", "--config.env.init_noise=0.5"])
  assert cfg.env.episode_length == 123 and isinstance(cfg.env.episode_length, int)
  assert cfg.env.init_noise == 0.5
  with pytest.raises((AttributeError, TypeError, ValueError)):
    cfg.env.episode_length = 5  # frozen: no mutation after load


@pytest.mark.parametrize("override,message", [
    ("env.episode_lenght=3", "unknown config key 'env.episode_lenght'.*env.episode_length"),
    ("nosuch=1", "unknown config key 'nosuch'"),
    ("env.episode_length=abc", "cannot parse as int"),
    ("env.episode_length", "malformed override"),
    ("domain.sim.pole_mass=[1,2,3", "cannot parse as tuple"),
])
def test_bad_overrides_name_the_problem(override, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.load_config(f"{CARTPOLE}:small", [override])


def test_unknown_task_and_preset():
  with pytest.raises(config_lib.ConfigError, match="does not exist.*cartpole"):
    config_lib.load_config(str(ROOT / "experiments/configs/nosuchtask.py") + ":small")
  with pytest.raises(config_lib.ConfigError, match="unknown preset 'huge'"):
    config_lib.load_config(f"{CARTPOLE}:huge")


def test_run_dir_config_json_and_mismatch(tmp_path):
  cfg = config_lib.load_config(f"{CARTPOLE}:small")
  config_lib.prepare_run_dir(tmp_path / "run", cfg)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["env"]["episode_length"] == cfg.env.episode_length
  config_lib.prepare_run_dir(tmp_path / "run", cfg)  # same config: fine
  other = config_lib.load_config(f"{CARTPOLE}:small", ["env.episode_length=99"])
  with pytest.raises(config_lib.ConfigError, match="different config.*env.episode_length: 250 -> 99"):
    config_lib.prepare_run_dir(tmp_path / "run", other)
  # a stage directory only depends on the sections it declares
  config_lib.prepare_run_dir(tmp_path / "stage", cfg, sections=("domain",))
  config_lib.prepare_run_dir(tmp_path / "stage", other, sections=("domain",))
  # dotted sections: a changed real domain keeps a directory that only depends on the sim domain
  real = config_lib.load_config(f"{CARTPOLE}:small", ["domain.real.pole_mass=0.2"])
  config_lib.prepare_run_dir(tmp_path / "sim_side", cfg, sections=("domain.sim",))
  config_lib.prepare_run_dir(tmp_path / "sim_side", real, sections=("domain.sim",))
  with pytest.raises(config_lib.ConfigError, match=r"domain.real.pole_mass: 0.3 -> 0.2"):
    config_lib.prepare_run_dir(tmp_path / "sim_side", real, sections=("domain",))
  assert not list((tmp_path / "run").glob(".config.json.*"))  # no temp files left behind
  # the error carries the differences; a key only one side has is a difference too
  with pytest.raises(config_lib.StaleRunDirError) as e:
    config_lib.prepare_run_dir(tmp_path / "run", other, covers=lambda k: k.startswith("env."))
  assert e.value.diffs == [("env.episode_length", 250, 99)]
  rec = json.loads((tmp_path / "run" / "config.json").read_text())
  rec["env"]["added_later"] = 1
  (tmp_path / "run" / "config.json").write_text(json.dumps(rec))
  with pytest.raises(config_lib.StaleRunDirError, match=r"env.added_later: 1 -> '<absent>'"):
    config_lib.prepare_run_dir(tmp_path / "run", cfg, sections=("env",))


def test_cli_errors_leave_nothing_behind(tmp_path, capsys):
  wd = tmp_path / "wd"
  rc = cli.main(["env", f"--config={CARTPOLE}:small", "--config.env.nope=1", f"--workdir={wd}"])
  assert rc == 2
  assert "unknown config key 'env.nope'" in capsys.readouterr().err
  assert not wd.exists()
  rc = cli.main(["env", f"--config={CARTPOLE}:tiny", f"--workdir={wd}"])
  assert rc == 2 and not wd.exists()


def test_cli_env_stage_runs(tmp_path):
  wd = tmp_path / "wd"
  rc = cli.main(["env", f"--config={CARTPOLE}:small", "--config.env.episode_length=20", f"--workdir={wd}"])
  assert rc == 0
  info = json.loads((wd / "env" / "env_info.json").read_text())
  assert info["dims"]["proprio"] == 5 and info["n_substeps"] == 2
  assert 0.0 <= info["sim/random/mean_step_reward"] < 0.2   # random actions do not swing up
  assert json.loads((wd / "config.json").read_text())["env"]["episode_length"] == 20
  assert json.loads((wd / "env" / "config.json").read_text())["env"]["episode_length"] == 20  # the stage's record
  assert "[env] wrote" in (wd / "log.txt").read_text()  # the console output, appended
  # a changed dependency of env/ is refused before anything runs, and leaves both records as they were
  root = (wd / "config.json").read_bytes()
  rc = cli.main(["env", f"--config={CARTPOLE}:small", "--config.env.episode_length=30", f"--workdir={wd}"])
  assert rc == 2 and (wd / "config.json").read_bytes() == root
  assert "env.episode_length: 20 -> 30" in (wd / "log.txt").read_text()


# The core set of each lock the project tests on: requirements.txt (the default, `make test`) and
# requirements-jax-next.txt (`make test-jax-next`, the newest jax for Python 3.11, a proxy for the GPU image's 0.11).
_PINNED = {"jax": "0.9.2", "jaxlib": "0.9.2", "flax": "0.12.6", "optax": "0.2.8", "mujoco": "3.17.0",
           "mujoco-mjx": "3.17.0", "brax": "0.14.2", "orbax-checkpoint": "0.12.8", "chex": "0.1.92",
           "ml-collections": "1.1.0"}
LOCKS = {"requirements.txt": _PINNED,
         "requirements-jax-next.txt": {**_PINNED, "jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8"}}


def _pins(lock: str) -> dict[str, str]:
  pins = {}
  for line in (ROOT / lock).read_text().splitlines():
    line = line.split("#")[0].strip()
    if "==" in line:
      name, ver = line.split("==")
      pins[name.lower().replace("_", "-")] = ver
  return pins


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_the_tested_core_set(lock):
  """Each lock pins exactly the core versions this test knows (bump both together)."""
  pins = _pins(lock)
  for name, version in LOCKS[lock].items():
    assert pins.get(name) == version, f"{lock} pins {name}=={pins.get(name)}, expected {version}"


def test_installed_versions_match_pins():
  """Fails when the installed stack drifts from its lock: requirements.txt, or the file SIMDIST_LOCK names."""
  from importlib import metadata
  lock = os.environ.get("SIMDIST_LOCK", "requirements.txt")
  assert lock in LOCKS, f"SIMDIST_LOCK={lock!r}: not one of the tested locks {sorted(LOCKS)}"
  pins = _pins(lock)
  drift = {n: (v, metadata.version(n)) for n, v in pins.items() if metadata.version(n) != v}
  assert not drift, f"installed versions drift from {lock} pins (pinned, installed): {drift}"


def test_parse_variant():
  assert config_lib.parse_variant("default=") == ("default", [])
  assert config_lib.parse_variant("mix=adapt.sim_mix=0.25,model.finetune.train=all") == (
      "mix", ["adapt.sim_mix=0.25", "model.finetune.train=all"])
  for bad in ("nothing", "=adapt.sim_mix=0.5"):
    with pytest.raises(config_lib.ConfigError, match="NAME=key=value"):
      config_lib.parse_variant(bad)
