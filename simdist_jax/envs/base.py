"""Task-agnostic MJX environment with per-episode domains, brax-compatible.

Shapes (single env): A action dim, P proprio dim, E extero dim, C command dim, S privileged dim.

A `Task` holds everything task-specific (MJCF, how domain parameters map to model fields, initial state,
observation, reward, termination) as pure functions of a `phys` dict of arrays read from the physics data
(field names shared by `mjx.Data` and `mujoco.MjData`), so the MJX env here and the MuJoCo C twin
(`real.py`) run the same task code.

`MjxEnv.reset(key)` samples the episode's domain parameters and keeps them in `state.info["domain"]`;
`MjxEnv.step` applies them to the `mjx.Model` inside the (vmapped) step, so one batch holds many physics.
`obs` is a dict: `"state"` (what the robot sees: proprio ++ extero ++ command, with observation noise) and
`"privileged_state"` (simulator truth incl. the normalized domain parameters).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

from brax.envs.base import Env, State
import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx
import numpy as np

from simdist_jax.envs.domain import Domain, Params


def fields_from_env_cfg(cls: type, env_cfg: Mapping[str, Any], reward_terms: tuple[str, ...],
                        number: type | None = None) -> Any:
  """A task-config dataclass `cls` from a `config.env` mapping: every key that is a field of `cls` (others, e.g.
  `episode_length`, are ignored); `reward_scales` becomes ((term, float), ...) in `reward_terms` order; lists (and,
  with `number`, tuples) become tuples, their entries cast to `number` when given."""
  kw = {}
  for f in dataclasses.fields(cls):
    if f.name in env_cfg:
      v = env_cfg[f.name]
      if f.name == "reward_scales":
        v = tuple((k, float(v[k])) for k in reward_terms)
      elif isinstance(v, list) or (number is not None and isinstance(v, tuple)):
        v = tuple(v) if number is None else tuple(number(x) for x in v)
      kw[f.name] = v
  return cls(**kw)

Phys = dict  # field name -> array, read from mjx.Data or mujoco.MjData


class Task(abc.ABC):
  """Task logic shared by the MJX env and the MuJoCo C twin. All methods are pure jnp functions."""

  name: str = "task"
  param_names: tuple[str, ...] = ()
  # Model fields that `domain_updates` rewrites (names valid on both mjx.Model and mujoco.MjModel).
  domain_fields: tuple[str, ...] = ()
  # Data fields that `physics` reads (names valid on both mjx.Data and mujoco.MjData).
  phys_fields: tuple[str, ...] = ("qpos", "qvel", "ctrl", "time")
  ctrl_dt: float = 0.02

  @abc.abstractmethod
  def mj_model(self) -> mujoco.MjModel:
    """The nominal MuJoCo model (a fresh copy each call)."""

  @property
  @abc.abstractmethod
  def dims(self) -> dict:
    """{"proprio": P, "extero": E, "extero_shape": tuple, "action": A, "command": C, "privileged": S}."""

  @abc.abstractmethod
  def domain_updates(self, nominal: Mapping[str, jax.Array], params: Params) -> dict:
    """New values for `domain_fields` given nominal field values and episode params."""

  @abc.abstractmethod
  def initial_state(self, key: jax.Array, params: Params,
                    previous: dict | None = None) -> tuple[jax.Array, jax.Array, dict]:
    """(qpos, qvel, task_info) at episode start. task_info: dict of arrays (e.g. commands).

    previous: how this env's previous episode ended, {"task": its last task_info, "qpos": its last qpos},
    passed by a training auto-reset that runs a curriculum (`wrap_for_training(..., curriculum=True)`);
    None otherwise. Tasks without a curriculum ignore it."""

  # Names of the task's fixed lists of initial conditions (evaluation grids, `initial_conditions`); () = none.
  condition_grids: tuple[str, ...] = ()

  def initial_conditions(self, grid: str) -> np.ndarray:
    """The fixed, deterministic list of initial conditions named `grid` (one of `condition_grids`) as an [N, D]
    array; an evaluation starts trial i from condition i mod N (`initial_state_at`). Default: the task has none."""
    raise ValueError(f"task {self.name!r} defines no initial-condition grid {grid!r} "
                     f"(its grids: {list(self.condition_grids)})")

  def initial_state_at(self, key: jax.Array, params: Params,
                       condition: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
    """(qpos, qvel, task_info) at the start of an episode from one row [D] of `initial_conditions` (the rest of
    the episode's randomness, if any, from `key`). Default: the task has no initial conditions."""
    del key, params, condition
    raise NotImplementedError(f"task {self.name!r} defines no initial conditions")

  def validate_domain(self, domain: Domain) -> None:
    """Raises ValueError when a domain's ranges are invalid for this task. Default: names must match."""
    if tuple(domain.names) != tuple(self.param_names):
      raise ValueError(f"domain '{domain.name}' parameters {list(domain.names)} do not match task "
                       f"'{self.name}' parameters {list(self.param_names)}")

  def action_to_ctrl(self, action: jax.Array, phys: Phys, params: Params) -> jax.Array:
    """Maps a policy action [A] to `data.ctrl`. Default: identity (clipped by the model's ctrlrange)."""
    del phys, params
    return action

  def advance_info(self, task_info: dict, key: jax.Array, phys: Phys) -> dict:
    """Per control step update of task_info (e.g. command resampling, gait clock). Default: step counter."""
    del key, phys
    return task_info

  @abc.abstractmethod
  def observe(self, phys: Phys, params: Params, task_info: dict, noise_key: jax.Array,
              sim_domain: Domain) -> dict:
    """{"state": [P+E+C] noisy, "privileged_state": [S]}."""

  @abc.abstractmethod
  def reward(self, phys_prev: Phys, phys: Phys, action: jax.Array, params: Params,
             task_info: dict) -> tuple[jax.Array, dict]:
    """(reward r(s_t, a_t, s_{t+1}) scalar, flat metrics dict of scalars)."""

  def success(self, metrics: Mapping[str, float]) -> bool | None:
    """Per-step task success read from the step's reward metrics (host side), or None when the task defines
    none. Evaluations report the fraction of successful steps and whether the last step succeeded."""
    del metrics
    return None

  def reference_controllers(self) -> dict:
    """Trivial controllers every evaluation reports beside the learned ones: {name: fn(state obs [P+E+C]) ->
    action [A]} (numpy, host side). Default: zero action."""
    a = int(self.dims["action"])
    return {"zero_action": lambda obs: np.zeros((a,), np.float32)}

  def terminated(self, phys: Phys, params: Params) -> jax.Array:
    """Early termination (failure). Default: never."""
    del phys, params
    return jnp.array(False)

  def physics(self, data: Any) -> Phys:
    """Reads `phys_fields` from an mjx.Data or mujoco.MjData as jnp arrays."""
    return {f: jnp.asarray(getattr(data, f)) for f in self.phys_fields}

  def split_state(self, state_obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Splits an observed state vector [..., P+E+C] into (proprio, extero, command)."""
    d = self.dims
    p, e = d["proprio"], d["extero"]
    return state_obs[..., :p], state_obs[..., p:p + e], state_obs[..., p + e:]


def episode_start(task: Task, domain: Domain, key: jax.Array, previous: dict | None = None,
                  condition: jax.Array | None = None):
  """Shared episode initialisation for both backends: (params, qpos, qvel, task_info, rng). `previous`: see
  `Task.initial_state`; `condition`: a row of `Task.initial_conditions` (then `Task.initial_state_at` sets the
  initial state; the key splits, hence the domain and the noise streams, are the same as without it)."""
  key_domain, key_init, key_rng = jax.random.split(key, 3)
  params = domain.sample(key_domain)
  if condition is None:
    qpos, qvel, task_info = task.initial_state(key_init, params, previous)
  else:
    qpos, qvel, task_info = task.initial_state_at(key_init, params, jnp.asarray(condition, jnp.float32))
  return params, qpos, qvel, task_info, key_rng


def check_action(action: Any, action_size: int) -> jax.Array:
  """Validates an action's shape and dtype (and finiteness when concrete). Returns it as an array."""
  arr = jnp.asarray(action) if not isinstance(action, jax.Array) else action
  if arr.shape[-1:] != (action_size,):
    raise ValueError(f"action must have trailing shape ({action_size},), got shape {tuple(arr.shape)}")
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    raise TypeError(f"action must be a floating-point array, got dtype {arr.dtype}")
  if not isinstance(arr, jax.core.Tracer):
    bad = ~np.isfinite(np.asarray(arr))
    if bad.any():
      raise ValueError(f"action contains non-finite values (NaN/inf) at indices {np.argwhere(bad).tolist()}")
  return arr


class MjxEnv(Env):
  """brax `Env` over MJX with the episode's domain parameters in `state.info["domain"]`.

  Under `jit` a non-finite action cannot raise: it is replaced by zeros, the episode is terminated and
  `metrics["nonfinite_action"]` is set to 1, so the failure is visible in training metrics.
  """

  def __init__(self, task: Task, domain: Domain, sim_domain: Domain | None = None):
    """Args: task; domain to sample episodes from; sim_domain: reference ranges for normalizing
    privileged domain parameters (defaults to `domain`)."""
    task.validate_domain(domain)
    self.task = task
    self.domain = domain
    self.sim_domain = sim_domain or domain
    self._mj_model = task.mj_model()
    self._model = mjx.put_model(self._mj_model)
    self._n_substeps = int(round(task.ctrl_dt / self._mj_model.opt.timestep))
    if abs(self._n_substeps * self._mj_model.opt.timestep - task.ctrl_dt) > 1e-9:
      raise ValueError(f"ctrl_dt {task.ctrl_dt} is not a multiple of the model timestep "
                       f"{self._mj_model.opt.timestep}")
    self._nominal = {f: np.asarray(getattr(self._mj_model, f)).copy() for f in task.domain_fields}

  # ---- brax Env API -------------------------------------------------------------------------
  @property
  def observation_size(self):
    """Shapes of the observation dict: {"state": (P + E + C,), "privileged_state": (S,)}."""
    d = self.task.dims
    return {"state": (d["proprio"] + d["extero"] + d["command"],), "privileged_state": (d["privileged"],)}

  @property
  def action_size(self) -> int:
    """Action dimension A."""
    return self.task.dims["action"]

  @property
  def backend(self) -> str:
    """The physics backend, "mjx"."""
    return "mjx"

  @property
  def dt(self) -> float:
    """Control period [s] (the task's `ctrl_dt`)."""
    return self.task.ctrl_dt

  @property
  def n_substeps(self) -> int:
    """Physics substeps per control step (`ctrl_dt / timestep`)."""
    return self._n_substeps

  @property
  def mj_model(self) -> mujoco.MjModel:
    """The nominal MuJoCo model of the task (no domain parameters applied)."""
    return self._mj_model

  def model_for(self, params: Params) -> mjx.Model:
    """The mjx.Model with this episode's domain parameters applied."""
    nominal = {f: jnp.asarray(v) for f, v in self._nominal.items()}
    updates = self.task.domain_updates(nominal, params)
    return self._model.replace(**updates)

  def reset(self, rng: jax.Array, previous: dict | None = None, condition: jax.Array | None = None) -> State:
    """Starts an episode: samples its domain and initial state, returns the first State (zero reward and metrics).
    `previous`: how this env's last episode ended (curricula, see `Task.initial_state`); `condition`: start from
    this row of `Task.initial_conditions` instead (evaluation grids, `Task.initial_state_at`)."""
    params, qpos, qvel, task_info, key_rng = episode_start(self.task, self.domain, rng, previous, condition)
    model = self.model_for(params)
    data = mjx.make_data(model)
    data = data.replace(qpos=qpos, qvel=qvel, ctrl=jnp.zeros(model.nu))
    data = mjx.forward(model, data)
    key_rng, key_noise = jax.random.split(key_rng)
    phys = self.task.physics(data)
    obs = self.task.observe(phys, params, task_info, key_noise, self.sim_domain)
    _, metrics = self.task.reward(phys, phys, jnp.zeros(self.action_size), params, task_info)
    metrics = {k: jnp.zeros_like(v) for k, v in metrics.items()}
    metrics["nonfinite_action"] = jnp.zeros(())
    info = {"domain": params, "task": task_info, "rng": key_rng}
    return State(pipeline_state=data, obs=obs, reward=jnp.zeros(()), done=jnp.zeros(()),
                 metrics=metrics, info=info)

  def step(self, state: State, action: jax.Array) -> State:
    """One control step: applies `action` for `n_substeps`; a non-finite action or physics state ends the episode."""
    action = check_action(action, self.action_size)
    params = state.info["domain"]
    model = self.model_for(params)
    data0 = state.pipeline_state
    phys_prev = self.task.physics(data0)
    finite = jnp.all(jnp.isfinite(action))
    action = jnp.where(finite, action, 0.0)
    ctrl = self.task.action_to_ctrl(action, phys_prev, params)
    data = data0.replace(ctrl=ctrl)

    def substep(d, _):
      return mjx.step(model, d), None

    data, _ = jax.lax.scan(substep, data, None, length=self._n_substeps)
    key_rng, key_noise, key_info = jax.random.split(state.info["rng"], 3)
    phys = self.task.physics(data)
    task_info = self.task.advance_info(state.info["task"], key_info, phys)
    obs = self.task.observe(phys, params, task_info, key_noise, self.sim_domain)
    reward, metrics = self.task.reward(phys_prev, phys, action, params, task_info)
    phys_ok = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
    done = self.task.terminated(phys, params) | ~finite | ~phys_ok
    reward = jnp.where(phys_ok, reward, 0.0)
    metrics = dict(metrics)
    metrics["nonfinite_action"] = (~finite).astype(jnp.float32)
    info = dict(state.info)
    info.update(task=task_info, rng=key_rng)
    return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done.astype(jnp.float32),
                         metrics=metrics, info=info)
