"""Loading a run directory for the instruments: the missing file is named, the instrument seeds are S*100000+70000+i."""
import argparse

import ml_collections
import pytest

from simdist_jax.analysis import run_dir


def test_missing_config_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
    run_dir.load(tmp_path / "run")


def test_probe_seeds_and_shared_flags():
  cfg = ml_collections.ConfigDict({"run": {"seed": 4}})
  run = run_dir.Run(cfg, None, None, {}, None, None)
  assert run_dir.probe_seeds(run, None, 3) == [470_000, 470_001, 470_002]
  assert run_dir.probe_seeds(run, 10, 2) == [10, 11]
  ap = argparse.ArgumentParser()
  run_dir.add_probe_args(ap, every=25)
  args = ap.parse_args(["--workdir", "w"])
  assert (args.workdir, args.model, args.episodes, args.every, args.seed_base, args.out) == ("w", None, 4, 25, None, None)
