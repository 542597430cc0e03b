"""Planner config section: paper values, presets, conversion to PlannerConfig, a comment on every field."""

import dataclasses
import inspect

import pytest

from experiments.configs.sections import planner as planner_section
from simdist_jax.planner import mppi

GO2_DIMS = {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3}
CARTPOLE_DIMS = {"proprio": 4, "extero": 0, "extero_shape": (0,), "action": 1, "command": 0}


def test_paper_preset_matches_official_values():
  cfg = mppi.PlannerConfig.from_config(planner_section.get("go2", "paper", GO2_DIMS))
  assert (cfg.num_samples, cfg.num_prior_samples, cfg.total_samples) == (450, 22, 472)
  assert (cfg.iterations, cfg.num_elites, cfg.horizon) == (8, 64, 25)
  assert (cfg.inverse_temperature, cfg.init_std, cfg.min_std, cfg.prior_std) == (0.25, 2.0, 0.05, 0.05)
  assert (cfg.momentum, cfg.discount, cfg.warm_start, cfg.mode) == (0.0, 0.99, "shift", "mppi")
  assert cfg == mppi.PlannerConfig(action_low=-10.0, action_high=10.0)  # the dataclass defaults are the paper's


def test_tdmpc2_and_small_presets():
  td = mppi.PlannerConfig.from_config(planner_section.get("go2", "paper_tdmpc2", GO2_DIMS))
  assert (td.num_samples, td.num_prior_samples, td.iterations, td.inverse_temperature) == (512, 24, 6, 0.5)
  assert (td.shift_fill, td.horizon) == ("zero", 25)
  small = planner_section.get("cartpole", "small", CARTPOLE_DIMS)
  cfg = mppi.PlannerConfig.from_config(small)
  assert (cfg.num_samples, cfg.num_prior_samples, cfg.iterations, cfg.horizon) == (64, 16, 2, 10)
  assert (cfg.warm_start, cfg.init_std, cfg.min_std, cfg.prior_cost) == ("policy", 0.3, 0.01, 0.0)
  assert td.prior_cost == 0.0  # the published planners rank by R alone
  assert (cfg.action_low, cfg.action_high) == (-1.0, 1.0)
  with_t = mppi.PlannerConfig.from_config(planner_section.get("cartpole", "small", {**CARTPOLE_DIMS, "horizon": 7}))
  assert with_t.horizon == 7
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
