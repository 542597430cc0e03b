"""RLPD (Ball et al. 2023) under the adaptation loop's real-data budget: SAC with LayerNorm critic ensembles,
random-subset targets, a high update-to-data ratio, and symmetric sampling (every batch half sim data, half real).

As the paper runs it (§5): SimDist's encoders with an MLP policy and no action chunking, the actor initialized by
single-step BC of the clean expert on the sim data (`bc.train` on `sac.SquashedMean`), the sim dataset as RLPD's
offline data. The loop has SimDist's cadence and budget: round 0 is the BC-initialized actor; each round j collects
`adapt.episodes_per_round` real episodes with the stochastic actor (the same collection seeds as `adapt`), then
makes `utd` critic updates per new real transition (`sac.update`: one actor/temperature update per `utd` critic
updates), then evaluates the deterministic actor (tanh of its mean) on the adaptation loop's evaluation seeds.
Rewards of the real transitions are the twin's own step rewards: on CartPole the reward is a function of the
observed state, so this is what a real robot could compute (the paper gives its quadruped baselines SimDist's
learned reward model and its manipulation baselines the sparse success instead).

The rounds, their files under `<workdir>/baselines/rlpd/` and resuming are `online.run_rounds`'s; `learn_online` is
the SAC core's sanity check on its own (from scratch, no sim data).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np

from simdist_jax.adapt import evaluation
from simdist_jax.baselines import bc
from simdist_jax.baselines import online
from simdist_jax.baselines import sac

NAME = "rlpd"


@dataclasses.dataclass(frozen=True)
class RLPDConfig:
  """The `baselines.rlpd` section as a typed record."""

  sac: sac.SACConfig
  utd: int
  batch_size: int
  sim_share: float
  update_chunk: int
  bc_init: bool

  @classmethod
  def from_config(cls, c: Any) -> "RLPDConfig":
    """From `cfg.baselines.rlpd`."""
    return cls(sac=sac.SACConfig.from_config(c), utd=int(c.utd), batch_size=int(c.batch_size),
               sim_share=float(c.sim_share), update_chunk=int(c.update_chunk), bc_init=bool(c.bc_init))


def train_updates(nets: sac.Nets, rcfg: RLPDConfig, state: sac.SACState, scaler: Any, replay: online.Replay | None,
                  dataset: Any,
                  low: jax.Array, high: jax.Array, num_updates: int, seed: int,
                  log: Callable[[str], None] = print, label: str = "",
                  transform: Callable[[dict], dict] | None = None) -> tuple[sac.SACState, dict]:
  """`num_updates` critic updates (and one actor/temperature update per `utd`), in jitted chunks of
  `update_chunk` critic updates; `transform(batches) -> batches` (e.g. SGFT's reward shaping) is applied to every
  drawn chunk. Raises FloatingPointError when a loss becomes non-finite."""
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)

  def apply(st: sac.SACState, start: int, n: int) -> tuple[sac.SACState, dict]:
    batches = online.draw_batches(rcfg.batch_size, rcfg.sim_share, replay, dataset, rng,
                                  jax.random.fold_in(key, 2 * start), n)
    if transform is not None:
      batches = transform(batches)
    m = {}
    for g0 in range(0, n, rcfg.utd):
      sl = jax.tree.map(lambda x, g0=g0: x[g0:g0 + rcfg.utd], batches)
      st, m = sac.update(nets, st, scaler, sl, low, high, jax.random.fold_in(key, 2 * (start + g0) + 1))
    return st, m

  def describe(m: dict) -> str:
    return (f"critic loss {m['critic/loss']:.3f} | q {m['critic/q_mean']:.1f} | alpha "
            f"{m['temperature/alpha']:.3g} | entropy {m['actor/entropy']:.2f}")

  return online.chunked_updates(state, num_updates, rcfg.update_chunk, apply, describe, log, label,
                                multiple=rcfg.utd)


def learn_online(nets: sac.Nets, rcfg: RLPDConfig, scaler: Any, env: Any, low: jax.Array, high: jax.Array,
                 episodes: int, eval_every: int, eval_seed_list: list[int], seed: int, dataset: Any = None,
                 log: Callable[[str], None] = print) -> list[dict]:
  """The sanity check of the SAC core on its own: from a fresh agent, one stochastic episode at a time in `env`,
  `utd` critic updates per new transition after each episode, the deterministic actor evaluated on
  `eval_seed_list` every `eval_every` episodes (and before the first). With `dataset` None, `rcfg.sim_share` must be
  0 (real transitions only). Returns [{"episodes", "env_steps", "return_mean", "return_std", "wall_s"}]."""
  if dataset is None and rcfg.sim_share > 0:
    raise ValueError(f"sim_share={rcfg.sim_share} needs a sim dataset; pass dataset or set sim_share=0")
  state = sac.init_state(nets, jax.random.PRNGKey(seed))
  replay, curve, t0 = online.Replay(), [], time.perf_counter()
  for ep in range(episodes + 1):
    if ep % eval_every == 0:
      ev = evaluation.evaluate_episodes(env, sac.SACController(nets, state.actor, scaler, low, high, True),
                                        eval_seed_list)
      curve.append({"episodes": ep, "env_steps": len(replay), "return_mean": ev["return_mean"],
                    "return_std": ev["return_std"], "wall_s": time.perf_counter() - t0})
      log(f"episode {ep}/{episodes} ({len(replay)} env steps): deterministic return {ev['return_mean']:.1f} +- "
          f"{ev['return_std']:.1f} ({time.perf_counter() - t0:.0f}s)")
    if ep == episodes:
      break
    trans, _ = online.collect(env, sac.SACController(nets, state.actor, scaler, low, high, False),
                              [seed * 1000 + ep])
    replay.add(trans)
    state, _ = train_updates(nets, rcfg, state, scaler, replay, dataset, low, high,
                             rcfg.utd * int(trans["reward"].shape[0]), seed=seed * 7919 + ep, log=lambda m: None,
                             label=f"episode {ep}")
  return curve


class RLPDAgent:
  """RLPD as `online.run_rounds` drives it."""

  name = NAME

  def __init__(self, cfg: Any, setup: online.Setup) -> None:
    self.cfg, self.setup = cfg, setup
    self.rcfg = RLPDConfig.from_config(cfg.baselines.rlpd)
    self.nets = sac.make_nets(setup.spec, self.rcfg.sac)

  def template(self, key: jax.Array) -> sac.SACState:
    """A fresh state (the structure saved states are read into)."""
    return sac.init_state(self.nets, jax.random.split(key)[1])

  def init(self, key: jax.Array, log: Callable[[str], None]) -> tuple[sac.SACState, dict]:
    """The actor's mean from single-step BC on the sim data (`bc_init`), fresh critics and temperature."""
    su, rcfg, row = self.setup, self.rcfg, {}
    key_bc, key_init = jax.random.split(key)
    actor = None
    if rcfg.bc_init:
      bcfg = bc.BCConfig.from_config(self.cfg.baselines.bc)
      head = sac.squashed_mean_head(su.spec, rcfg.sac.hidden, su.low, su.high, su.scaler)
      params, summary = bc.train(head, bcfg, su.dataset, su.scaler, key_bc, log=lambda m: log(f"BC init: {m}"),
                                 log_every_s=float(self.cfg.run.log_every_s))
      row.update(bc.heldout_metrics(head, params, su.scaler, su.dataset, jax.random.fold_in(key_bc, 1),
                                    bcfg.batch_size, bcfg.eval_batches))
      row.update(summary)
      actor = params["actor"]
    return sac.init_state(self.nets, key_init, actor_params=actor), row

  def controller(self, state: sac.SACState, deterministic: bool) -> sac.SACController:
    """The actor as a controller: tanh of its mean (evaluation) or its samples (collection)."""
    su = self.setup
    return sac.SACController(self.nets, state.actor, su.scaler, su.low, su.high, deterministic=deterministic)

  def update(self, state: sac.SACState, replay: online.Replay, num_new: int, seed: int,
             log: Callable[[str], None], label: str) -> tuple[sac.SACState, dict]:
    """`utd` critic updates per new real transition on symmetric sim/real batches."""
    su = self.setup
    log(f"{label}: {self.rcfg.utd * num_new} updates ({self.rcfg.sim_share:.0%} sim per batch)")
    return train_updates(self.nets, self.rcfg, state, su.scaler, replay, su.dataset, su.low, su.high,
                         self.rcfg.utd * num_new, seed=seed, log=log, label=label)


def is_complete(cfg: Any, workdir: Any) -> bool:
  """results.json exists and says complete."""
  del cfg
  return online.results_complete(workdir, NAME)


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Runs (or resumes) RLPD's rounds in the real world; writes `<workdir>/baselines/rlpd/results.json`."""
  setup = online.make_setup(cfg, workdir)
  key = jax.random.fold_in(jax.random.PRNGKey(setup.seed), 0x1219D)
  return online.run_rounds(cfg, workdir, RLPDAgent(cfg, setup), key)
