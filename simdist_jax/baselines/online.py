"""The rounds every real-data baseline runs, with the adaptation loop's budget, cadence and evaluation protocol.

Round 0 is the agent after its sim-only phase (`Agent.init`: BC initialization, offline pretraining); each round
j = 1..J collects `adapt.episodes_per_round` real episodes with the agent's exploring controller on the loop's
collection seeds (seed * 100000 + j * 1000 + i, as `adapt`), appends them to the real replay, calls
`Agent.update` once with the new transitions, and evaluates the deterministic controller on the loop's
`adapt.eval_episodes` evaluation seeds (paired bootstrap CIs against round 0). Round 0 is also evaluated on the
sim seeds (`adapt.sim_eval_episodes`), the sanity check of the sim-only phase against the expert.

An agent may declare `extra_keys` (transition keys beyond `TRANSITION_KEYS` that `run_episode(on_step=...)` provides,
kept in its replay and `transitions.npz`: e.g. the privileged states, the episode-end flag `last` and its
controller's `transition_extras`) and `full_obs = True` (its controllers read the twin's whole obs dict, privileged
state included, in collection and evaluation: the privileged PPO expert).

Layout of `<workdir>/baselines/<name>/`: `rounds/round_<jj>/` (two digits, as `adapt`) holds `transitions.npz` (that round's real
transitions), `agent.msgpack` (the agent state after round j, flax serialization) and `round.json` (its presence
marks the round complete, so an interrupted run resumes at the first incomplete round); `results.json` the curve,
written last.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable, NamedTuple, Protocol

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import fileio
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt.loop import eval_seeds
from simdist_jax.data import windows
from simdist_jax.envs.registry import make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import model as model_lib

TRANSITION_KEYS = ("proprio", "extero", "command", "action", "reward", "next_proprio", "next_extero", "next_command",
                   "not_done")


def load_transitions(cfg: Any, workdir: Any) -> windows.WindowDataset:
  """The sim dataset as (o_t, a_t; o_{t+1}) windows (H = 0, T = 1, no margins: every step of every episode but its
  last), split by episode with the run's `data.eval_fraction` and seed."""
  return windows.load_dataset(paths.data_dir(workdir), H=0, T=1, start_margin=0, end_margin=0,
                              eval_fraction=float(cfg.data.eval_fraction), seed=int(cfg.run.seed))


def check_dims(dataset: Any, task: Any, name: str) -> None:
  """ValueError naming the dataset when its feature dims are not the task's (data of another task)."""
  for k in ("proprio", "extero", "action", "command"):
    if int(dataset.dims[k]) != int(task.dims[k]):
      raise ValueError(f"dataset {dataset.source} has {k} dim {dataset.dims[k]}, task {name!r} has "
                       f"{task.dims[k]}: the data was generated for another task")


class Setup(NamedTuple):
  """What every baseline builds from the config and the run's sim data."""

  dataset: windows.WindowDataset  # (o_t, a_t; o_{t+1}) windows of the sim data (`load_transitions`)
  spec: model_lib.ModelSpec       # SimDist's encoder architecture
  scaler: Any                     # the sim dataset's scaler (fixed)
  low: jax.Array                  # [A] action bounds (the planner's)
  high: jax.Array
  seed: int


def make_setup(cfg: Any, workdir: Any) -> Setup:
  """Loads the sim transitions (checking they are this task's) and builds the shared pieces."""
  dataset = load_transitions(cfg, workdir)
  check_dims(dataset, make_task(cfg), cfg.task)
  spec = model_lib.make_spec(cfg.model, dataset.dims)
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=spec.horizon)
  low = jnp.broadcast_to(jnp.asarray(pcfg.action_low, jnp.float32), (spec.action,))
  high = jnp.broadcast_to(jnp.asarray(pcfg.action_high, jnp.float32), (spec.action,))
  return Setup(dataset, spec, model_lib.make_scaler(dataset.stats), low, high, int(cfg.run.seed))


