"""`simdist-jax <stage> --config=experiments/configs/<task>.py:<preset> [--config.key=value ...] [--workdir=DIR]`.

One subcommand per row of the stage table (`simdist_jax.stages.STAGES`). The CLI only parses and loads the
config, then, holding the workdir's lock (`<workdir>/.lock`) and appending its console output to
`<workdir>/log.txt`, hands the stage to `stages.execute` (record checks, `<workdir>/config.json`, the run).
Exit status 2: the config, a stale stage directory or the lock refused the invocation (nothing was run).
A multi-host run (`run.num_processes` >= 2, `simdist_jax.distributed`) starts `jax.distributed` between parsing
and validating the config; process 0 alone takes the lock and writes the records and `log.txt`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
import time
from typing import Any, Iterator, TextIO

from simdist_jax import config as config_lib
from simdist_jax import distributed
from simdist_jax import paths
from simdist_jax import runtime
from simdist_jax import stages

LOG_FILE = "log.txt"


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="simdist-jax", description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="stage", metavar="STAGE")
  for name, st in stages.STAGES.items():
    s = sub.add_parser(name, help=st.help)
    if st.kind == "run_dir":
      s.add_argument("run_dir", nargs="+" if name == "report" else None,
                     help="run directory (holds config.json and the stage outputs)"
                     + ("; several: one comparison of SimDist and every baseline over them (needs --out)"
                        if name == "report" else ""))
      if name == "report":
        s.add_argument("--out", default=None, help="with several run directories: where compare.md and the plots "
                                                   "go (mean and 95 %% interval over the runs, one per seed)")
        s.add_argument("--ablations", default=None, metavar="ROOT",
                       help="with --out: append the ablation table of ROOT (a `simdist-jax ablate` root) to compare.md"
                            "; `report ROOT` alone rewrites ROOT/report.md")
      continue
    s.add_argument("--config", required=True, help="path/to/task.py:preset (preset: small|paper)")
    s.add_argument("--workdir", default=None, help="run directory (default runs/<task>_<preset>)")
    if st.kind == "pipeline":
      s.add_argument("--restart-from", default=None, metavar="STAGE[,STAGE...]",
                     help="recompute these stages and every stage downstream of them (their artifacts move to "
                          f"<workdir>/stale/); stages: {', '.join(stages.RUN_ORDER)}")
  s = sub.add_parser("baseline", help="a model-free baseline on the run's sim data, evaluated as `adapt` evaluates "
                                      f"(the stage baseline-ALGO; algorithms: {', '.join(stages.BASELINES)})")
  s.add_argument("--algo", required=True, choices=stages.BASELINES, help="the baseline algorithm")
  s.add_argument("--config", required=True, help="path/to/task.py:preset (preset: small|paper)")
  s.add_argument("--workdir", default=None, help="run directory (default runs/<task>_<preset>)")
  from simdist_jax import ablate  # pylint: disable=import-outside-toplevel  # imports no JAX
  s = sub.add_parser("ablate", help="the paper's ablations (Table I, section 6.6) over seeds, one run directory per "
                                    "row and seed sharing the default run's stages where the fingerprints agree; the "
                                    "table in <root>/report.md")
  s.add_argument("--config", default=None, help="path/to/task.py:preset (the default row; the ablations override it)")
  s.add_argument("--seeds", default="0,1,2,3", help="comma-separated run.seed values (default 0,1,2,3)")
  s.add_argument("--ablation", action="append", default=None, metavar="NAME",
                 help=f"a row (repeat for several; default all): {', '.join(ablate.names())}")
  s.add_argument("--variant", action="append", default=[], metavar="NAME=key=value[,key=value...]",
                 help="a custom row (no paper direction; repeatable)")
  s.add_argument("--root", default=None, help="root of the runs and the table (default runs/ablate_<task>_<preset>)")
  s.add_argument("--plan", action="store_true", help="print what each row shares, runs and the ETA; run nothing")
  s.add_argument("--list", action="store_true", help="print the predefined rows (overrides, the paper's direction)")
  return p


class _Tee:
  """A text stream that writes to `stream` and to the log file `log`."""

  def __init__(self, stream: TextIO, log: TextIO):
    self._stream, self._log = stream, log

  def write(self, text: str) -> int:
    self._stream.write(text)
    self._log.write(text)
    return len(text)

  def flush(self) -> None:
    self._stream.flush()
    self._log.flush()

  def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the terminal's
    return getattr(self._stream, name)


@contextlib.contextmanager
def console_log(workdir: pathlib.Path, argv: list[str], name: str = LOG_FILE) -> Iterator[pathlib.Path]:
  """Appends everything printed to stdout and stderr inside the block to `<workdir>/<name>` (default `log.txt`;
  and still prints it), after a header line naming the time, the PID and the command."""
  path = pathlib.Path(workdir) / name
  with open(path, "a", encoding="utf-8", buffering=1) as log:
    log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC pid {os.getpid()}: simdist-jax "
              f"{' '.join(argv)}\n")
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
    try:
      yield path
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      sys.stdout, sys.stderr = out, err


def _compare(run_dirs: list[pathlib.Path], out: str | None, ablation_root: str | None = None) -> int:
  """`simdist-jax report RUN_DIR RUN_DIR ... --out DIR [--ablations ROOT]`: `analysis.compare` over the run
  directories, with the ablation table of ROOT appended."""
  from simdist_jax.analysis import ablations  # pylint: disable=import-outside-toplevel
  from simdist_jax.analysis import compare  # pylint: disable=import-outside-toplevel
  if not out:
    print("simdist-jax report: several run directories make one comparison; say where it goes with --out DIR",
          file=sys.stderr)
    return 2
  missing = [str(d) for d in run_dirs if not (d / "config.json").exists()]
  if missing:
    print(f"simdist-jax report: not run directories (no config.json): {', '.join(missing)}", file=sys.stderr)
    return 2
  try:
    appendix = ablations.markdown(ablations.tabulate(ablation_root), heading="##") if ablation_root else ""
    compare.write(run_dirs, out, appendix=appendix)
  except FileNotFoundError as e:
    print(f"simdist-jax report: {e}", file=sys.stderr)
    return 2
  print(f"[report] wrote {pathlib.Path(out) / 'compare.md'} (+ compare_return.png, compare_success.png) over "
        f"{len(run_dirs)} run directories" + (f", with the ablation table of {ablation_root}" if ablation_root else ""),
        flush=True)
  return 0


def _ablate(args: argparse.Namespace, overrides: list[str], argv: list[str]) -> int:
  """`simdist-jax ablate ...` (`simdist_jax.ablate.run`, which locks each of its seeds) with the root's console
  log (`<root>/log.txt`)."""
  from simdist_jax import ablate  # pylint: disable=import-outside-toplevel
  if args.list:
    for a in ablate.ABLATIONS:
      print(f"{a.name}: {', '.join(a.overrides)}\n  {a.what}\n  paper's direction: {a.direction} ({a.source})")
    return 0
  if not args.config:
    print("simdist-jax ablate: --config=path/to/task.py:preset is required (or --list)", file=sys.stderr)
    return 2
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    print(f"simdist-jax ablate: --seeds={args.seeds!r}: expected comma-separated integers such as 0,1,2,3",
          file=sys.stderr)
    return 2
  spec = args.config if ":" in args.config else args.config + ":small"
  root = pathlib.Path(args.root or pathlib.Path("runs") / ("ablate_" + "_".join(
      [pathlib.Path(spec.partition(":")[0]).stem, spec.partition(":")[2]]))).absolute()
  try:
    if args.plan:
      ablate.run(spec, overrides, seeds, root, args.ablation, args.variant, plan_only=True)
      return 0
    root.mkdir(parents=True, exist_ok=True)
    with console_log(root, argv):  # ablate.run holds the lock of each of its seeds (seed_<S>/.lock)
      out = ablate.run(spec, overrides, seeds, root, args.ablation, args.variant)
  except (config_lib.ConfigError, stages.WorkdirLockedError) as e:
    print(f"simdist-jax ablate: {e}", file=sys.stderr)
    return 2
  return 1 if out["failed"] else 0


def _ablation_report(root: pathlib.Path) -> int:
  """`simdist-jax report ROOT` for a `simdist-jax ablate` root: rewrites ROOT/report.md and ROOT/ablations.json."""
  from simdist_jax.analysis import ablations  # pylint: disable=import-outside-toplevel
  ablations.write(root)
  print(f"[report] wrote {root / ablations.REPORT} (+ {ablations.JSON})", flush=True)
  return 0


def main(argv: list[str] | None = None) -> int:
  """Runs `simdist-jax <stage> ...` on `argv` (default `sys.argv[1:]`); returns 0, or 2 on a usage/config/lock error."""
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  args = _parser().parse_args(rest)
  if args.stage is None:
    _parser().print_help()
    return 2
  if args.stage == "ablate":
    return _ablate(args, overrides, argv)
  if args.stage == "baseline":
    args.stage = f"baseline-{args.algo}"
  st = stages.STAGES[args.stage]
  extra = {}
  if args.stage == "report":
    run_dirs = [pathlib.Path(d).absolute() for d in args.run_dir]
    if len(run_dirs) > 1 or args.out or args.ablations:
      return _compare(run_dirs, args.out, args.ablations)
    if (run_dirs[0] / "ablate.json").exists() and not (run_dirs[0] / "config.json").exists():
      return _ablation_report(run_dirs[0])
    args.run_dir = run_dirs[0]
  if st.kind == "run_dir":
    workdir = pathlib.Path(args.run_dir).absolute()
    if not (workdir / "config.json").exists():
      print(f"simdist-jax: {workdir} is not a run directory (no config.json)", file=sys.stderr)
      return 2
    cfg = config_lib.from_json((workdir / "config.json").read_text())
  else:
    try:
      raw = config_lib.parse_config(args.config, overrides)
      dist = distributed.settings(raw)
      distributed.check_stage(args.stage, dist)
      distributed.initialize(dist)  # before anything (validation included) starts a JAX backend
      cfg = config_lib.finish_config(raw)
    except (config_lib.ConfigError, distributed.DistributedConfigError) as e:
      print(f"simdist-jax: config error: {e}", file=sys.stderr)
      return 2
    workdir = (pathlib.Path(args.workdir) if args.workdir else paths.default_workdir(cfg)).absolute()
    if st.kind == "pipeline":
      extra["restart_from"] = args.restart_from
  runtime.configure_compile_cache(str(cfg.run.get("compile_cache_dir", "")))  # older run dirs lack the key
  # A multi-host run: process 0 holds the lock and writes log.txt and the records; the others check the records,
  # write log.process<i>.txt and run the stage with it (`simdist_jax.distributed`).
  pid = distributed.settings(cfg).process_id if st.kind != "run_dir" else 0
  if pid:
    workdir.mkdir(parents=True, exist_ok=True)
  lock = stages.workdir_lock(workdir) if pid == 0 else contextlib.nullcontext()
  try:
    with lock, console_log(workdir, argv, LOG_FILE if pid == 0 else f"log.process{pid}.txt"):
      try:
        stages.execute(args.stage, cfg, workdir, primary=pid == 0, **extra)
      except config_lib.ConfigError as e:
        print(f"simdist-jax: {e}", file=sys.stderr)
        return 2
  except stages.WorkdirLockedError as e:
    print(f"simdist-jax: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
