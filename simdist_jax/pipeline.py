"""The `run` stage: every stage of `stages.RUN_ORDER` in order, skipping the complete ones.

Rerunning the same command after an interruption continues where it stopped. Before anything runs, every stage
record is compared with the current config (`stages.check`): a stale one stops the run with the differing keys,
unless `restart_from` names it or a stage upstream of it, in which case that stage and everything downstream of
it are moved to `<workdir>/stale/` and recomputed.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax import stages


def _log(msg: str) -> None:
  print(f"[run] {msg}", flush=True)


def run_stage(cfg: Any, workdir: Any, restart_from: str | tuple[str, ...] | list[str] | None = None) -> dict:
  """Runs every stage of `stages.RUN_ORDER`, skipping the complete ones; returns {stage: seconds}.

  Args:
    cfg: the frozen config.
    workdir: run directory.
    restart_from: stages of `RUN_ORDER` (one name, a comma-separated string or a sequence) to recompute with
      everything downstream of them (their artifacts are moved to `<workdir>/stale/<stage>-<UTC time>/` first).

  Raises:
    StaleStagesError: some stage outside the restarted ones was made with a different config (nothing ran).
    ConfigError: `restart_from` is not a stage of `run`.
  """
  workdir = pathlib.Path(workdir)
  order = stages.RUN_ORDER
  if isinstance(restart_from, str):
    restart_from = [s.strip() for s in restart_from.split(",") if s.strip()]
  bad = [s for s in restart_from or () if s not in order]
  if bad:
    raise config_lib.ConfigError(f"--restart-from={','.join(restart_from)}: {bad} not a stage of `run`; stages: "
                                 f"{', '.join(order)}")
  restart = stages.downstream(restart_from, order) if restart_from else ()
  stale = stages.check([n for n in order if n not in restart], cfg, workdir)
  if stale:
    raise stages.StaleStagesError(workdir, stale)
  for dest in stages.move_aside(restart, workdir):
    _log(f"moved stale artifacts to {dest}")
  config_lib.write_run_config(workdir, cfg)
  times = {}
  t_all = time.perf_counter()
  for i, name in enumerate(order, 1):
    if stages.is_complete(name, cfg, workdir):
      _log(f"[{i}/{len(order)}] {name}: complete, skipped")
      continue
    _log(f"[{i}/{len(order)}] {name}: running")
    t0 = time.perf_counter()
    stages.run_one(name, cfg, workdir)
    times[name] = time.perf_counter() - t0
    _log(f"[{i}/{len(order)}] {name}: done in {times[name]:.0f}s (total {time.perf_counter() - t_all:.0f}s)")
  config_lib.atomic_write_text(workdir / "run_times.json", json.dumps(times, indent=2))
  _log(f"finished in {time.perf_counter() - t_all:.0f}s; report: {paths.report_dir(workdir) / 'report.md'}")
  return times