class Agent(Protocol):
  """A real-data baseline as the rounds drive it (optional attributes `extra_keys`, `full_obs`: module doc)."""

  name: str

  def init(self, key: jax.Array, log: Callable[[str], None]) -> tuple[Any, dict]:
    """The state after the sim-only phase, and metrics for round 0's record."""

  def template(self, key: jax.Array) -> Any:
    """A state of the right structure (to deserialize saved states into)."""

  def controller(self, state: Any, deterministic: bool) -> Any:
    """A host controller of `evaluation.run_episode` (deterministic: for evaluation; else: for collection)."""

  def update(self, state: Any, replay: "Replay", num_new: int, seed: int, log: Callable[[str], None],
             label: str) -> tuple[Any, dict]:
    """Trains on the replay (and the sim data) after `num_new` new real transitions; (state, metrics)."""


class Replay:
  """Real transitions in host memory (`keys`, default `TRANSITION_KEYS`), appended episode by episode; uniform
  sampling."""

  def __init__(self, keys: tuple[str, ...] = TRANSITION_KEYS) -> None:
    self.keys = tuple(keys)
    self._parts: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
    self._arrays: dict[str, np.ndarray] | None = None

  def add(self, transitions: dict[str, np.ndarray]) -> None:
    """Appends [N, ...] arrays of every transition key."""
    n = {int(np.asarray(transitions[k]).shape[0]) for k in self.keys}
    if len(n) != 1:
      raise ValueError(f"transition arrays disagree on their length: {n}")
    for k in self.keys:
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


def transitions_from_windows(batch: dict) -> dict:
  """Window batches with H = 0, T = 1 ([B, 2, ...]: steps t and t + 1 of one episode) -> transition batches.

  Both steps of a window lie inside one recorded episode, so s_{t+1} is never terminal and not_done = 1 (an
  episode's last transition, into a termination or past the time limit, is in no window: the sim data shows the
  agent no termination, a bias toward optimism on tasks that can fail; CartPole cannot)."""
  out = {k: batch[k][:, 0] for k in ("proprio", "extero", "command", "action", "reward")}
  out.update({f"next_{k}": batch[k][:, 1] for k in ("proprio", "extero", "command")})
  out["not_done"] = jnp.ones_like(batch["reward"][:, 0])
  return out


def draw_batches(batch_size: int, sim_share: float, replay: Replay | None, dataset: Any, rng: np.random.Generator,
                 key: jax.Array, num: int) -> dict:
  """[num, B, ...] transition batches: `windows.mixed_split(B, sim_share)` sim transitions (windows of `dataset`,
  drawn with fold_in(key, i)) and the rest real ones from `replay`, concatenated real first (`replay` None:
  sim_share must be 1, sim transitions only)."""
  n_real, n_sim = (0, batch_size) if replay is None else windows.mixed_split(batch_size, sim_share)
  out = []
  for i in range(num):
    parts = []
    if n_real:
      parts.append({k: jnp.asarray(v) for k, v in replay.sample(rng, n_real).items()})
    if n_sim:
      parts.append(transitions_from_windows(dataset.sample(jax.random.fold_in(key, i), n_sim)))
    out.append(jax.tree.map(lambda *xs: jnp.concatenate(xs, 0), *parts))
  return jax.tree.map(lambda *xs: jnp.stack(xs), *out)


def chunked_updates(state: Any, num_updates: int, chunk: int, apply: Callable[[Any, int, int], tuple[Any, dict]],
                    describe: Callable[[dict], str], log: Callable[[str], None] = print, label: str = "",
                    multiple: int = 1) -> tuple[Any, dict]:
  """`num_updates` updates as `apply(state, start, n) -> (state, metrics)` calls of n <= `chunk` updates each (n a
  multiple of `multiple` while at least that many remain), a progress line with ETA at most every 10 s and at the
  end (`describe(metrics)`). Returns (state, the last call's metrics as floats). Raises FloatingPointError naming
  the metrics that became non-finite."""
  done, t0, metrics, last_log = 0, time.perf_counter(), {}, 0.0
  while done < num_updates:
    n = min(chunk, num_updates - done)
    n -= n % multiple if n >= multiple else 0
    state, m = apply(state, done, n)
    metrics = {k: float(v) for k, v in m.items()}
    bad = [k for k, v in metrics.items() if not np.isfinite(v)]
    if bad:
      raise FloatingPointError(f"{label}: non-finite {bad} after {done + n} updates")
    done += n
    now = time.perf_counter() - t0
    if now - last_log >= 10.0 or done == num_updates:
      last_log = now
      log(f"{label}: update {done}/{num_updates} | {describe(metrics)} | ETA {now / done * (num_updates - done):.0f}s")
  return state, metrics


