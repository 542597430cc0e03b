"""Planner config section: paper values, presets, conversion to PlannerConfig, a comment on every field."""

import dataclasses
import inspect

import pytest

from experiments.configs.sections import planner as planner_section
from simdist_jax.planner import mppi

GO2_DIMS = {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3}
CARTPOLE_DIMS = {"proprio": 4, "extero": 0, "extero_shape": (0,), "action": 1, "command": 0}


def test_paper_preset_matches_official_values():
  cfg = mppi.PlannerConfig.from_config(planner_section.get("go2", "paper", GO2_DIMS), model_horizon=25)
  assert (cfg.num_samples, cfg.num_prior_samples, cfg.total_samples) == (450, 22, 472)
  assert (cfg.iterations, cfg.num_elites, cfg.horizon) == (8, 64, 25)
  assert (cfg.inverse_temperature, cfg.init_std, cfg.min_std, cfg.prior_std) == (0.25, 2.0, 0.05, 0.05)
  assert (cfg.momentum, cfg.discount, cfg.warm_start, cfg.mode) == (0.0, 0.99, "shift", "mppi")
  assert cfg == mppi.PlannerConfig(action_low=-10.0, action_high=10.0)  # the dataclass defaults are the paper's


def test_tdmpc2_and_small_presets():
  td = mppi.PlannerConfig.from_config(planner_section.get("go2", "paper_tdmpc2", GO2_DIMS), model_horizon=25)
  assert (td.num_samples, td.num_prior_samples, td.iterations, td.inverse_temperature) == (512, 24, 6, 0.5)
  assert (td.shift_fill, td.horizon) == ("zero", 25)
  small = planner_section.get("cartpole", "small", CARTPOLE_DIMS)
  cfg = mppi.PlannerConfig.from_config(small, model_horizon=10)
  assert (cfg.num_samples, cfg.num_prior_samples, cfg.iterations, cfg.horizon) == (64, 16, 2, 10)
  assert (cfg.warm_start, cfg.init_std, cfg.min_std, cfg.prior_cost) == ("policy", 0.3, 0.01, 0.0)
  assert td.prior_cost == 0.0  # the published planners rank by R alone
  assert (cfg.action_low, cfg.action_high) == (-1.0, 1.0)
  assert small["horizon"] == 0  # 0 = the model's T, resolved when the planner is built
  assert mppi.PlannerConfig.from_config(small, model_horizon=7).horizon == 7
  with pytest.raises(ValueError, match="preset"):
    planner_section.get("go2", "huge", GO2_DIMS)


def test_every_field_is_commented_and_converted():
  section = planner_section.get("go2", "paper", GO2_DIMS)
  src = inspect.getsource(planner_section.get)
  lines = src.splitlines()
  for name in section.keys():
    idx = next(i for i, l in enumerate(lines) if l.strip().startswith(f"c.{name} ="))
    assert lines[idx - 1].strip().startswith("#"), f"field {name} has no comment above it"
  fields = {f.name for f in dataclasses.fields(mppi.PlannerConfig)}
  # Every PlannerConfig field comes from the section (num_prior_samples via prior_share).
  assert fields - set(section.keys()) == {"num_prior_samples"}
  assert set(section.keys()) - fields == {"prior_share", "preset_style"}


def test_prior_count_rounding():
  assert mppi.num_prior_samples(450, 0.05) == 22  # int(22.5), as the official code
  assert mppi.num_prior_samples(192, 16 / 192) == 16
  assert mppi.num_prior_samples(100, 0.0) == 0


def _small(**changes):
  section = planner_section.get("cartpole", "small", CARTPOLE_DIMS).to_dict()
  section.update(changes)
  return section


def test_horizon_zero_is_the_model_horizon_and_h_above_t_is_refused():
  assert mppi.PlannerConfig.from_config(_small(), model_horizon=12).horizon == 12
  assert mppi.PlannerConfig.from_config(_small(horizon=5), model_horizon=12).horizon == 5
  assert mppi.PlannerConfig.from_config(_small(horizon=5)).horizon == 5  # explicit h needs no T
  with pytest.raises(ValueError, match=r"horizon=13: must be in \[1, model.horizon T=12\]"):
    mppi.PlannerConfig.from_config(_small(horizon=13), model_horizon=12)
  with pytest.raises(ValueError, match="horizon=-1"):
    mppi.PlannerConfig.from_config(_small(horizon=-1), model_horizon=12)
  with pytest.raises(ValueError, match="horizon=0: means the model's T"):
    mppi.PlannerConfig.from_config(_small())


def test_planner_config_rejects_bad_values_directly():
  ok = mppi.PlannerConfig(num_samples=8, num_prior_samples=0, num_elites=4, horizon=3)
  assert ok.total_samples == 8
  for field, value, message in [
      ("discount", 5.0, r"discount=5.0: must be in \(0, 1\]"),
      ("discount", 0.0, r"discount=0.0: must be in \(0, 1\]"),
      ("discount", float("nan"), r"discount=nan"),
      ("inverse_temperature", -1.0, r"inverse_temperature=-1.0: must be > 0"),
      ("init_std", -0.1, r"init_std=-0.1: must be >= 0"),
      ("num_elites", 9, r"num_elites=9: must be in \[1, num_samples \+ num_prior_samples = 8\]"),
      ("action_low", 2.0, r"action_low=2.0: must be finite and <= action_high=1.0"),
      ("action_low", (-1.0, 1.5), r"action_low=\(-1.0, 1.5\): must be finite and <= action_high"),
      ("action_high", (1.0, 1.0, 1.0), None),  # broadcast against the scalar low: fine
  ]:
    if message is None:
      dataclasses.replace(ok, **{field: value})
      continue
    with pytest.raises(ValueError, match=message):
      dataclasses.replace(ok, **{field: value})
  with pytest.raises(ValueError, match="sequences of one length"):
    dataclasses.replace(ok, action_low=(-1.0, -1.0), action_high=(1.0, 1.0, 1.0))
  # every bad field is listed at once
  with pytest.raises(ValueError, match=r"discount=5.0.*; inverse_temperature=-1.0"):
    dataclasses.replace(ok, discount=5.0, inverse_temperature=-1.0)
  with pytest.raises(ValueError, match=r"prior_share=1.5: must be in \[0, 1\]"):
    mppi.PlannerConfig.from_config(_small(prior_share=1.5), model_horizon=10)
