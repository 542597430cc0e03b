"""The planner against the real world model (tiny preset): shapes, bounds, no recompile on new params. Slow."""

import dataclasses

import jax
import numpy as np
import pytest

from experiments.configs.sections import model as model_section
from experiments.configs.sections import planner as planner_section
from simdist_jax.planner import controller
from simdist_jax.planner import mppi
from simdist_jax.world_model import model as model_lib

DIMS = {"proprio": 4, "extero": 0, "extero_shape": (0,), "action": 1, "command": 0}


@pytest.mark.slow
def test_controller_runs_on_real_world_model():
  model_cfg = model_section.get("cartpole", "tiny", DIMS)
  model = model_lib.make_world_model(model_cfg, DIMS)
  t = int(model_cfg.horizon)
  section = planner_section.get("cartpole", "small", {**DIMS, "horizon": t})
  cfg = dataclasses.replace(mppi.PlannerConfig.from_config(section, model_horizon=t), num_samples=32,
                            num_prior_samples=4, num_elites=8, iterations=2)
  ctrl = controller.Controller(cfg, model, model.init(jax.random.key(0)), DIMS, history=int(model_cfg.history),
                               key=jax.random.key(1), model_horizon=t)
  rng = np.random.default_rng(0)
  actions = [ctrl(rng.normal(size=4).astype(np.float32)) for _ in range(3)]
  ctrl.set_variables(model.init(jax.random.key(2)))  # "finetuned" params: same compiled step
  actions.append(ctrl(rng.normal(size=4).astype(np.float32)))
  assert ctrl._act._cache_size() == 1  # pylint: disable=protected-access
  a = np.stack(actions)
  assert a.shape == (4, 1) and np.all(np.isfinite(a)) and np.abs(a).max() <= 1.0
  assert int(ctrl.last_info["planner/nonfinite_fallback"]) == 0
  assert ctrl.state.planner.mean.shape == (t, 1)
