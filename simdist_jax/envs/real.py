"""MuJoCo C twin: the same MJCF, domain, observation and reward code stepped with `mujoco.mj_step`.

One environment, numpy in/out, the project's stand-in for hardware (used with the shifted `real` domain).
Episode initialisation uses the same `episode_start` as the MJX env, so with the same key both backends start
from the same domain parameters and state; with the same actions their trajectories agree to floating-point
tolerance (see tests/envs/test_real.py for the tolerance reached).

Usage:
  env = RealEnv(task, real_domain, sim_domain=sim_domain, episode_length=500)
  obs = env.reset(key)                # {"state": np [P+E+C], "privileged_state": np [S]}
  obs, reward, done, info = env.step(action)
  snap = env.get_state(); ...; env.set_state(snap)   # branch from a state (oracles, diagnostics)
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from simdist_jax.envs.base import Task, check_action, episode_start
from simdist_jax.envs.domain import Domain


class RealEnv:
  """Single MuJoCo C environment with the task's logic (see module docstring)."""

  def __init__(self, task: Task, domain: Domain, sim_domain: Domain | None = None,
               episode_length: int | None = None):
    task.validate_domain(domain)
    self.task = task
    self.domain = domain
    self.sim_domain = sim_domain or domain
    self.episode_length = episode_length
    self.model = task.mj_model()
    self.data = mujoco.MjData(self.model)
    self.n_substeps = int(round(task.ctrl_dt / self.model.opt.timestep))
    self._nominal = {f: np.asarray(getattr(self.model, f)).copy() for f in task.domain_fields}
    self._start = jax.jit(lambda key: episode_start(task, domain, key))
    self._start_at = jax.jit(lambda key, condition: episode_start(task, domain, key, condition=condition))
    self._updates = jax.jit(task.domain_updates)
    self._observe = jax.jit(lambda phys, params, info, key: task.observe(phys, params, info, key,
                                                                         self.sim_domain))
    self._to_ctrl = jax.jit(task.action_to_ctrl)
    self._post_step = jax.jit(self._post_step_fn)  # one XLA call per control step after the physics
    self.params = None
    self._t = 0

  @property
  def dt(self) -> float:
    """Control period [s] (the task's `ctrl_dt`)."""
    return self.task.ctrl_dt

  @property
  def action_size(self) -> int:
    """Action dimension A."""
    return self.task.dims["action"]

  def _phys(self):
    return self.task.physics(self.data)

  def reset(self, key: jax.Array, condition=None) -> dict:
    """Starts an episode: samples domain params from `key`, sets the initial state (from `condition`, a row of
    `Task.initial_conditions`, when given). Returns obs (numpy)."""
    if condition is None:
      params, qpos, qvel, task_info, rng = self._start(key)
    else:
      params, qpos, qvel, task_info, rng = self._start_at(key, jnp.asarray(condition, jnp.float32))
    self.params = params
    updates = self._updates({f: jnp.asarray(v) for f, v in self._nominal.items()}, params)
    for f, v in updates.items():
      getattr(self.model, f)[...] = np.asarray(v, dtype=np.float64)
    mujoco.mj_resetData(self.model, self.data)
    self.data.qpos[:] = np.asarray(qpos, np.float64)
    self.data.qvel[:] = np.asarray(qvel, np.float64)
    mujoco.mj_forward(self.model, self.data)
    rng, key_noise = jax.random.split(rng)
    self._rng, self._task_info, self._t = rng, task_info, 0
    obs = self._observe(self._phys(), params, task_info, key_noise)
    return jax.tree.map(np.asarray, obs)

  def _post_step_fn(self, rng, task_info, phys_prev, phys, action, params):
    """Task logic after the physics of one control step (the same calls and key splits as the MJX env)."""
    rng, key_noise, key_info = jax.random.split(rng, 3)
    task_info = self.task.advance_info(task_info, key_info, phys)
    obs = self.task.observe(phys, params, task_info, key_noise, self.sim_domain)
    reward, metrics = self.task.reward(phys_prev, phys, action, params, task_info)
    return rng, task_info, obs, reward, metrics, self.task.terminated(phys, params)

  def get_state(self) -> dict:
    """A snapshot of everything `step` depends on (physics, RNG, task info, step count) for `set_state`."""
    if self.params is None:
      raise RuntimeError("RealEnv.get_state called before reset")
    d = self.data
    return {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "act": d.act.copy(), "ctrl": d.ctrl.copy(),
            "qacc_warmstart": d.qacc_warmstart.copy(), "time": float(d.time), "rng": self._rng,
            "task_info": self._task_info, "t": self._t, "params": self.params}

  def set_state(self, snap: dict) -> None:
    """Restores a `get_state` snapshot of this env (same domain): the next `step` repeats the original one."""
    d = self.data
    d.qpos[:], d.qvel[:], d.act[:], d.ctrl[:] = snap["qpos"], snap["qvel"], snap["act"], snap["ctrl"]
    d.qacc_warmstart[:] = snap["qacc_warmstart"]
    d.time = snap["time"]
    self._rng, self._task_info, self._t, self.params = snap["rng"], snap["task_info"], snap["t"], snap["params"]
    mujoco.mj_forward(self.model, d)

  def step(self, action) -> tuple[dict, float, bool, dict]:
    """Applies `action` [A] for one control step. Returns (obs, reward, done, info).

    Raises:
      RuntimeError: if called before `reset`.
      ValueError / TypeError: wrong action shape, dtype or non-finite values.
    """
    if self.params is None:
      raise RuntimeError("RealEnv.step called before reset")
    action = check_action(np.asarray(action), self.action_size)
    t0 = time.perf_counter()
    phys_prev = self._phys()
    ctrl = self._to_ctrl(jnp.asarray(action, jnp.float32), phys_prev, self.params)
    self.data.ctrl[:] = np.asarray(ctrl, np.float64)
    for _ in range(self.n_substeps):
      mujoco.mj_step(self.model, self.data)
    self._rng, self._task_info, obs, reward, metrics, failed = jax.device_get(self._post_step(
        self._rng, self._task_info, phys_prev, self._phys(), jnp.asarray(action, jnp.float32), self.params))
    self._t += 1
    failed = bool(failed)
    if not (np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel))):
      failed = True
    truncated = self.episode_length is not None and self._t >= self.episode_length
    info = {"metrics": {k: float(v) for k, v in metrics.items()}, "failed": failed,
            "truncated": truncated, "t": self._t, "sim_time_s": float(self.data.time),
            "step_wall_s": time.perf_counter() - t0, "task": self._task_info}
    return jax.tree.map(np.asarray, obs), float(reward), bool(failed or truncated), info
