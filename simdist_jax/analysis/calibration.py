"""Calibration of the planner's predicted advantage over its policy head (the instrument behind `advantage_gate`).

At a probed control step the deployed planner searches as usual; its emitted plan and the noise-free policy-head
chunk pi are then scored three ways from the twin's exact state (`make_pair_scores`):

  predicted  the world model: A_pred = R_hat(plan) - R_hat(pi) (what the planner believes,
             `planner/predicted_advantage`);
  heads      the frozen reward/value heads on the encoder of the TRUE future observations (oracle (d) in sim, (a)
             in the real world, `oracle.true_score_fn`): the advantage perfect dynamics would have predicted;
  critic     the true rewards over h steps + a critic at s_{t+h}.

`summarize` turns the probed states into calibration figures: correlation and sign agreement of A_pred with each
truth, means per A_pred quintile, and per gate margin m the share of states where the gate opens and the mean true
advantage collected over all states (A_true where open, 0 where pi is applied): a one-step proxy of the gated
planner's gain over its head. Command line: benchmarks/advantage_calibration.py.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.analysis import oracle
from simdist_jax.envs.base import MjxEnv
from simdist_jax.planner import controller as ctrl_lib
from simdist_jax.planner import mppi

MARGINS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def make_pair_scores(cfg: mppi.PlannerConfig, wm: Any, env: MjxEnv,
                     critic_apply: Callable[[Any, jax.Array], jax.Array], priv_params: Any = None,
                     priv_ref: Any = None) -> Callable[..., dict]:
  """Jitted `fn(variables, critic_params, ctrl_state, proprio_t, extero_t, commands, sim, plan [h, A])` ->
  {"predicted", "heads", "critic"}: each [2], the scores of (plan, pi) (module docstring). `ctrl_state` is the
  controller's state *before* the step (its history), `sim` the twin's `get_state()` at that step, `env` an MjxEnv of
  the twin's world; `priv_params`/`priv_ref` what the critic reads (`oracle.rollout`)."""
  h = cfg.horizon

  def fn(variables, critic_params, state, proprio_t, extero_t, commands, sim, plan):
    proprio_hist, action_hist = ctrl_lib.history_inputs(state, proprio_t)
    ctx = wm.context(variables, proprio_hist, action_hist, proprio_t, extero_t)
    pi = wm.policy_chunk(variables, ctx, commands)  # [T, A]
    low = jnp.broadcast_to(jnp.asarray(cfg.action_low, jnp.float32), pi.shape[1:])
    high = jnp.broadcast_to(jnp.asarray(cfg.action_high, jnp.float32), pi.shape[1:])
    pair = jnp.stack([plan, jnp.clip(pi[:h], low, high)])  # [2, h, A]
    start = oracle.snapshot_state(env, sim["params"], sim["qpos"], sim["qvel"], sim["task_info"], sim["rng"])
    out = {"predicted": mppi.model_score_fn(cfg, wm, variables, ctx, commands, pi)(pair)}
    for name in ("heads", "critic"):
      out[name] = oracle.true_score_fn(cfg, wm, env, name, variables, ctx, commands, pi, start, critic_apply,
                                       critic_params, priv_params, priv_ref)(pair)
    return out

  return jax.jit(fn)


class PairProbe:
  """Base of the instruments' host controllers (`Probe`, `continuation.ContinuationProbe`): a planner and its
  policy head that both see every control step, both histories holding the applied action; `drive` ("planner" or
  "head") says whose action the episode applies; `rows` collects what a subclass probes, `t` counts the steps."""

  def __init__(self, planner, head, drive: str) -> None:
    if drive not in ("planner", "head"):
      raise ValueError(f"drive must be 'planner' or 'head', got {drive!r}")
    self.planner, self.head, self.drive = planner, head, drive
    self.rows: list[dict] = []
    self.t = 0

  def reset(self, key) -> None:
    """New episode for both controllers (the same key, as `evaluation.run_episode` hands one)."""
    self.planner.reset(key)
    self.head.reset(key)
    self.t = 0

  def replace_last_action(self, applied) -> None:
    """The applied action (after exploration noise, or the other controller's) into both histories."""
    self.planner.replace_last_action(applied)
    self.head.replace_last_action(applied)


class Probe(PairProbe):
  """Host controller for `evaluation.run_episode`: plans with `planner` at every step; applies the plan's action
  (`drive="planner"`) or the policy head's (`drive="head"`), and every `every` steps scores (plan, pi)."""

  def __init__(self, planner, head, real_env, pair_fn, critic_params, every: int, drive: str):
    super().__init__(planner, head, drive)
    self.env, self.pair_fn, self.critic_params, self.every = real_env, pair_fn, critic_params, int(every)

  def __call__(self, proprio_t, extero_t=None, command=None):
    """Plans, probes on every `every`-th step (a row of scores in `self.rows`), returns the driving action."""
    extero_t = np.zeros((int(self.planner.dims.get("extero", 0)),), np.float32) if extero_t is None else extero_t
    before = self.planner.state
    a_plan = self.planner(proprio_t, extero_t, command)
    a_head = self.head(proprio_t, extero_t, command)
    if self.t % self.every == 0:  # planning does not step the twin: its state is still this step's
      snap = self.env.get_state()
      sim = {k: snap[k] for k in ("params", "qpos", "qvel", "task_info", "rng")}
      s = self.pair_fn(self.planner.variables, self.critic_params, before, jnp.asarray(proprio_t, jnp.float32),
                       jnp.asarray(extero_t, jnp.float32), self.planner.commands(command), sim,
                       self.planner.state.planner.mean)
      s = {k: np.asarray(v, np.float64) for k, v in s.items()}
      self.rows.append({"t": self.t, **{f"{k}/{w}": float(v[i]) for k, v in s.items()
                                        for i, w in enumerate(("plan", "pi"))}})
    self.t += 1
    applied = a_plan if self.drive == "planner" else a_head
    self.replace_last_action(applied)
    return applied


def summarize(rows: Sequence[dict], margins: Sequence[float] = MARGINS) -> dict:
  """Calibration figures over probed states (flat dict, slash names)."""
  adv = {k: np.array([r[f"{k}/plan"] - r[f"{k}/pi"] for r in rows]) for k in ("predicted", "heads", "critic")}
  a_pred = adv["predicted"]
  out: dict = {"n_states": len(rows)}
  for truth in ("heads", "critic"):
    a_true = adv[truth]
    out[f"{truth}/corr"] = float(np.corrcoef(a_pred, a_true)[0, 1]) if len(rows) > 2 else float("nan")
    out[f"{truth}/mean_true_advantage"] = float(a_true.mean())
    out[f"{truth}/sign_agreement"] = float(np.mean(np.sign(a_pred) == np.sign(a_true)))
    for m in margins:
      gate = a_pred >= m
      out[f"{truth}/margin_{m:g}/open"] = float(gate.mean())
      out[f"{truth}/margin_{m:g}/gain"] = float(np.mean(np.where(gate, a_true, 0.0)))
      out[f"{truth}/margin_{m:g}/right_when_open"] = float(np.mean(a_true[gate] > 0)) if gate.any() else float("nan")
  qs = np.quantile(a_pred, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
  for i in range(5):
    sel = (a_pred >= qs[i]) & (a_pred <= qs[i + 1])
    for name, a in (("pred", a_pred), ("heads", adv["heads"]), ("critic", adv["critic"])):
      out[f"bins/{i}/{name}"] = float(a[sel].mean()) if sel.any() else float("nan")
  return out
