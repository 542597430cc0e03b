"""MPPI / CEM planning over the latent world model, and the closed-loop controller."""

from simdist_jax.planner.controller import Controller
from simdist_jax.planner.controller import ControllerState
from simdist_jax.planner.controller import act
from simdist_jax.planner.controller import history_inputs
from simdist_jax.planner.controller import init_controller
from simdist_jax.planner.controller import make_act
from simdist_jax.planner.mppi import PlannerConfig
from simdist_jax.planner.mppi import PlannerState
from simdist_jax.planner.mppi import discounted_return
from simdist_jax.planner.mppi import elite_update
from simdist_jax.planner.mppi import init_state
from simdist_jax.planner.mppi import make_plan_fn
from simdist_jax.planner.mppi import num_prior_samples
from simdist_jax.planner.mppi import plan
from simdist_jax.planner.mppi import shift_plan
from simdist_jax.planner.mppi import warm_start

__all__ = [
    "Controller", "ControllerState", "PlannerConfig", "PlannerState", "act", "discounted_return",
    "elite_update", "history_inputs", "init_controller", "init_state", "make_act", "make_plan_fn",
    "num_prior_samples", "plan", "shift_plan", "warm_start",
]
