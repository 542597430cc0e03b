"""Counterfactual branches in sim: short rollouts of perturbed action chunks from restored states of an episode.

Why (docs/results.md, "Is the planner's predicted advantage calibrated?"): at the decision the planner makes, its
plan against the policy head's chunk from the same state, the pretrained dynamics' predicted advantage is not
correlated with the true one on the seeds where the planner loses to its head, and it predicts action effects
about 3x too weak. The pretraining data (Algorithm 2) and the planner episodes of `refine` hold ONE action sequence
per state; nothing in them contrasts two chunks from the same context. In sim that contrast is free: the MuJoCo C
twin's exact state can be saved and restored.

`BranchingController` wraps the episode's controller. At `points` control steps of each episode (drawn uniformly
from the steps with a full T-step future, seeded by the episode), after the controller has planned, it saves the
twin's state, and for each of `per_point` branches rolls the emitted plan plus Gaussian noise (std `sigma`, the
plan's last step repeated past the planning horizon, clipped to the bounds) open loop for T + 1 steps, recording
the branch as a short episode: the trunk's last H steps (o, a, c) and then the branch's own steps. Then it restores
the twin's state, so the trunk episode goes on exactly as without branching (test: the same return and recording).
Every branch episode is a physically consistent trajectory of the same domain, so its windows are ordinary Eq. 3
windows; the ones whose current step is the branch point contrast the branch's chunk with the trunk's.

Branch episode ids (their `seed` meta): trunk seed * 1000 + point * per_point + branch (unique per trunk seed,
so `recorder.missing_seeds` can tell a complete set from a partial one).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from simdist_jax.adapt import recorder as rec


def branch_seed(trunk_seed: int, point: int, per_point: int, branch: int) -> int:
  """The id (meta `seed`) of one branch episode."""
  return int(trunk_seed) * 1000 + point * per_point + branch


class BranchingController:
  """A host controller for `evaluation.run_episode` that records counterfactual branches (module docstring).

  Args:
    controller: the trunk's controller (a `planner.controller.Controller`: its `state.planner.mean` after a call
      is the emitted plan [h, A], its `dims` the task's).
    env: the `RealEnv` the episode runs in (`get_state`/`set_state`/`step`, `task.split_state`).
    directory: where the branch episodes are written (`recorder.EpisodeRecorder`).
    history: H (trunk steps kept before each branch).
    horizon: T (a branch runs T + 1 steps: T future observations for a window at the branch point).
    points: branch points per episode (0: the wrapper only passes through).
    per_point: branches per point.
    sigma: std of the Gaussian noise on the plan, in action units.
    low, high: action bounds.
  """

  def __init__(self, controller: Any, env: Any, directory: str | pathlib.Path, history: int, horizon: int,
               points: int, per_point: int, sigma: float, low: Any, high: Any, episode_length: int) -> None:
    if points < 0 or per_point < 1 or sigma < 0.0:
      raise ValueError(f"branches: points={points} must be >= 0, per_point={per_point} >= 1, sigma={sigma} >= 0")
    if points * per_point > 1000:
      raise ValueError(f"branches: points * per_point = {points * per_point} must be <= 1000 (branch ids)")
    self.ctrl, self.env = controller, env
    self.recorder = rec.EpisodeRecorder(directory, controller.dims)
    self.H, self.T = int(history), int(horizon)
    self.points, self.per_point, self.sigma = int(points), int(per_point), float(sigma)
    self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    self.episode_length = int(episode_length)
    self.trunk_seed = 0
    self.recorded = 0  # branch episodes written (all episodes so far)

  # -- the controller protocol (`evaluation.run_episode`) ----------------------------------------------------
  @property
  def dims(self) -> dict:
    """The wrapped controller's task dims."""
    return self.ctrl.dims

  def start(self, trunk_seed: int) -> None:
    """Call before each trunk episode: its seed names the branches and seeds their points and noise."""
    self.trunk_seed = int(trunk_seed)

  def reset(self, key: Any) -> None:
    """New trunk episode: the wrapped controller's reset, an empty trunk history, this episode's branch points."""
    self.ctrl.reset(key)
    self.rng = np.random.default_rng(self.trunk_seed)
    last = max(self.episode_length - self.T - 1, 1)
    self.at = set(self.rng.choice(last, size=min(self.points, last), replace=False).tolist()) if self.points else set()
    self.t, self.steps, self.point = 0, [], 0

  def replace_last_action(self, applied: Any) -> None:
    """The applied action (after exploration noise) into the controller's history and the trunk record."""
    self.ctrl.replace_last_action(applied)
    self.steps[-1]["action"] = np.asarray(applied, np.float32).reshape(-1)

  def __call__(self, proprio_t: Any, extero_t: Any = None, command: Any = None) -> np.ndarray:
    """The trunk's action; at a branch point, first records this step's branches (the twin is restored)."""
    action = np.asarray(self.ctrl(proprio_t, extero_t, command), np.float32)
    dims = self.ctrl.dims
    step = {"proprio": np.asarray(proprio_t, np.float32),
            "extero": (np.zeros(int(dims.get("extero", 0)), np.float32) if extero_t is None
                       else np.asarray(extero_t, np.float32).reshape(-1)),
            "command": (np.zeros(int(dims.get("command", 0)), np.float32) if command is None
                        else np.asarray(command, np.float32).reshape(-1)),
            "action": action.reshape(-1)}
    if self.t in self.at:
      plan = np.asarray(self.ctrl.state.planner.mean, np.float32)  # [h, A], the emitted plan of this step
      self._branch(plan, step)
    self.steps.append(step)
    self.t += 1
    return action

  # -- branches ------------------------------------------------------------------------------------------------
  def _branch(self, plan: np.ndarray, current: dict) -> None:
    snap = self.env.get_state()
    history = self.steps[-self.H:] if self.H else []
    h = plan.shape[0]
    for b in range(self.per_point):
      idx = np.minimum(np.arange(self.T + 1), h - 1)
      actions = np.clip(plan[idx] + self.sigma * self.rng.standard_normal(plan[idx].shape).astype(np.float32),
                        self.low, self.high)
      self.env.set_state(snap)
      self.recorder.start_episode(seed=branch_seed(self.trunk_seed, self.point, self.per_point, b),
                                  trunk_seed=self.trunk_seed, branch_step=self.t, branch=b)
      k = 0
      for s in history:
        self.recorder.record(s["proprio"], s["extero"], s["action"], s["command"], k * self.env.dt)
        k += 1
      obs = {"proprio": current["proprio"], "extero": current["extero"], "command": current["command"]}
      for a in actions:
        self.recorder.record(obs["proprio"], obs["extero"], a, obs["command"], k * self.env.dt)
        k += 1
        nxt, _, done, _ = self.env.step(a)
        if done:  # a branch that fails the episode ends there (its last recorded step is still a real one)
          break
        p, e, c = (np.asarray(x, np.float32) for x in self.env.task.split_state(nxt["state"]))
        obs = {"proprio": p, "extero": e.reshape(-1), "command": c.reshape(-1)}
      self.recorder.end_episode()
      self.recorded += 1
    self.env.set_state(snap)
    self.point += 1
