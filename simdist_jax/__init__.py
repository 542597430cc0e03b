"""simdist_jax: Simulation Distillation (SimDist) in pure JAX/MJX.

Pipeline: `simdist-jax run --config=experiments/configs/<task>.py:<preset>` (see README.md). As a library, the
pure pieces are importable without the CLI:

  import simdist_jax as sd
  cfg = sd.load_config("experiments/configs/cartpole.py:small")   # frozen ml-collections config
  model = sd.make_world_model(...)       # simdist_jax.world_model: latent world model, losses, pretraining
  sd.plan(planner_cfg, model, ...)       # simdist_jax.planner: MPPI/CEM over the world model (PlannerConfig)

Importing this package is cheap: the attributes below are resolved on first use (PEP 562), so `import
simdist_jax` pulls in neither JAX nor MuJoCo. Its one side effect is a stdlib-only import hook that keeps MJX's
optional warp backend from printing "Failed to import warp" when warp is not installed (see `_quiet_warp`).
"""

import importlib

from simdist_jax import _quiet_warp

__version__ = "0.1.0"  # the package version (pyproject.toml reads it)

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "config": ("simdist_jax.config", None),
    "envs": ("simdist_jax.envs", None),
    "planner": ("simdist_jax.planner", None),
    "world_model": ("simdist_jax.world_model", None),
    "load_config": ("simdist_jax.config", "load_config"),
    "PlannerConfig": ("simdist_jax.planner", "PlannerConfig"),
    "plan": ("simdist_jax.planner", "plan"),
    "make_plan_fn": ("simdist_jax.planner", "make_plan_fn"),
    "make_world_model": ("simdist_jax.world_model", "make_world_model"),
}

__all__ = ["__version__", *_LAZY]

_quiet_warp.install()


def __getattr__(name: str):
  """Resolves the public names of `_LAZY` on first access."""
  if name not in _LAZY:
    raise AttributeError(f"module 'simdist_jax' has no attribute {name!r}; public names: {sorted(_LAZY)}")
  module_name, attr = _LAZY[name]
  module = importlib.import_module(module_name)
  value = module if attr is None else getattr(module, attr)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_LAZY))
