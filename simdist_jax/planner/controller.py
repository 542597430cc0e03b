"""Closed-loop MPPI controller with a functional history buffer.

`act` is pure: the history lives in `ControllerState` and is updated functionally, so `act` can be jitted once
and vmapped over environments. Per step it builds the model inputs from the history, computes the context once,
plans, applies mean[0] and pushes (o_t, a_t) into the history.

History alignment matches the data side (front padding): at step t the model sees
  proprio_hist [H, P] = o_{t-H} .. o_{t-1}, action_hist [H, A] = a_{t-H} .. a_{t-1}, proprio_t = o_t,
where entries before the first observation are copies of o_0 and zero actions.

`Controller` is a thin host-side convenience wrapper (state held outside the jitted function, per-step latency
recorded) for numpy env loops such as `simdist_jax/envs/real.py`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.planner import mppi


class ControllerState(NamedTuple):
  """proprio_hist [H, P], action_hist [H, A], planner state, step (int32 scalar, steps taken so far)."""
  proprio_hist: jax.Array
  action_hist: jax.Array
  planner: mppi.PlannerState
  step: jax.Array


def init_controller(cfg: mppi.PlannerConfig, dims: dict, history: int, key: jax.Array) -> ControllerState:
  """Empty history (filled with o_0 and zero actions on the first `act`), zero plan."""
  p, a = int(dims["proprio"]), int(dims["action"])
  return ControllerState(proprio_hist=jnp.zeros((history, p), jnp.float32),
                         action_hist=jnp.zeros((history, a), jnp.float32),
                         planner=mppi.init_state(cfg, a, key), step=jnp.zeros((), jnp.int32))


def history_inputs(state: ControllerState, proprio_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(proprio_hist, action_hist) the model sees at this step; front-padded with o_0 / zeros at step 0."""
  first = state.step == 0
  proprio_hist = jnp.where(first, jnp.broadcast_to(proprio_t, state.proprio_hist.shape), state.proprio_hist)
  action_hist = jnp.where(first, jnp.zeros_like(state.action_hist), state.action_hist)
  return proprio_hist, action_hist


def act(cfg: mppi.PlannerConfig, model: Any, variables: Any, state: ControllerState, proprio_t: jax.Array,
        extero_t: jax.Array, commands: jax.Array) -> tuple[jax.Array, ControllerState, dict[str, jax.Array]]:
  """One control step: (action [A], new state, info). cfg and model are static (see `make_act`)."""
  proprio_t = jnp.asarray(proprio_t, jnp.float32)
  if proprio_t.shape != state.proprio_hist.shape[1:]:
    raise ValueError(f"proprio_t must be [P] = {state.proprio_hist.shape[1:]}, got {proprio_t.shape}")
  proprio_hist, action_hist = history_inputs(state, proprio_t)
  ctx = model.context(variables, proprio_hist, action_hist, proprio_t, jnp.asarray(extero_t, jnp.float32))
  chunk, planner_state, info = mppi.plan(cfg, model, variables, state.planner, ctx, commands)
  action = chunk[0]
  new_state = ControllerState(
      proprio_hist=jnp.concatenate([proprio_hist[1:], proprio_t[None]], axis=0),
      action_hist=jnp.concatenate([action_hist[1:], action[None]], axis=0),
      planner=planner_state, step=state.step + 1)
  info = dict(info)
  info["controller/step"] = state.step
  return action, new_state, info


def make_act(cfg: mppi.PlannerConfig, model: Any, jit: bool = True) -> Callable[..., Any]:
  """`fn(variables, ctrl_state, proprio_t, extero_t, commands) -> (action, ctrl_state, info)`."""
  def fn(variables, state, proprio_t, extero_t, commands):
    return act(cfg, model, variables, state, proprio_t, extero_t, commands)
  return jax.jit(fn) if jit else fn


def command_chunk(dims: dict, model_horizon: int, command: Any = None) -> np.ndarray:
  """[T+1, C] commands for one control step: a [C] command is held constant over the horizon (as in the paper);
  None only for a task without commands (C = 0)."""
  c = int(dims.get("command", 0))
  if command is None:
    if c:
      raise ValueError(f"this task has C={c} commands; pass one")
    return np.zeros((model_horizon + 1, 0), np.float32)
  command = np.asarray(command, np.float32)
  if command.ndim == 1:
    command = np.broadcast_to(command, (model_horizon + 1, command.shape[0]))
  return command


