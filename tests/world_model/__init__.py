"""Tests of `simdist_jax.world_model`; shared helpers for the test modules."""

import ml_collections

from experiments.configs.sections import model as model_section

QUADRUPED_DIMS = {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3}


def tiny_config(dims: dict, **overrides) -> ml_collections.ConfigDict:  # noqa: ANN003
  """Full config (`model` at the `tiny` preset + `run.seed`) with `model.<k> = v` overrides."""
  m = model_section.get("synthetic", "tiny", dims)
  for k, v in overrides.items():
    m[k] = v
  return ml_collections.ConfigDict({"model": m, "run": {"seed": 0}})
