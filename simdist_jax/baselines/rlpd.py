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

Layout of `<workdir>/baselines/rlpd/`: `rounds/round_<j>/` holds `transitions.npz` (that round's real
transitions), `agent.msgpack` (the agent after round j) and `round.json` (the adaptation loop's per-round record;
its presence marks the round complete, so an interrupted run resumes at the first incomplete round);
`results.json` the curve, written last.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import fileio
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt.loop import eval_seeds
from simdist_jax.baselines import bc
from simdist_jax.baselines import sac
from simdist_jax.data import windows
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import model as model_lib

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


class Replay:
  """Real transitions in host memory (`sac.TRANSITION_KEYS`), appended episode by episode; uniform sampling."""

  def __init__(self) -> None:
    self._parts: dict[str, list[np.ndarray]] = {k: [] for k in sac.TRANSITION_KEYS}
    self._arrays: dict[str, np.ndarray] | None = None

  def add(self, transitions: dict[str, np.ndarray]) -> None:
    """Appends [N, ...] arrays of every transition key."""
    n = {int(np.asarray(transitions[k]).shape[0]) for k in sac.TRANSITION_KEYS}
    if len(n) != 1:
      raise ValueError(f"transition arrays disagree on their length: {n}")
    for k in sac.TRANSITION_KEYS:
      self._parts[k].append(np.asarray(transitions[k], np.float32))
    self._arrays = None

  def __len__(self) -> int:
    return sum(int(x.shape[0]) for x in self._parts["reward"])

  def arrays(self) -> dict[str, np.ndarray]:
    """Every transition so far, concatenated."""
    if self._arrays is None:
      self._arrays = {k: np.concatenate(v, 0) for k, v in self._parts.items()}
    return self._arrays

  def sample(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """`n` transitions drawn uniformly with replacement."""
    if len(self) == 0:
      raise ValueError("the replay is empty")
    arr = self.arrays()
    idx = rng.integers(0, arr["reward"].shape[0], n)
    return {k: v[idx] for k, v in arr.items()}


def stack_transitions(steps: list[dict]) -> dict[str, np.ndarray]:
  """`run_episode(on_step=...)` transitions -> [N, ...] arrays."""
  return {k: np.stack([np.asarray(s[k], np.float32) for s in steps]) for k in sac.TRANSITION_KEYS}


def draw_batches(rcfg: RLPDConfig, replay: Replay, dataset: Any, rng: np.random.Generator, key: jax.Array,
                 num: int) -> dict:
  """[num, B, ...] transition batches: `windows.mixed_split(B, sim_share)` sim transitions (windows of `dataset`,
  drawn with fold_in(key, i)) and the rest real ones from `replay`, concatenated real first."""
  n_real, n_sim = windows.mixed_split(rcfg.batch_size, rcfg.sim_share)
  out = []
  for i in range(num):
    parts = []
    if n_real:
      parts.append({k: jnp.asarray(v) for k, v in replay.sample(rng, n_real).items()})
    if n_sim:
      parts.append(sac.transitions_from_windows(dataset.sample(jax.random.fold_in(key, i), n_sim)))
    out.append(jax.tree.map(lambda *xs: jnp.concatenate(xs, 0), *parts))
  return jax.tree.map(lambda *xs: jnp.stack(xs), *out)


def train_updates(nets: sac.Nets, rcfg: RLPDConfig, state: sac.SACState, scaler: Any, replay: Replay, dataset: Any,
                  low: jax.Array, high: jax.Array, num_updates: int, seed: int,
                  log: Callable[[str], None] = print, label: str = "") -> tuple[sac.SACState, dict]:
  """`num_updates` critic updates (and one actor/temperature update per `utd`), in jitted chunks of
  `update_chunk` critic updates. Raises FloatingPointError when a loss becomes non-finite."""
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  done, t0, metrics, last_log = 0, time.perf_counter(), {}, 0.0
  while done < num_updates:
    n = min(rcfg.update_chunk, num_updates - done)
    n -= n % rcfg.utd if n >= rcfg.utd else 0
    batches = draw_batches(rcfg, replay, dataset, rng, jax.random.fold_in(key, 2 * done), n)
    for g0 in range(0, n, rcfg.utd):
      sl = jax.tree.map(lambda x, g0=g0: x[g0:g0 + rcfg.utd], batches)
      state, m = sac.update(nets, state, scaler, sl, low, high, jax.random.fold_in(key, 2 * (done + g0) + 1))
    metrics = {k: float(v) for k, v in m.items()}
    bad = [k for k, v in metrics.items() if not np.isfinite(v)]
    if bad:
      raise FloatingPointError(f"{label}: non-finite {bad} after {done + n} updates")
    done += n
    now = time.perf_counter() - t0
    if now - last_log >= 10.0 or done == num_updates:
      last_log = now
      log(f"{label}: update {done}/{num_updates} | critic loss {metrics['critic/loss']:.3f} | q "
          f"{metrics['critic/q_mean']:.1f} | alpha {metrics['temperature/alpha']:.3g} | entropy "
          f"{metrics['actor/entropy']:.2f} | ETA {now / done * (num_updates - done):.0f}s")
  return state, metrics


def collect(env: Any, controller: sac.SACController, seeds: list[int]) -> tuple[dict, list[float]]:
  """Episodes of the stochastic actor on `seeds`: (their transitions [N, ...], their returns)."""
  steps: list[dict] = []
  returns = []
  for s in seeds:
    out = evaluation.run_episode(env, controller, jax.random.PRNGKey(s), on_step=steps.append)
    returns.append(out["return"])
  return stack_transitions(steps), returns


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
  replay, curve, t0 = Replay(), [], time.perf_counter()
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
    trans, _ = collect(env, sac.SACController(nets, state.actor, scaler, low, high, False), [seed * 1000 + ep])
    replay.add(trans)
    state, _ = train_updates(nets, rcfg, state, scaler, replay, dataset, low, high,
                             rcfg.utd * int(trans["reward"].shape[0]), seed=seed * 7919 + ep, log=lambda m: None,
                             label=f"episode {ep}")
  return curve


def _save_agent(path: pathlib.Path, state: sac.SACState) -> None:
  fileio.write_bytes(path, flax.serialization.to_bytes(state))


def _load_agent(path: pathlib.Path, template: sac.SACState) -> sac.SACState:
  return flax.serialization.from_bytes(template, path.read_bytes())


def baseline_dir(workdir: Any) -> pathlib.Path:
  """`<workdir>/baselines/rlpd`."""
  return paths.stage_dir(workdir, "baselines") / NAME


def is_complete(cfg: Any, workdir: Any) -> bool:
  """results.json exists and says complete."""
  del cfg
  p = baseline_dir(workdir) / "results.json"
  return p.exists() and bool(fileio.read_json(p).get("complete", False))


def _evaluate(env: Any, controller: sac.SACController, seeds: list[int], round0: dict | None) -> dict:
  ev = evaluation.evaluate_episodes(env, controller, seeds)
  row = {"real/return_mean": ev["return_mean"], "real/return_std": ev["return_std"], "real/returns": ev["returns"],
         "real/success_mean": ev["success_mean"], "real/success": ev["success"],
         "real/success_final": ev["success_final"]}
  if round0 is not None and len(ev["returns"]) >= 2:
    row["real/return_vs_round0"] = evaluation.paired_bootstrap_ci(ev["returns"], round0["real/returns"])
    row["real/success_vs_round0"] = evaluation.paired_bootstrap_ci(ev["success"], round0["real/success"])
  return row


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Runs (or resumes) RLPD's rounds in the real world; writes `<workdir>/baselines/rlpd/results.json`."""
  workdir = pathlib.Path(workdir)
  out = baseline_dir(workdir)
  out.mkdir(parents=True, exist_ok=True)
  log = lambda msg: print(f"[baseline-rlpd] {msg}", flush=True)  # noqa: E731
  task = make_task(cfg)
  dataset = bc.load_transitions(cfg, workdir)
  bc.check_dims(dataset, task, cfg.task)
  rcfg = RLPDConfig.from_config(cfg.baselines.rlpd)
  spec = model_lib.make_spec(cfg.model, dataset.dims)
  nets = sac.make_nets(spec, rcfg.sac)
  scaler = model_lib.make_scaler(dataset.stats)
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=spec.horizon)
  low = jnp.broadcast_to(jnp.asarray(pcfg.action_low, jnp.float32), (spec.action,))
  high = jnp.broadcast_to(jnp.asarray(pcfg.action_high, jnp.float32), (spec.action,))
  seed, acfg = int(cfg.run.seed), cfg.adapt
  key_bc, key_init = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 0x1219D))
  real_env = make_real_env(cfg, "real")
  seeds_eval = eval_seeds(seed, int(acfg.eval_episodes))
  replay = Replay()
  rounds: list[dict] = []
  state = None
  template = sac.init_state(nets, key_init)
  t_stage, n_rounds = time.perf_counter(), int(acfg.rounds) + 1
  for j in range(n_rounds):
    rdir = out / "rounds" / f"round_{j}"
    done_file = rdir / "round.json"
    if done_file.exists():
      rounds.append(fileio.read_json(done_file))
      state = _load_agent(rdir / "agent.msgpack", template)
      if j > 0:
        replay.add(dict(fileio.load_npz(rdir / "transitions.npz", required=sac.TRANSITION_KEYS)))
      log(f"round {j}: complete, skipped (return {rounds[-1]['real/return_mean']:.2f})")
      continue
    t0 = time.perf_counter()
    row: dict[str, Any] = {"round": j}
    if j == 0:
      actor = None
      if rcfg.bc_init:
        bcfg = bc.BCConfig.from_config(cfg.baselines.bc)
        mean = np.broadcast_to(np.asarray(scaler["action"]["mean"]), (spec.action,))
        std = np.broadcast_to(np.asarray(scaler["action"]["std"]), (spec.action,))
        head = sac.SquashedMean(spec, rcfg.sac.hidden, tuple(map(float, low)), tuple(map(float, high)),
                                tuple(map(float, mean)), tuple(map(float, std)))
        params, bc_summary = bc.train(head, bcfg, dataset, scaler, key_bc, log=lambda m: log(f"BC init: {m}"),
                                      log_every_s=float(cfg.run.log_every_s))
        row.update(bc.heldout_metrics(head, params, scaler, dataset, jax.random.fold_in(key_bc, 1),
                                      bcfg.batch_size, bcfg.eval_batches))
        row.update(bc_summary)
        actor = params["actor"]
      state = sac.init_state(nets, key_init, actor_params=actor)
      row.update({"real_minutes": 0.0, "real_episodes": 0, "real_transitions": 0})
    else:
      collector = sac.SACController(nets, state.actor, scaler, low, high, deterministic=False)
      round_seeds = [seed * 100_000 + j * 1000 + i for i in range(int(acfg.episodes_per_round))]
      trans, coll_returns = collect(real_env, collector, round_seeds)
      replay.add(trans)
      n_new = int(trans["reward"].shape[0])
      log(f"round {j}: collected {len(round_seeds)} episodes ({n_new} steps, returns "
          f"{', '.join(f'{r:.1f}' for r in coll_returns)}); {rcfg.utd * n_new} updates on {len(replay)} real + sim "
          f"transitions ({rcfg.sim_share:.0%} sim per batch)")
      state, m = train_updates(nets, rcfg, state, scaler, replay, dataset, low, high, rcfg.utd * n_new,
                               seed=seed * 7919 + j, log=log, label=f"round {j}")
      row.update({f"train/{k}": v for k, v in m.items()})
      row.update({"real_transitions": len(replay), "real_episodes": j * len(round_seeds),
                  "real_minutes": len(replay) * real_env.dt / 60.0, "collect/returns": coll_returns})
      rdir.mkdir(parents=True, exist_ok=True)
      fileio.save_npz(rdir / "transitions.npz", trans)
    evaluator = sac.SACController(nets, state.actor, scaler, low, high, deterministic=True)
    row.update(_evaluate(real_env, evaluator, seeds_eval, rounds[0] if rounds else None))
    row["wall_s"] = time.perf_counter() - t0
    rdir.mkdir(parents=True, exist_ok=True)
    _save_agent(rdir / "agent.msgpack", state)
    config_lib.atomic_write_text(done_file, json.dumps(row, indent=2))
    rounds.append(row)
    vs0 = row.get("real/return_vs_round0")
    eta = (time.perf_counter() - t_stage) / (j + 1) * (n_rounds - j - 1)
    log(f"round {j}: real return {row['real/return_mean']:.2f} +- {row['real/return_std']:.2f}"
        + (f" (vs round 0 {vs0['diff']:+.1f}, 95% CI [{vs0['lo']:+.1f}, {vs0['hi']:+.1f}])" if vs0 else "")
        + f", success {row['real/success_mean']:.2f} ({row['wall_s']:.0f}s; ETA {eta:.0f}s)")
  first, last = rounds[0], rounds[-1]
  summary = {"algo": NAME, "uses_real_data": True, "complete": True, "rounds": rounds,
             "real_return_round0": first["real/return_mean"], "real_return_final": last["real/return_mean"],
             "real_success_round0": first["real/success_mean"], "real_success_final": last["real/success_mean"],
             "final_vs_round0": last.get("real/return_vs_round0")}
  config_lib.atomic_write_text(out / "results.json", json.dumps(summary, indent=2))
  vs0 = summary["final_vs_round0"]
  log(f"done: real return {summary['real_return_round0']:.2f} -> {summary['real_return_final']:.2f}"
      + (f" (paired 95% CI of the change [{vs0['lo']:+.1f}, {vs0['hi']:+.1f}])" if vs0 else "")
      + f", success {summary['real_success_round0']:.2f} -> {summary['real_success_final']:.2f}")
  return summary
