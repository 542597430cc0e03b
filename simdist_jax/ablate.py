"""`simdist-jax ablate`: the paper's ablations (Table I, §6.6) over seeds, one run directory per row and seed.

  simdist-jax ablate --config=experiments/configs/cartpole.py:full --seeds 0,1,2,3 [--ablation NAME ...]
      [--variant NAME=key=value[,key=value...]] [--config.key=value ...] [--root DIR] [--plan]

Each row is a config variant (`ABLATIONS`: overrides of the config, the direction the paper reports or implies
against the default SimDist row, and where that direction comes from). Per seed S, the default row runs every
stage of `stages.RUN_ORDER` in `<root>/seed_<S>/simdist/`; each ablation row runs in `<root>/seed_<S>/<row>/`, and
every stage whose fingerprint (`stages.fingerprint`: the keys it and its upstream stages depend on) is the same
under the row's config as under the default's is taken from the default run instead of recomputed: its directory
is a relative symlink to the default run's (`share_plan`). So the planner-only and finetuning-mode rows share the
seed's expert, dataset and pretrained world model and run only `adapt`; the heads and dynamics rows share the
expert and dataset and pretrain their own model. A shared directory that also holds the files of a stage that is
not shared (expert-eval in `expert/` when a row changes the real world) is copied instead, without that stage's
files. Nothing is reused on a key mismatch: every run directory goes through the stage table's record checks
(`stages.check`, refused before anything runs when a record disagrees), and a shared stage must be complete in the
default run under the row's own config.

Resuming: rerunning the same command skips every complete stage of every run (an interrupted stage resumes as its
own command does). Progress lines name the job, the stage and an ETA from the stage times measured under this root
(`<root>/times.json`). A job that fails is reported and the others still run (exit status 1). At the end the table is
written (`simdist_jax.analysis.ablations`): `<root>/report.md` and `<root>/ablations.json`.

Layout under the root: `ablate.json` (the rows, their overrides, directions and shared stages, the seeds; merged
over invocations), `seed_<S>/<row>/` (run directories, each with its own `config.json`, `log.txt`, `report/`),
`times.json`, `log.txt`, `report.md`, `ablations.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import time
import traceback
from typing import Any, Callable, Iterator, Sequence

import ml_collections

from simdist_jax import config as config_lib
from simdist_jax import fileio
from simdist_jax import stages
from simdist_jax.analysis import ablations as table_lib

DEFAULT = table_lib.DEFAULT  # the reference row: the config as given, no ablation override
MANIFEST = table_lib.MANIFEST
TIMES = "times.json"
# The stages each run goes through (the report of each run directory is written after them).
ORDER = tuple(n for n in stages.RUN_ORDER if n != "report")


@dataclasses.dataclass(frozen=True)
class Ablation:
  """One row of the ablation table.

  Attributes:
    name: the row's name (its run directory under `seed_<S>/`).
    overrides: `key=value` config overrides, applied after the command line's `--config.*`.
    direction: what the paper reports or implies for this row against its reference: "worse", "better" or
      "none" (no direction stated; the row is measured, no verdict is given).
    source: where the direction comes from (paper section, or "[inferred]" with the reasoning).
    what: one line describing the row.
  """

  name: str
  overrides: tuple[str, ...]
  direction: str
  source: str
  what: str = ""


@dataclasses.dataclass(frozen=True)
class Contrast:
  """A paired comparison between two rows beyond row vs default (`ref` is the row subtracted)."""

  row: str
  ref: str
  direction: str
  source: str


DIRECTIONS = ("worse", "better", "none")  # of `Ablation.direction` and `Contrast.direction`

ABLATIONS = (
    Ablation("heads_mlp", ("model.heads=mlp",), "worse",
             "paper Table I: MLP reward + value heads 0.82 / 0.60 success, 19.47 reward vs full SimDist's 0.90 / 0.85, "
             "22.78; §2.6 decision 3",
             "per-step MLP reward/value heads instead of the sequence transformers (own pretraining)"),
    Ablation("dynamics_ar_mlp", ("model.dynamics=autoregressive_mlp",), "none",
             "not ablated by the paper: chunked prediction is chosen for throughput (§2.6 decision 2), no return of "
             "an autoregressive model is reported",
             "autoregressive residual MLP dynamics instead of the chunked transformer (own pretraining)"),
    Ablation("finetune_dynamics_encoder", ("model.finetune.train=dynamics+encoder",), "worse",
             "paper §6.6 Fig. 10: unfreezing the encoder collapses (R and V receive out-of-distribution latents; "
             "Peg success falls to 0)",
             "finetune the dynamics and the encoder on the real data"),
    Ablation("finetune_all", ("model.finetune.train=all",), "worse",
             "paper §6.6 Fig. 10: unfreezing the encoder collapses; unfreezing the value forgets (catastrophic "
             "forgetting)",
             "finetune every module (encoder, dynamics, reward, value, policy) on the latent loss"),
    Ablation("no_terminal_value", ("planner.terminal_discount=none",), "worse",
             "[inferred] not ablated by the paper; its planner's return bootstraps with the frozen value (§2.8), "
             "which §6.6 credits with the long-horizon credit assignment",
             "the planner ranks candidates by the discounted reward sum alone (no gamma^h V_h)"),
    Ablation("no_policy_prior",
             ("planner.prior_share=0.0", "planner.prior_mean_candidate=False", "planner.warm_start=shift"), "worse",
             "[inferred] not ablated by the paper; its MPPI is warm-started by the policy head's chunks (§2.8, "
             "TD-MPC)",
             "the policy head never enters the search: no prior samples, the mean starts from the shifted plan"),
    Ablation("warm_start_paper_code", ("planner.warm_start=paper_code",), "none",
             "not ablated by the paper; its results come from this warm start, which discards the previous plan "
             "(§7, code vs paper)",
             "the official code's warm start [a_{h-1}, 0, ..., 0]"),
    Ablation("warm_start_shift", ("planner.warm_start=shift",), "none",
             "not in the paper (TD-MPC's shift, the fix of the official code's)",
             "the previous plan shifted by one step"),
)

# Comparisons between two ablation rows, tabulated when both rows were run.
CONTRASTS = (
    Contrast("warm_start_paper_code", "warm_start_shift", "none",
             "the paper ran paper_code and states no comparison; the code digest calls it a bug"),
    Contrast("no_policy_prior", "warm_start_shift", "worse",
             "[inferred] the prior samples alone (both start from the shifted plan): §2.8's policy-prior samples"),
)


def names() -> tuple[str, ...]:
  """Every predefined ablation row."""
  return tuple(a.name for a in ABLATIONS)


def select(requested: Sequence[str] | None, variants: Sequence[str] = ()) -> list[Ablation]:
  """The rows to run: the default, the named ablations (None or empty: all), then the custom variants.

  `variants`: "NAME=key=value[,key=value...]" (`config.parse_variant`), rows without a paper direction. A row that
  a contrast compares with (`warm_start_shift` for `no_policy_prior`) is not added implicitly.

  Raises:
    ConfigError: an unknown ablation name (the known ones are listed), a variant that is malformed or reuses a
      name.
  """
  known = {a.name: a for a in ABLATIONS}
  requested = list(requested or known)
  bad = [n for n in requested if n not in known]
  if bad:
    raise config_lib.ConfigError(f"unknown ablation {', '.join(repr(n) for n in bad)}; known: {', '.join(known)} "
                                 f"(or a custom row with --variant NAME=key=value[,key=value...])")
  rows = [Ablation(DEFAULT, (), "none", "the config as given", "SimDist (the reference of every row)")]
  rows += [known[n] for n in dict.fromkeys(requested)]
  for spec in variants:
    name, ovr = config_lib.parse_variant(spec)
    if name in [r.name for r in rows] or name in known:
      raise config_lib.ConfigError(f"variant {spec!r}: the name {name!r} is taken (rows: "
                                   f"{', '.join([DEFAULT, *known])}); choose another")
    if not ovr:
      raise config_lib.ConfigError(f"variant {spec!r}: no override (the default row is {DEFAULT!r})")
    rows.append(Ablation(name, tuple(ovr), "none", "custom variant (--variant)", "custom variant"))
  return rows


def row_configs(spec: str, overrides: Sequence[str], rows: Sequence[Ablation]) -> dict[str, Any]:
  """{row: its frozen, validated config} (seed as in `overrides`; `seed_config` sets the seed).

  Raises:
    ConfigError: naming the row and the key of an override that does not load (unknown key, wrong type, a value
      out of range), or a `run.seed` override (seeds come from `--seeds`).
  """
  if any(o.removeprefix("--config.").split("=", 1)[0].strip() == "run.seed" for o in overrides):
    raise config_lib.ConfigError("--config.run.seed: the seeds of `ablate` come from --seeds")
  out = {}
  for r in rows:
    try:
      out[r.name] = config_lib.load_config(spec, [*overrides, *r.overrides])
    except config_lib.ConfigError as e:
      where = "the command line's overrides" if r.name == DEFAULT else f"ablation {r.name!r} ({', '.join(r.overrides)})"
      raise config_lib.ConfigError(f"{where}: {e}") from e
  return out


def seed_config(cfg: Any, seed: int) -> ml_collections.FrozenConfigDict:
  """`cfg` with `run.seed = seed` (frozen)."""
  return ml_collections.FrozenConfigDict(config_lib.apply_overrides(cfg, [f"run.seed={int(seed)}"]))


# ---- which stages a row takes from the default run ------------------------------------------------------------
def shared_stages(cfg: Any, default_cfg: Any, order: Sequence[str] = ORDER) -> tuple[str, ...]:
  """The stages of `order` whose fingerprint is the same under `cfg` as under `default_cfg` (so their artifacts
  are the default run's)."""
  return tuple(n for n in order if stages.fingerprint(n, cfg) == stages.fingerprint(n, default_cfg))


def share_plan(shared: Sequence[str], order: Sequence[str] = ORDER) -> dict[str, str]:
  """{stage directory: "link" | "copy"} for the stages `shared` with the default run.

  "link": every stage of `order` that writes into the directory is shared (a symlink to the default run's
  directory). "copy": the directory's owner (the stage with `owns=None`) is shared but another stage writing
  there is not (a copy without that stage's files and record). Directories of no shared owner are absent.
  """
  out = {}
  for d in dict.fromkeys(stages.STAGES[n].dir for n in order if stages.STAGES[n].dir):
    in_dir = [n for n in order if stages.STAGES[n].dir == d]
    owner = [n for n in in_dir if stages.STAGES[n].owns is None]
    if all(n in shared for n in in_dir):
      out[d] = "link"
    elif owner and all(n in shared for n in owner):
      out[d] = "copy"
  return out


def _unshared_files(directory: str, shared: Sequence[str], order: Sequence[str] = ORDER) -> set[str]:
  """Files of `directory` that belong to its stages not in `shared` (left out of a copy)."""
  out: set[str] = set()
  for n in order:
    st = stages.STAGES[n]
    if st.dir == directory and n not in shared and st.owns is not None:
      out |= set(st.owns) | ({st.record} if st.record else set())
  return out


@dataclasses.dataclass
class Job:
  """One run directory: a row at a seed."""

  seed: int
  row: str
  workdir: pathlib.Path
  cfg: Any
  shared: tuple[str, ...] = ()
  dirs: dict[str, str] = dataclasses.field(default_factory=dict)
  base: pathlib.Path | None = None  # the seed's default run (None for the default row itself)

  @property
  def label(self) -> str:
    """`seed_<S>/<row>`."""
    return f"seed_{self.seed}/{self.row}"

  @property
  def identical(self) -> bool:
    """Every stage is the default run's: the row's overrides change nothing the runs depend on."""
    return self.base is not None and set(self.shared) == set(ORDER)

  def pending(self) -> list[str]:
    """Stages this job still has to run (shared stages are the default job's)."""
    if self.identical:
      return []
    return [n for n in ORDER if n not in self.shared and not stages.is_complete(n, self.cfg, self.workdir)]


def plan(root: str | os.PathLike, cfgs: dict[str, Any], seeds: Sequence[int]) -> list[Job]:
  """Jobs in run order: per seed the default row first, then each ablation row with what it shares."""
  root = pathlib.Path(root)
  jobs = []
  for s in seeds:
    default_cfg = seed_config(cfgs[DEFAULT], s)
    base = root / f"seed_{s}" / DEFAULT
    jobs.append(Job(int(s), DEFAULT, base, default_cfg))
    for name, cfg in cfgs.items():
      if name == DEFAULT:
        continue
      cfg = seed_config(cfg, s)
      shared = shared_stages(cfg, default_cfg)
      jobs.append(Job(int(s), name, root / f"seed_{s}" / name, cfg, shared, share_plan(shared), base))
  return jobs


def check_jobs(jobs: Sequence[Job]) -> None:
  """Refuses, before anything runs, a run directory whose stage records disagree with its config, or whose shared
  directory is a link to somewhere other than its default run.

  Raises:
    StaleStagesError / ConfigError: naming the run directory, the stages and keys.
  """
  for j in jobs:
    if j.identical:
      continue
    stale = stages.check(ORDER, j.cfg, j.workdir)
    if stale:
      raise stages.StaleStagesError(j.workdir, stale)
    for d, how in j.dirs.items():
      p = j.workdir / d
      if how == "link" and p.is_symlink() and p.resolve() != (j.base / d).resolve():
        raise config_lib.ConfigError(f"{p} links to {p.resolve()}, not to the default run's {j.base / d}; move it "
                                     f"aside or use a new --root")


def link_shared(job: Job) -> list[str]:
  """Makes the job's shared directories (symlinks, or copies) from its default run; returns what it made.

  Raises:
    ConfigError: a shared stage is not complete in the default run under the job's config.
  """
  made = []
  if job.base is None:
    return made
  for n in job.shared:
    if not stages.is_complete(n, job.cfg, job.base):
      raise config_lib.ConfigError(f"{job.label}: stage {n} is shared with {job.base} but not complete there")
  for d, how in job.dirs.items():
    dest, src = job.workdir / d, job.base / d
    if dest.exists() or dest.is_symlink():
      continue
    dest.parent.mkdir(parents=True, exist_ok=True)
    if how == "link":
      os.symlink(os.path.relpath(src, dest.parent), dest, target_is_directory=True)
    else:
      skip = _unshared_files(d, job.shared)
      tmp = dest.with_name(dest.name + ".copying")
      shutil.rmtree(tmp, ignore_errors=True)
      shutil.copytree(src, tmp, ignore=lambda where, files, top=src, skip=skip: [
          f for f in files if pathlib.Path(where) == top and f in skip])
      os.replace(tmp, dest)
    made.append(f"{d} ({how})")
  return made


# ---- running ---------------------------------------------------------------------------------------------------
def _fmt_s(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def eta(pending: Sequence[str], times: dict[str, list[float]]) -> str:
  """Remaining time of the pending stage runs from the mean measured time per stage, and the stages not yet
  measured."""
  known = [n for n in pending if times.get(n)]
  total = sum(sum(times[n]) / len(times[n]) for n in known)
  unknown = sorted(set(pending) - set(known), key=ORDER.index)
  if not unknown:
    return _fmt_s(total)
  return (f">= {_fmt_s(total)} + " if known else "") + f"{', '.join(unknown)} (not measured yet)"


@contextlib.contextmanager
def _root_files(root: pathlib.Path) -> Iterator[None]:
  """Waits for and holds `<root>/.files.lock` while the files shared by the commands on one root (`ablate.json`,
  `times.json`, the table) are read and rewritten: two commands with disjoint seeds may run side by side."""
  root.mkdir(parents=True, exist_ok=True)
  with open(root / ".files.lock", "a+", encoding="utf-8") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def write_manifest(root: pathlib.Path, spec: str, overrides: Sequence[str], rows: Sequence[Ablation],
                   jobs: Sequence[Job], seeds: Sequence[int]) -> dict:
  """Merges this invocation's rows and seeds into `<root>/ablate.json` (rows of earlier invocations stay)."""
  with _root_files(root):
    return _merge_manifest(root, spec, overrides, rows, jobs, seeds)


def _merge_manifest(root: pathlib.Path, spec: str, overrides: Sequence[str], rows: Sequence[Ablation],
                    jobs: Sequence[Job], seeds: Sequence[int]) -> dict:
  path = root / MANIFEST
  old = fileio.read_json(path) if path.exists() else {}
  by_row = {j.row: j for j in jobs}
  man_rows = dict(old.get("rows", {}))
  for r in rows:
    j = by_row[r.name]
    man_rows[r.name] = {"overrides": list(r.overrides), "direction": r.direction, "source": r.source,
                        "what": r.what, "shares": list(j.shared), "dirs": dict(j.dirs), "identical": j.identical}
  run = set(man_rows)
  man = {"config": spec, "overrides": list(overrides),
         "seeds": sorted(set(old.get("seeds", [])) | {int(s) for s in seeds}), "rows": man_rows,
         "contrasts": [dataclasses.asdict(c) for c in CONTRASTS if {c.row, c.ref} <= run]}
  root.mkdir(parents=True, exist_ok=True)
  fileio.write_text(path, json.dumps(man, indent=2))
  return man


def _load_times(root: pathlib.Path) -> dict[str, list[float]]:
  p = root / TIMES
  return {k: list(v) for k, v in fileio.read_json(p).items()} if p.exists() else {}


def record_time(root: pathlib.Path, stage: str, seconds: float) -> dict[str, list[float]]:
  """Appends a measured stage time to `<root>/times.json` (merged with other commands' entries); returns all."""
  with _root_files(root):
    times = _load_times(root)
    times.setdefault(stage, []).append(round(float(seconds), 1))
    fileio.write_text(root / TIMES, json.dumps(times, indent=2))
  return times


def run_job(job: Job, log: Callable[[str], None], on_stage: Callable[[Job, str, float], None]) -> None:
  """Runs one job: links its shared directories, checks its records, runs its pending stages, writes its report."""
  from simdist_jax import cli  # pylint: disable=import-outside-toplevel  # its console log
  from simdist_jax.analysis import report  # pylint: disable=import-outside-toplevel
  job.workdir.mkdir(parents=True, exist_ok=True)
  with stages.workdir_lock(job.workdir), cli.console_log(job.workdir, ["ablate", job.label]):
    made = link_shared(job)
    if made:
      log(f"{job.label}: from {job.base.name}: {', '.join(made)}")
    stale = stages.check(ORDER, job.cfg, job.workdir)
    if stale:
      raise stages.StaleStagesError(job.workdir, stale)
    config_lib.write_run_config(job.workdir, job.cfg)
    ran = False
    for n in ORDER:
      if stages.is_complete(n, job.cfg, job.workdir):
        continue
      log(f"{job.label}: {n} running")
      t0 = time.perf_counter()
      stages.run_one(n, job.cfg, job.workdir)
      on_stage(job, n, time.perf_counter() - t0)
      ran = True
    if ran or not (job.workdir / "report" / "report.md").exists():
      report.write_report(job.workdir)


def run(spec: str, overrides: Sequence[str], seeds: Sequence[int], root: str | os.PathLike,
        requested: Sequence[str] | None = None, variants: Sequence[str] = (), plan_only: bool = False,
        log: Callable[[str], None] | None = None) -> dict:
  """The `ablate` command: plans, checks, runs (or with `plan_only` only prints) every job, then tabulates.

  Returns {"jobs": [labels], "failed": {label: error}, "table": the tabulation or None}.

  Raises:
    ConfigError (StaleStagesError included): a bad name or override, a stale run directory; nothing was run.
  """
  log = log or (lambda msg: print(f"[ablate] {msg}", flush=True))
  root = pathlib.Path(root)
  if not seeds:
    raise config_lib.ConfigError("--seeds: at least one seed")
  rows = select(requested, variants)
  cfgs = row_configs(spec, overrides, rows)
  jobs = plan(root, cfgs, seeds)
  check_jobs(jobs)
  times = _load_times(root)
  todo = {j.label: j.pending() for j in jobs}
  pending_all = [n for j in jobs for n in todo[j.label]]
  log(f"{len(rows)} rows x {len(seeds)} seeds under {root}; {len(pending_all)} stage runs to do, ETA "
      f"{eta(pending_all, times)}")
  for r in rows:
    js = [j for j in jobs if j.row == r.name]
    j = js[0]  # what a row shares does not depend on the seed
    if j.base is None:
      what = "every stage"
    elif j.identical:
      what = f"identical to {DEFAULT} under this config (its overrides change nothing the runs depend on): not run"
    else:
      what = (f"shares {', '.join(j.shared) or 'nothing'} with {DEFAULT}"
              + (f" ({', '.join(f'{d}: {h}' for d, h in j.dirs.items())})" if j.dirs else ""))
    runs = {f"seed {x.seed}": ", ".join(todo[x.label]) or "nothing" for x in js}
    left = (f"at every seed: {next(iter(runs.values()))}" if len(set(runs.values())) == 1
            else "; ".join(f"{k}: {v}" for k, v in runs.items()))
    log(f"  {r.name}: {what}; to run {left}")
  if plan_only:
    return {"jobs": [j.label for j in jobs], "failed": {}, "table": None, "pending": todo}
  from simdist_jax import runtime  # pylint: disable=import-outside-toplevel
  runtime.configure_compile_cache(str(cfgs[DEFAULT].run.compile_cache_dir))  # as every stage command does
  with contextlib.ExitStack() as locks:
    for s in dict.fromkeys(seeds):  # commands with other seeds may run on the same root at the same time
      locks.enter_context(stages.workdir_lock(root / f"seed_{s}"))
    return _run_jobs(root, spec, overrides, rows, jobs, seeds, todo, times, log)


def _run_jobs(root: pathlib.Path, spec: str, overrides: Sequence[str], rows: Sequence[Ablation], jobs: Sequence[Job],
              seeds: Sequence[int], todo: dict[str, list[str]], times: dict[str, list[float]],
              log: Callable[[str], None]) -> dict:
  """The jobs in order (a failing one is reported and the others run), then the table."""
  write_manifest(root, spec, overrides, rows, jobs, seeds)
  failed: dict[str, str] = {}
  t_all = time.perf_counter()
  done = 0

  def on_stage(job: Job, stage: str, seconds: float) -> None:
    nonlocal done, times
    done += 1
    times = record_time(root, stage, seconds)
    todo[job.label].remove(stage)
    left = [n for lab, p in todo.items() if lab not in failed for n in p]
    log(f"{job.label}: {stage} done in {_fmt_s(seconds)}; {done} stage runs done in "
        f"{_fmt_s(time.perf_counter() - t_all)}, {len(left)} to go, ETA {eta(left, times)}")

  failed_seeds: set[int] = set()
  for k, j in enumerate(jobs, 1):
    if j.identical:
      continue
    if j.seed in failed_seeds:
      failed[j.label] = f"the default run {j.base} failed"
      continue
    log(f"[{k}/{len(jobs)}] {j.label}" + (": complete" if not todo[j.label] else ""))
    try:
      run_job(j, log, on_stage)
    except Exception as e:  # pylint: disable=broad-except  # one failing row does not stop the others
      traceback.print_exc()
      failed[j.label] = f"{type(e).__name__}: {e}"
      if j.base is None:
        failed_seeds.add(j.seed)
      log(f"{j.label}: FAILED ({failed[j.label]}); continuing with the other jobs")
  with _root_files(root):
    table = table_lib.write(root)
  log(f"finished in {_fmt_s(time.perf_counter() - t_all)}; table: {root / table_lib.REPORT}"
      + (f"; FAILED: {', '.join(failed)}" if failed else ""))
  return {"jobs": [j.label for j in jobs], "failed": failed, "table": table}