def stack_transitions(steps: list[dict], keys: tuple[str, ...] = TRANSITION_KEYS) -> dict[str, np.ndarray]:
  """`run_episode(on_step=...)` transitions -> [N, ...] arrays of `keys`."""
  return {k: np.stack([np.asarray(s[k], np.float32) for s in steps]) for k in keys}


def collect(env: Any, controller: Any, seeds: list[int], keys: tuple[str, ...] = TRANSITION_KEYS,
            full_obs: bool = False, grid: str = "") -> tuple[dict, list[float]]:
  """Episodes of `controller` on `seeds` (episode i from grid point i mod N with `grid`, as the adaptation loop's
  collection): (their transitions [N, ...] of `keys`, their returns)."""
  steps: list[dict] = []
  returns = []
  conds = evaluation.episode_conditions(env.task, grid, len(seeds))
  for s, c in zip(seeds, conds, strict=True):
    out = evaluation.run_episode(env, controller, jax.random.PRNGKey(s), on_step=steps.append, full_obs=full_obs,
                                 condition=c)
    returns.append(out["return"])
  return stack_transitions(steps, keys), returns


def _evaluate(env: Any, controller: Any, seeds: list[int], round0: dict | None, full_obs: bool = False,
              grid: str = "") -> dict:
  ev = evaluation.evaluate_episodes(env, controller, seeds, grid=grid, full_obs=full_obs)
  row = {"real/return_mean": ev["return_mean"], "real/return_std": ev["return_std"], "real/returns": ev["returns"],
         "real/success_mean": ev["success_mean"], "real/success": ev["success"],
         "real/success_final": ev["success_final"]}
  if round0 is not None and len(ev["returns"]) >= 2:
    row["real/return_vs_round0"] = evaluation.paired_bootstrap_ci(ev["returns"], round0["real/returns"])
    row["real/success_vs_round0"] = evaluation.paired_bootstrap_ci(ev["success"], round0["real/success"])
  return row


def baseline_dir(workdir: Any, name: str) -> pathlib.Path:
  """`<workdir>/baselines/<name>`."""
  return paths.stage_dir(workdir, "baselines") / name


def results_complete(workdir: Any, name: str) -> bool:
  """`<workdir>/baselines/<name>/results.json` exists and says complete."""
  p = baseline_dir(workdir, name) / "results.json"
  return p.exists() and bool(fileio.read_json(p).get("complete", False))


