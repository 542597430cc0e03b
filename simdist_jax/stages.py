"""The stage table: every `simdist-jax` subcommand, what it runs, when it is complete, and what it depends on.

One `Stage` per subcommand. The CLI builds its subcommands from `STAGES`, and `run` (`simdist_jax.pipeline`)
drives the stages of `RUN_ORDER` from it; nothing else registers stages.

Fingerprints. A stage's artifacts depend on the config keys its own `keys` cover (dotted prefixes `include`,
minus the prefixes `exclude`; a key added to an included section later is covered by default) and on everything
its `upstream` stages depend on, transitively (`covers(name, key)`). Each stage directory holds a record of the
config it was made with (`<dir>/config.json`, or `<dir>/<record>` for the stages that write into another stage's
directory), written once by `config.prepare_run_dir` before the stage's first artifact. A stage is complete only
when its record agrees with the current config on every covered key AND its artifacts are complete. A record
that differs is stale: nothing is run, the differing keys are listed (`StaleStagesError`) and
`simdist-jax run --restart-from=STAGE[,STAGE...]` recomputes those stages and everything downstream of them after
moving the stale artifacts to `<workdir>/stale/<stage>-<UTC time>/` (nothing is deleted).

Keys that only change what is printed or logged (`LOG_ONLY`) are in no fingerprint, and evaluation-only keys
only in the stage that evaluates (`expert.eval_*` in expert-eval, `planner.*` in adapt), so changing them never
invalidates a trained expert, dataset or world model.

Run functions and completion checks are named by `"module:function"` and imported when used, so reading the
table (the CLI's help) imports no JAX.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import os
import pathlib
import time
from typing import Any, Callable, Iterator

from simdist_jax import config as config_lib

@dataclasses.dataclass(frozen=True)
class Fingerprint:
  """The config keys a stage's own work reads: dotted prefixes `include` minus the prefixes `exclude`, plus the
  prefixes `when_active` while the config's `active` key is nonzero (a stage that can be switched off, e.g.
  `refine.rounds = 0`, reads them only when it runs: off, they make it stale in no config)."""

  include: tuple[str, ...] = ()
  exclude: tuple[str, ...] = ()
  when_active: tuple[str, ...] = ()
  active: str | None = None

  def covers(self, key: str, cfg: Any = None) -> bool:
    """Whether the stage reads `key` (under `cfg`, which decides the `when_active` prefixes; None: active)."""
    if _under(key, self.exclude):
      return False
    if _under(key, self.include):
      return True
    if not self.when_active or not _under(key, self.when_active):
      return False
    return cfg is None or self.active is None or bool(config_lib.lookup(cfg, self.active))


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One row of the stage table.

  Attributes:
    name: the subcommand.
    help: one line for `simdist-jax --help`.
    run: `"module:function"`, called as `f(cfg, workdir)` (the `run` stage also gets `restart_from`).
    complete: `"module:function"`, `f(cfg, workdir) -> bool`: its artifacts are complete (the record is
      checked here, not there); None: never complete (the stage always runs when asked).
    keys: the config keys its own work reads.
    upstream: stages whose artifacts it reads; their fingerprints are part of its own.
    dir: its directory under the workdir (holds the record); None: it writes nothing of its own.
    record: file name of its config record in `dir`; None: no record (it always reruns and depends on nothing
      but its upstream artifacts).
    owns: the files of `dir` that belong to it when `dir` is another stage's (None: all of `dir`).
    kind: "config" (`--config`, `--workdir`), "run_dir" (a positional run directory holding config.json) or
      "pipeline" (`--config`, `--workdir`, `--restart-from`).
  """

  name: str
  help: str
  run: Any
  complete: Any
  keys: Fingerprint = Fingerprint()
  upstream: tuple[str, ...] = ()
  dir: str | None = None
  record: str | None = "config.json"
  owns: tuple[str, ...] | None = None
  kind: str = "config"


# Keys that only change progress lines, logged metrics, evaluation during training, or the speed and memory of the
# same computation (devices, how the data is read): in no fingerprint.
LOG_ONLY = ("preset", "run.log_every_s", "run.compile_cache_dir", "run.mesh", "expert.train_eval_episodes",
            "model.log_every", "model.eval_every", "model.eval_batches", "data.loading", "run.coordinator",
            "run.num_processes", "run.process_id")
