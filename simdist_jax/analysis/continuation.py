"""Closed-loop advantage of the planner over its policy head, from the states of a driving episode.

The advantage instrument (`analysis.calibration`) compares the plan with the head's chunk over one chunk (h steps,
then a value); it cannot see what a controller does to the states it visits afterwards. This one measures that in
the MuJoCo C twin: at every `every`-th control step of an episode driven by one controller, the twin's exact state
and both controllers' states (history, warm start, key) are saved, and the episode is continued from there for
`length` control steps by each arm:

  planner   the planner (as it drives: with its state carried over, this arm replays the driving episode's own next
            `length` steps exactly when the planner drives; tested),
  head      the policy head alone for all `length` steps,
  switch    the head for the first `switch` steps (one chunk when `switch` = h: what a closed gate applies), then the
            planner.

Each arm's true return over its steps (ended early where the twin fails the episode or its time limit comes) and
its success share are recorded; then the twin and the controllers are restored, and the driving episode goes on
exactly as without probing (tested). `summarize` gives every arm's return minus the planner arm's over the probed
states, with paired bootstrap 95 % CIs (the states of one episode are not independent, so those intervals are
narrower than a per-episode one would be). Command line: benchmarks/closed_loop_advantage.py.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from simdist_jax.adapt import evaluation
from simdist_jax.analysis import calibration

ARMS = ("planner", "head", "switch")


class ContinuationProbe(calibration.PairProbe):
  """Host controller for `evaluation.run_episode`: both controllers step every control step (their histories hold
  the applied actions); `drive` ("planner" or "head") chooses whose action is applied; every `every` steps the
  arms are continued from the current state (module docstring) and a row is appended to `self.rows`.

  The controllers are host controllers whose whole mutable state is the attribute `state` (`planner.controller.
  Controller`; a stateless one may have none). `env` is the `RealEnv` the episode runs in (`get_state`,
  `set_state`, `step`, `task.split_state`, `task.success`)."""

  def __init__(self, planner, head, env, every: int, length: int, switch: int, drive: str = "planner") -> None:
    super().__init__(planner, head, drive)
    if min(int(every), int(length)) < 1 or not 0 <= int(switch) <= int(length):
      raise ValueError(f"need every >= 1, length >= 1 and 0 <= switch <= length; got every={every}, "
                       f"length={length}, switch={switch}")
    self.env, self.every, self.length, self.switch = env, int(every), int(length), int(switch)

  def _save(self) -> tuple:
    return (self.env.get_state(), getattr(self.planner, "state", None), getattr(self.head, "state", None))

  def _restore(self, saved: tuple) -> None:
    snap, p_state, h_state = saved
    self.env.set_state(snap)
    if p_state is not None:
      self.planner.state = p_state
    if h_state is not None:
      self.head.state = h_state

  def _step_both(self, obs_parts: tuple, use_head: bool, planner_needed: bool = True) -> np.ndarray:
    """One control step of both controllers on the observation; returns the action of the chosen one, which both
    histories then hold. `planner_needed=False` (the head arm: the planner's state is restored after it) leaves the
    planner out: no search, its state untouched."""
    a_head = np.asarray(self.head(*obs_parts))
    if not planner_needed:
      self.head.replace_last_action(a_head)
      return a_head
    a_plan = np.asarray(self.planner(*obs_parts))
    applied = a_head if use_head else a_plan
    self.replace_last_action(applied)
    return applied

  def _continue(self, arm: str, obs_parts: tuple) -> dict:
    """Runs one arm from the saved state (already restored) for up to `length` steps."""
    total, steps, successes, failed = 0.0, 0, 0, False
    parts = obs_parts
    for k in range(self.length):
      use_head = arm == "head" or (arm == "switch" and k < self.switch)
      action = self._step_both(parts, use_head, planner_needed=arm != "head")
      obs, reward, done, info = self.env.step(action)
      total += float(reward)
      steps += 1
      successes += int(bool(self.env.task.success(info["metrics"])))
      if done:
        failed = bool(info["failed"])
        break
      proprio, extero, command = evaluation.observed(self.env.task, obs)
      parts = (proprio, extero, command if command.size else None)
    return {"return": total, "steps": steps, "success_frac": successes / steps, "failed": failed}

  def __call__(self, proprio_t, extero_t=None, command=None) -> np.ndarray:
    """Probes on every `every`-th step (the arms, then everything restored), then steps both controllers and
    returns the driving one's action."""
    parts = (proprio_t, extero_t, command)
    if self.t % self.every == 0:
      saved = self._save()
      row = {"t": self.t}
      for arm in ARMS:
        self._restore(saved)
        for key, val in self._continue(arm, parts).items():
          row[f"{arm}/{key}"] = val
      self._restore(saved)
      self.rows.append(row)
    self.t += 1
    return self._step_both(parts, use_head=self.drive == "head")


def summarize(rows: Sequence[dict], arms: Sequence[str] = ARMS) -> dict:
  """Flat dict: per arm its mean return, success share and failure count over the probed states; per arm other than
  the planner, its return and success share minus the planner arm's, paired over the states
  (`evaluation.paired_bootstrap_ci`). Arms from one state end together at the time limit; an arm that fails the
  episode ends early, and its shorter return is part of its outcome, so every state is paired."""
  out: dict[str, Any] = {"n_states": len(rows)}
  for arm in arms:
    out[f"{arm}/return_mean"] = float(np.mean([r[f"{arm}/return"] for r in rows])) if rows else float("nan")
    out[f"{arm}/success_mean"] = float(np.mean([r[f"{arm}/success_frac"] for r in rows])) if rows else float("nan")
    out[f"{arm}/failures"] = int(sum(bool(r[f"{arm}/failed"]) for r in rows))
  if len(rows) >= 2:
    for arm in arms:
      if arm == "planner":
        continue
      for key in ("return", "success_frac"):
        ci = evaluation.paired_bootstrap_ci([r[f"{arm}/{key}"] for r in rows], [r[f"planner/{key}"] for r in rows])
        for k, v in ci.items():
          out[f"{arm}_minus_planner/{key}/{k}"] = v
  return out