class Controller:
  """Host-side wrapper around the jitted `act`: holds variables and state, records per-step latency.

  Usage: `ctrl = Controller(cfg, model, variables, dims, history=H, model_horizon=T, key=key)`, then
  `a = ctrl(proprio_t, extero_t, command)` each step; `ctrl.reset(key)` at episode start.
  """

  def __init__(self, cfg: mppi.PlannerConfig, model: Any, variables: Any, dims: dict, history: int,
               key: jax.Array, model_horizon: int | None = None, jit: bool = True,
               act_fn: Callable[..., Any] | None = None) -> None:
    """`model_horizon`: the model's T (commands are [T+1, C]), default cfg.horizon. `act_fn`: a prebuilt
    `make_act(cfg, model)` to share one compiled step between controllers."""
    self.cfg, self.model, self.dims, self.history = cfg, model, dict(dims), int(history)
    self.model_horizon = int(model_horizon if model_horizon is not None else cfg.horizon)
    self.variables = variables
    self._act = act_fn if act_fn is not None else make_act(cfg, model, jit=jit)
    self.latencies_s: list[float] = []
    self.last_info: dict[str, Any] = {}
    self.fallbacks = 0  # control steps whose search produced no finite plan (the shifted plan was applied)
    # With `advantage_gate`: control steps planned gated, and those whose plan passed the gate (the rest applied the
    # policy head's chunk). Cumulative, like `fallbacks`; `gate_open_frac(before)` takes a difference.
    self.gate_steps = 0
    self.gate_opens = 0
    self.reset(key)

  def reset(self, key: jax.Array) -> None:
    """Clears history and plan (keeps the latency record)."""
    self.state = init_controller(self.cfg, self.dims, self.history, key)

  def set_variables(self, variables: Any) -> None:
    """Swaps in new (e.g. finetuned) variables; same shapes, so no recompile."""
    self.variables = variables

  def commands(self, command: Any = None) -> np.ndarray:
    """[T+1, C] commands: a [C] command is held constant over the horizon (as in the paper)."""
    return command_chunk(self.dims, self.model_horizon, command)

  def __call__(self, proprio_t: Any, extero_t: Any = None, command: Any = None) -> np.ndarray:
    """Returns the action for this step as numpy; latency includes block_until_ready and the host copy."""
    if extero_t is None:
      extero_t = np.zeros((int(self.dims.get("extero", 0)),), np.float32)
    commands = self.commands(command)
    t0 = time.perf_counter()
    action, self.state, info = self._act(self.variables, self.state, proprio_t, extero_t, commands)
    action = np.asarray(jax.block_until_ready(action))
    self.latencies_s.append(time.perf_counter() - t0)
    self.last_info = info
    self.fallbacks += int(info["planner/nonfinite_fallback"])
    if self.cfg.advantage_gate:
      self.gate_steps += 1
      self.gate_opens += int(info["planner/gate_open"])
    return action

  def gate_counts(self) -> tuple[int, int]:
    """(gated control steps, of which the plan passed the gate) so far; pass to `gate_open_frac` later."""
    return self.gate_steps, self.gate_opens

  def gate_open_frac(self, before: tuple[int, int] = (0, 0)) -> float:
    """Share of the gated control steps since `before` (a `gate_counts()`) that applied the plan rather than the
    policy head's chunk; NaN when none was gated (the gate off, or no step taken)."""
    steps, opens = self.gate_steps - before[0], self.gate_opens - before[1]
    return opens / steps if steps else float("nan")

  def replace_last_action(self, applied: Any) -> None:
    """Overwrites the newest history action with the action actually applied (e.g. after exploration noise),
    so the model's context holds what the robot did, as in the recorded data."""
    applied = jnp.asarray(applied, jnp.float32).reshape(self.state.action_hist.shape[1:])
    self.state = self.state._replace(action_hist=self.state.action_hist.at[-1].set(applied))

  def latency_summary(self, skip_first: int = 1) -> dict[str, float]:
    """p50/p99/mean latency in ms over recorded steps (the first `skip_first` include compilation)."""
    lat = np.asarray(self.latencies_s[skip_first:]) * 1e3
    if lat.size == 0:
      return {"latency/n": 0.0}
    return {"latency/p50_ms": float(np.percentile(lat, 50)), "latency/p99_ms": float(np.percentile(lat, 99)),
            "latency/mean_ms": float(lat.mean()), "latency/n": float(lat.size)}