# What exists only on the real side: the real domain (and the Go2 world it is built from).
_REAL = ("domain.real", "env.world")
# The evaluation protocol's grid of initial conditions (tasks with `Task.initial_conditions`, e.g. peg_insertion):
# where evaluation episodes start, not what the expert trains on.
_EVAL = ("env.eval_grid",)
_EXPERT_EVAL = ("expert.eval_sim_episodes", "expert.eval_real_episodes", "expert.eval_seed")
# Window settings of `data`: they shape the world model's training windows, not the generated dataset.
_WINDOWS = ("data.window_start_margin", "data.window_end_margin", "data.eval_fraction", "data.front_pad")

# The evaluation protocol every real-data method shares with `adapt`: episode counts and where episodes start.
_EVAL_PROTOCOL = ("adapt.eval_episodes", "adapt.sim_eval_episodes") + _EVAL
# What every baseline on the sim data shares with SimDist: the encoder, the action bounds, the held-out split, the
# evaluation.
_BASELINE_SHARED = ("model.encoder", "model.latent_dim", "planner.action_low", "planner.action_high",
                    "data.eval_fraction") + _EVAL_PROTOCOL

_TABLE = (
    Stage("env", "describe the task and roll out random actions in both backends",
          run="simdist_jax.envs.inspect:run_stage", complete=None,
          keys=Fingerprint(("task", "env", "domain", "run.seed"), exclude=LOG_ONLY), dir="env"),
    Stage("expert", "train the privileged PPO expert and its checkpoint ladder",
          run="simdist_jax.experts.ppo:run_stage", complete="simdist_jax.experts.ppo:is_complete",
          keys=Fingerprint(("task", "env", "domain.sim", "expert", "run.seed"),
                           exclude=LOG_ONLY + _EXPERT_EVAL + _REAL + _EVAL),
          dir="expert"),
    Stage("expert-eval", "evaluate every checkpoint in sim and real",
          run="simdist_jax.experts.evaluate:run_stage", complete="simdist_jax.experts.evaluate:is_complete",
          keys=Fingerprint(_EXPERT_EVAL + _REAL), upstream=("expert",),
          dir="expert", record="expert_eval_config.json", owns=("expert_eval.json", "expert_ladder.png")),
    Stage("generate", "generate the mixed-quality dataset (Algorithm 2)",
          run="simdist_jax.data.generate:run_stage", complete="simdist_jax.data.generate:is_complete",
          keys=Fingerprint(("data",), exclude=_WINDOWS + ("data.loading",)), upstream=("expert",), dir="data"),
    Stage("data-report", "summarize a generated dataset",
          run="simdist_jax.data.report:run_stage", complete="simdist_jax.data.report:is_complete",
          upstream=("generate",), dir="data", record="data_report_config.json", owns=("data_report.json",)),
    Stage("pretrain", "pretrain the world model (Eq. 2)",
          run="simdist_jax.world_model.stage:run_stage", complete="simdist_jax.world_model.stage:is_complete",
          keys=Fingerprint(("model", "data"), exclude=LOG_ONLY + ("model.finetune",)), upstream=("generate",),
          dir="world_model"),
    Stage("finetune", "dynamics-only finetuning (Eq. 3) on every recorded real episode",
          run="simdist_jax.world_model.stage:finetune_stage", complete=None,
          keys=Fingerprint(("model.finetune",)), upstream=("adapt",), dir="finetuned"),
    # The sim refinement's episodes come from the planner and Eq. 3: those keys are in its fingerprint only while
    # it runs (refine.rounds > 0); switched off it reads nothing but its own section.
    Stage("refine", "sim on-policy refinement of the dynamics: planner episodes in sim, Eq. 3 on them (off at 0 rounds)",
          run="simdist_jax.adapt.refine:run_stage", complete="simdist_jax.adapt.refine:is_complete",
          keys=Fingerprint(("refine",), exclude=("model.finetune.num_steps",),
                           when_active=("planner", "model.finetune"), active="refine.rounds"),
          upstream=("pretrain",), dir="refine"),
    Stage("adapt", "adaptation rounds in the shifted real world",
          run="simdist_jax.adapt.loop:run_stage", complete="simdist_jax.adapt.loop:is_complete",
          # adapt's finetuning runs adapt.finetune_steps; model.finetune.num_steps is the `finetune` command's.
          keys=Fingerprint(("adapt", "planner", "model.finetune") + _REAL + _EVAL,
                           exclude=("model.finetune.num_steps",)),
          upstream=("refine",), dir="adapt"),
    Stage("baseline-bc", "single-step BC of the clean sim expert, evaluated with the adaptation loop's protocol",
          run="simdist_jax.baselines.bc:run_stage", complete="simdist_jax.baselines.bc:is_complete",
          keys=Fingerprint(("baselines.bc",) + _BASELINE_SHARED + _REAL), upstream=("generate",),
          dir="baselines/bc"),
    Stage("baseline-rlpd", "RLPD from single-step BC under the adaptation loop's real-data budget and protocol",
          run="simdist_jax.baselines.rlpd:run_stage", complete="simdist_jax.baselines.rlpd:is_complete",
          keys=Fingerprint(("baselines.rlpd", "baselines.bc", "adapt.rounds", "adapt.episodes_per_round")
                           + _BASELINE_SHARED + _REAL), upstream=("generate",), dir="baselines/rlpd"),
    Stage("baseline-iql", "IQL offline on the sim data, then online under the adaptation loop's budget and protocol",
          run="simdist_jax.baselines.iql:run_stage", complete="simdist_jax.baselines.iql:is_complete",
          keys=Fingerprint(("baselines.iql", "baselines.bc", "adapt.rounds", "adapt.episodes_per_round")
                           + _BASELINE_SHARED + _REAL), upstream=("generate",), dir="baselines/iql"),
    Stage("baseline-sgft", "SGFT-SAC: RLPD's agent with rewards shaped by the sim value, a short discount",
          run="simdist_jax.baselines.sgft:run_stage", complete="simdist_jax.baselines.sgft:is_complete",
          keys=Fingerprint(("baselines.sgft", "baselines.rlpd", "baselines.bc", "adapt.rounds",
                            "adapt.episodes_per_round") + _BASELINE_SHARED + _REAL), upstream=("generate",),
          dir="baselines/sgft"),
    # PPO finetuning reads the expert's checkpoints, not the sim data: upstream `expert`, and of the shared keys
    # only the real-data budget and the evaluation protocol (its episodes start from `env.eval_grid` too).
    Stage("baseline-ppo", "PPO finetuning of the privileged expert under the adaptation loop's budget and protocol",
          run="simdist_jax.baselines.ppo:run_stage", complete="simdist_jax.baselines.ppo:is_complete",
          keys=Fingerprint(("baselines.ppo", "adapt.rounds", "adapt.episodes_per_round") + _EVAL_PROTOCOL + _REAL),
          upstream=("expert",), dir="baselines/ppo"),
    Stage("report", "write report.md for a run directory",
          run="simdist_jax.analysis.report:run_stage", complete=None,
          upstream=("expert-eval", "data-report", "adapt"), dir="report", record=None, kind="run_dir"),
    Stage("run", "the whole pipeline, skipping complete stages (stops on stale ones, see --restart-from)",
          run="simdist_jax.pipeline:run_stage", complete=None, dir=None, record=None, kind="pipeline"),
)
STAGES: dict[str, Stage] = {s.name: s for s in _TABLE}
# The baselines (`simdist-jax baseline --algo=NAME` runs stage `baseline-NAME`), in the order they were added.
BASELINES = tuple(n.removeprefix("baseline-") for n in STAGES if n.startswith("baseline-"))
# The stages `run` drives, in order (every upstream stage comes before the stages that read it).
RUN_ORDER = ("expert", "expert-eval", "generate", "data-report", "pretrain", "refine", "adapt", "report")