def run_rounds(cfg: Any, workdir: Any, agent: Agent, key: jax.Array) -> dict:
  """Runs (or resumes) the agent's rounds; writes `<workdir>/baselines/<name>/results.json`."""
  out = baseline_dir(workdir, agent.name)
  out.mkdir(parents=True, exist_ok=True)
  log = lambda msg: print(f"[baseline-{agent.name}] {msg}", flush=True)  # noqa: E731
  seed, acfg = int(cfg.run.seed), cfg.adapt
  real_env = make_real_env(cfg, "real")
  seeds_eval = eval_seeds(seed, int(acfg.eval_episodes))
  keys = TRANSITION_KEYS + tuple(getattr(agent, "extra_keys", ()))
  full_obs = bool(getattr(agent, "full_obs", False))
  grid = evaluation.eval_grid(cfg)
  replay = Replay(keys)
  rounds: list[dict] = []
  state, template = None, agent.template(key)
  t_stage, n_rounds = time.perf_counter(), int(acfg.rounds) + 1
  for j in range(n_rounds):
    rdir = out / "rounds" / f"round_{j:02d}"  # the adaptation loop's naming
    done_file = rdir / "round.json"
    if done_file.exists():
      rounds.append(fileio.read_json(done_file))
      state = flax.serialization.from_bytes(template, (rdir / "agent.msgpack").read_bytes())
      if j > 0:
        replay.add(dict(fileio.load_npz(rdir / "transitions.npz", required=keys)))
      log(f"round {j}: complete, skipped (return {rounds[-1]['real/return_mean']:.2f})")
      continue
    t0 = time.perf_counter()
    row: dict[str, Any] = {"round": j}
    if j == 0:
      state, metrics = agent.init(key, log)
      row.update(metrics)
      sim = evaluation.evaluate_episodes(make_real_env(cfg, "sim"), agent.controller(state, True),
                                         eval_seeds(seed, int(acfg.sim_eval_episodes)), grid=grid, full_obs=full_obs)
      row.update({"real_minutes": 0.0, "real_episodes": 0, "real_transitions": 0,
                  "sim/return_mean": sim["return_mean"], "sim/return_std": sim["return_std"],
                  "sim/returns": sim["returns"], "sim/success_mean": sim["success_mean"]})
    else:
      round_seeds = [seed * 100_000 + j * 1000 + i for i in range(int(acfg.episodes_per_round))]
      trans, coll_returns = collect(real_env, agent.controller(state, False), round_seeds, keys, full_obs, grid)
      replay.add(trans)
      n_new = int(trans["reward"].shape[0])
      log(f"round {j}: collected {len(round_seeds)} episodes ({n_new} steps, returns "
          f"{', '.join(f'{r:.1f}' for r in coll_returns)}); {len(replay)} real transitions so far")
      state, metrics = agent.update(state, replay, n_new, seed * 7919 + j, log, f"round {j}")
      row.update({f"train/{k}": v for k, v in metrics.items()})
      row.update({"real_transitions": len(replay), "real_episodes": j * len(round_seeds),
                  "real_minutes": len(replay) * real_env.dt / 60.0, "collect/returns": coll_returns})
      rdir.mkdir(parents=True, exist_ok=True)
      fileio.save_npz(rdir / "transitions.npz", trans)
    row.update(_evaluate(real_env, agent.controller(state, True), seeds_eval, rounds[0] if rounds else None,
                         full_obs, grid))
    row["wall_s"] = time.perf_counter() - t0
    rdir.mkdir(parents=True, exist_ok=True)
    fileio.write_bytes(rdir / "agent.msgpack", flax.serialization.to_bytes(state))
    config_lib.atomic_write_text(done_file, json.dumps(row, indent=2))
    rounds.append(row)
    vs0 = row.get("real/return_vs_round0")
    eta = (time.perf_counter() - t_stage) / (j + 1) * (n_rounds - j - 1)
    log(f"round {j}: real return {row['real/return_mean']:.2f} +- {row['real/return_std']:.2f}"
        + (f" (vs round 0 {vs0['diff']:+.1f}, 95% CI [{vs0['lo']:+.1f}, {vs0['hi']:+.1f}])" if vs0 else "")
        + f", success {row['real/success_mean']:.2f}"
        + (f", sim return {row['sim/return_mean']:.2f}" if j == 0 else "")
        + f" ({row['wall_s']:.0f}s; ETA {eta:.0f}s)")
  first, last = rounds[0], rounds[-1]
  summary = {"algo": agent.name, "uses_real_data": True, "complete": True, "rounds": rounds,
             "sim_return": first["sim/return_mean"],
             "real_return_round0": first["real/return_mean"], "real_return_final": last["real/return_mean"],
             "real_success_round0": first["real/success_mean"], "real_success_final": last["real/success_mean"],
             "final_vs_round0": last.get("real/return_vs_round0")}
  config_lib.atomic_write_text(out / "results.json", json.dumps(summary, indent=2))
  vs0 = summary["final_vs_round0"]
  log(f"done: real return {summary['real_return_round0']:.2f} -> {summary['real_return_final']:.2f}"
      + (f" (paired 95% CI of the change [{vs0['lo']:+.1f}, {vs0['hi']:+.1f}])" if vs0 else "")
      + f", success {summary['real_success_round0']:.2f} -> {summary['real_success_final']:.2f}")
  return summary