def resolve(ref: Any) -> Callable[..., Any]:
  """The function a `"module:function"` reference names (imported now); a callable is returned as is."""
  if callable(ref):
    return ref
  module, _, fn = ref.partition(":")
  return getattr(importlib.import_module(module), fn)


# ---- fingerprints -----------------------------------------------------------------------------------------------
def closure(name: str) -> tuple[str, ...]:
  """`name` and every stage it depends on, transitively (`name` first)."""
  out: list[str] = []
  todo = [name]
  while todo:
    n = todo.pop(0)
    if n not in out:
      out.append(n)
      todo.extend(STAGES[n].upstream)
  return tuple(out)


def covers(name: str, key: str, cfg: Any = None) -> bool:
  """True when the artifacts of stage `name` depend on the dotted config key `key` (under `cfg`: a switched-off
  stage's `when_active` keys count for nothing; None: as if every stage were on)."""
  return any(STAGES[n].keys.covers(key, cfg) for n in closure(name))


def fingerprint(name: str, cfg: Any) -> dict[str, Any]:
  """{dotted key: value} of every leaf of `cfg` that stage `name` depends on."""
  return {k: v for k, v in config_lib.leaf_items(cfg) if covers(name, k, cfg)}


def downstream(names: str | tuple[str, ...] | list[str], among: tuple[str, ...] = RUN_ORDER) -> tuple[str, ...]:
  """The stages of `among` that depend on one of `names` (those included), in the order of `among`."""
  names = (names,) if isinstance(names, str) else tuple(names)
  return tuple(n for n in among if set(names) & set(closure(n)))


def roots(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
  """The stages of `names` that depend on no other stage of `names`, in `RUN_ORDER` (what to restart from)."""
  return tuple(n for n in RUN_ORDER if n in names and not set(names) & set(closure(n)[1:]))


# ---- records ----------------------------------------------------------------------------------------------------
def record_path(name: str, workdir: Any) -> pathlib.Path | None:
  """Path of stage `name`'s config record in `workdir`, or None when the stage keeps none."""
  st = STAGES[name]
  return None if st.dir is None or st.record is None else pathlib.Path(workdir) / st.dir / st.record


def stale_keys(name: str, cfg: Any, workdir: Any) -> list[tuple[str, Any, Any]] | None:
  """`[(key, recorded, current)]` where the stage's record differs from `cfg` (`[]`: it agrees); None: no record."""
  path = record_path(name, workdir)
  if path is None:
    return None
  return config_lib.record_diff(path, cfg, covers=lambda k: covers(name, k, cfg))


def check(names: tuple[str, ...] | list[str], cfg: Any, workdir: Any) -> dict[str, list]:
  """{stage: differing keys} for the stages of `names` whose record disagrees with `cfg` (empty: none)."""
  out = {}
  for n in names:
    d = stale_keys(n, cfg, workdir)
    if d:
      out[n] = d
  return out


def is_complete(name: str, cfg: Any, workdir: Any) -> bool:
  """The stage's record agrees with `cfg` and its artifacts are complete."""
  st = STAGES[name]
  if st.complete is None or stale_keys(name, cfg, workdir) != []:
    return False
  return bool(resolve(st.complete)(cfg, workdir))


class StaleStagesError(config_lib.ConfigError):
  """Stage directories made with a different config (refused before anything runs).

  Attributes:
    workdir: the run directory.
    stale: {stage: [(key, recorded value, current value), ...]}.
  """

  def __init__(self, workdir: Any, stale: dict[str, list]):
    self.workdir = pathlib.Path(workdir)
    self.stale = dict(stale)
    names = list(self.stale)
    first = self.stale[names[0]][0]
    lines = [f"{', '.join(names)}: made with a different config ({first[0]}: {first[1]!r} -> {first[2]!r}"
             f"{', ...' if len(self.stale[names[0]]) > 1 else ''}) in '{self.workdir}'; nothing was run. "
             f"Differences (recorded -> current):"]
    for n, diffs in self.stale.items():
      lines.append(f"  {n} ({record_path(n, self.workdir).relative_to(self.workdir)}): "
                   + "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs))
    first = roots([n for n in names if n in RUN_ORDER])
    if first:
      lines.append(f"To recompute {' and '.join(first)} and everything downstream, rerun `simdist-jax run` with "
                   f"--restart-from={','.join(first)} (the stale artifacts move to '{self.workdir / 'stale'}/', "
                   f"nothing is deleted), or use a new --workdir.")
    others = [n for n in names if n not in RUN_ORDER]
    if others:
      lines.append("Move " + ", ".join(f"'{self.workdir / STAGES[n].dir}'" for n in others)
                   + " aside or use a new --workdir.")
    super().__init__("\n".join(lines))


def prepare(name: str, cfg: Any, workdir: Any) -> pathlib.Path | None:
  """Checks the records of `name` and its upstream stages, then writes `name`'s record if it has none.

  Returns the stage directory (None for a stage without one). Raises StaleStagesError (a ConfigError) listing
  every stale record of the stage and its upstream, before anything is written.
  """
  stale = check(closure(name), cfg, workdir)
  if stale:
    raise StaleStagesError(workdir, stale)
  st = STAGES[name]
  if st.dir is None:
    return None
  d = pathlib.Path(workdir) / st.dir
  if st.record is None:
    d.mkdir(parents=True, exist_ok=True)
    return d
  return config_lib.prepare_run_dir(d, cfg, covers=lambda k: covers(name, k, cfg), record=st.record)


def run_one(name: str, cfg: Any, workdir: Any) -> Any:
  """Prepares stage `name`'s directory (refusing stale records) and calls its run function."""
  prepare(name, cfg, workdir)
  return resolve(STAGES[name].run)(cfg, workdir)


def execute(name: str, cfg: Any, workdir: Any, primary: bool = True, **kwargs: Any) -> Any:
  """A CLI subcommand: checks the records, writes `<workdir>/config.json`, runs the stage.

  `<workdir>/config.json` is written only once the stage directories passed their checks (the `run` stage
  writes it itself after checking all of them), so a refused invocation leaves it as it was. `primary=False`
  (the processes other than 0 of a multi-host run, `simdist_jax.distributed`): the records are checked, nothing
  is written, the stage runs.
  """
  st = STAGES[name]
  fn = resolve(st.run)
  if st.kind == "pipeline":
    return fn(cfg, workdir, **kwargs)
  if st.kind == "config":
    if primary:
      prepare(name, cfg, workdir)
      config_lib.write_run_config(workdir, cfg)
    else:
      stale = check(closure(name), cfg, workdir)
      if stale:
        raise StaleStagesError(workdir, stale)
  return fn(cfg, workdir)


# ---- moving stale artifacts aside -------------------------------------------------------------------------------
def move_aside(names: tuple[str, ...] | list[str], workdir: Any, stamp: str | None = None) -> list[pathlib.Path]:
  """Moves the artifacts of `names` to `<workdir>/stale/<stage>-<UTC time>/`; returns the new folders.

  Downstream stages go first, so a stage that writes into another's directory (expert-eval into `expert/`)
  keeps its own files in its own folder. Stages with nothing on disk are skipped.
  """
  workdir = pathlib.Path(workdir)
  stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
  moved = []
  for n in reversed(list(names)):
    st = STAGES[n]
    if st.dir is None:
      continue
    src = workdir / st.dir
    if st.owns is None:
      files = [src] if src.exists() else []
    else:
      files = [src / f for f in st.owns + ((st.record,) if st.record else ()) if (src / f).exists()]
    if not files:
      continue
    dest = workdir / "stale" / f"{n}-{stamp}"
    i = 1
    while dest.exists():
      i += 1
      dest = workdir / "stale" / f"{n}-{stamp}-{i}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if st.owns is None:
      os.replace(src, dest)
    else:
      dest.mkdir()
      for f in files:
        os.replace(f, dest / f.name)
    moved.append(dest)
  return moved


# ---- workdir lock -----------------------------------------------------------------------------------------------
class WorkdirLockedError(RuntimeError):
  """Another process holds the workdir's lock."""


LOCK_FILE = ".lock"


@contextlib.contextmanager
def workdir_lock(workdir: Any) -> Iterator[pathlib.Path]:
  """Holds an exclusive `fcntl.flock` on `<workdir>/.lock` (which records the holder's PID) for the block.

  Raises:
    WorkdirLockedError: at once, when another process (or another open of the file) holds it; names the
      workdir and the PID written by the holder.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_FILE
  f = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.seek(0)
    pid = f.read().strip() or "unknown"
    f.close()
    raise WorkdirLockedError(f"workdir '{workdir}' is in use by another simdist-jax process (PID {pid}, lock "
                             f"'{path}'); wait for it to finish, or use another --workdir") from None
  try:
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    yield path
  finally:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()
