"""One comparison over several run directories: SimDist (`adapt`) and every baseline (`baselines/<algo>`), real
return and success vs real data, mean and 95 % interval over the seeds (issue 20's report).

Each run directory is one training seed of one task and world. From it, every method whose rounds exist is read
(`adapt/rounds/round_<jj>/round.json`, `baselines/<algo>/rounds/round_<jj>/round.json`, contiguous from round 0).
Per method and round index: the mean over seeds of the real return (and success), the mean real minutes, and the
95 % interval of the mean over seeds (percentile bootstrap over seeds, fixed resampling seed; none with one seed);
per method, final - round 0 per seed and its interval over seeds. A method with one round (BC: no real data) is a
horizontal line. A method missing from some run directories is named, with those directories, in the report, and
the seeds are never silently mixed: a method's curve is cut at the shortest of its runs, which is said.

  python -m simdist_jax.analysis.compare runs/f0 runs/f1 runs/f2 runs/f3 --out runs/compare

Writes `<out>/compare.md` and `<out>/compare_return.png`, `<out>/compare_success.png`.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Sequence

import numpy as np

from simdist_jax import fileio
from simdist_jax import paths
from simdist_jax.analysis import report

SIMDIST = "simdist"


def _rounds(rdir: pathlib.Path) -> list[dict]:
  out = []
  while (f := rdir / f"round_{len(out):02d}" / "round.json").exists():
    out.append(fileio.read_json(f))
  return out


def methods_of(workdir: str | pathlib.Path) -> dict[str, list[dict]]:
  """{method: its rounds (round 0 first)} of one run directory: "simdist" from `adapt/`, one per baseline."""
  workdir = pathlib.Path(workdir)
  found = {}
  r = _rounds(paths.adapt_dir(workdir) / "rounds")
  if r:
    found[SIMDIST] = r
  base = paths.stage_dir(workdir, "baselines")
  if base.is_dir():
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
      r = _rounds(d / "rounds")
      if r:
        found[d.name] = r
  return found


def interval(values: Sequence[float], level: float = 0.95, num: int = 10_000, seed: int = 0) -> tuple | None:
  """Percentile bootstrap interval of the mean over `values` (the seeds); None with fewer than two."""
  x = np.asarray(values, np.float64)
  if x.size < 2:
    return None
  rng = np.random.default_rng(seed)
  means = x[rng.integers(0, x.size, (num, x.size))].mean(1)
  a = (1.0 - level) / 2.0
  return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def summarize(runs: dict[str, dict[str, list[dict]]]) -> dict:
  """{method: {"seeds", "missing", "rounds" (used), "cut", "minutes", "return", "return_ci", "success",
  "success_ci", "final_minus_round0", "final_minus_round0_ci"}} from {run dir: methods_of(run dir)}."""
  names = sorted({m for ms in runs.values() for m in ms}, key=lambda m: (m != SIMDIST, m))
  out = {}
  for m in names:
    have = {d: ms[m] for d, ms in runs.items() if m in ms}
    n = min(len(r) for r in have.values())
    cut = sorted(d for d, r in have.items() if len(r) > n)
    ret = np.array([[float(x["real/return_mean"]) for x in r[:n]] for r in have.values()])
    suc = np.array([[float(x["real/success_mean"]) for x in r[:n]] for r in have.values()])
    mins = np.array([[float(x.get("real_minutes", 0.0)) for x in r[:n]] for r in have.values()])
    diff = ret[:, -1] - ret[:, 0]
    out[m] = {"seeds": sorted(have), "missing": sorted(d for d in runs if d not in have), "rounds": n - 1,
              "cut": cut, "minutes": mins.mean(0).tolist(), "return": ret.mean(0).tolist(),
              "return_ci": [interval(ret[:, j]) for j in range(n)], "success": suc.mean(0).tolist(),
              "success_ci": [interval(suc[:, j]) for j in range(n)],
              "final_minus_round0": float(diff.mean()), "final_minus_round0_ci": interval(diff),
              "per_seed_final_minus_round0": diff.tolist()}
  return out


def _ci_text(ci: tuple | None) -> str:
  return "n/a (1 seed)" if ci is None else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def _plot(summary: dict, key: str, path: pathlib.Path, ylabel: str) -> None:
  plt = report._pyplot()  # pylint: disable=protected-access
  fig, ax = plt.subplots(figsize=(7, 4.5))
  right = max([s["minutes"][-1] for s in summary.values()] + [1e-3])
  for i, (m, s) in enumerate(summary.items()):
    color = f"C{i % 10}"
    y = np.asarray(s[key])
    cis = s[f"{key}_ci"]
    label = f"{m} ({len(s['seeds'])} seeds)"
    if len(y) == 1:  # no real data: a horizontal line
      ax.axhline(y[0], ls="--", color=color, label=label)
      if cis[0] is not None:
        ax.axhspan(cis[0][0], cis[0][1], color=color, alpha=0.12)
      continue
    x = np.asarray(s["minutes"])
    ax.plot(x, y, marker="o", color=color, label=label)
    if all(c is not None for c in cis):
      ax.fill_between(x, [c[0] for c in cis], [c[1] for c in cis], color=color, alpha=0.2)
  ax.set_xlim(left=0.0, right=right * 1.05)
  ax.set_xlabel("real data [min]")
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write(run_dirs: Sequence[str | pathlib.Path], out: str | pathlib.Path, plots: bool = True,
          appendix: str = "") -> dict:
  """Reads every run directory, writes `compare.md` (and the plots) under `out`, `appendix` (markdown, e.g. the
  ablation table) at its end; returns the summary. Raises FileNotFoundError naming every run directory that holds no
  finished round of any method."""
  runs = {str(d): methods_of(d) for d in run_dirs}
  empty = [d for d, ms in runs.items() if not ms]
  if empty:
    raise FileNotFoundError("no finished round 0 of SimDist (adapt/rounds/round_00/round.json) or of any baseline "
                            f"(baselines/<algo>/rounds/round_00/round.json) in: {', '.join(empty)}")
  summary = summarize(runs)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  lines = ["# Comparison over run directories", "",
           "Real return after each round, mean over the seeds (run directories) with the 95 % interval of the mean "
           "over seeds (percentile bootstrap); final - round 0 per seed, then its mean and interval. Every method "
           "is evaluated on its run's own evaluation seeds (the adaptation loop's), so round 0 and the final "
           "round of one seed share their initial states.", "",
           "| method | seeds | rounds | real min (final) | round 0 | final | final - round 0 [95 % CI over seeds] | "
           "success round 0 -> final |", "|---|---|---|---|---|---|---|---|"]
  for m, s in summary.items():
    change = ("no real data (a line)" if s["rounds"] == 0 else
              f"{s['final_minus_round0']:+.1f} {_ci_text(s['final_minus_round0_ci'])}")
    lines.append(f"| {m} | {len(s['seeds'])} | {s['rounds']} | {s['minutes'][-1]:.2f} | {s['return'][0]:.1f} | "
                 f"{s['return'][-1]:.1f} | {change} | {s['success'][0]:.2f} -> {s['success'][-1]:.2f} |")
  lines += ["", "Curves (mean real return per round):", ""]
  for m, s in summary.items():
    lines.append(f"- {m}: " + " -> ".join(f"{v:.1f}" for v in s["return"]))
  notes = []
  for m, s in summary.items():
    if s["missing"]:
      notes.append(f"- {m} is missing from: {', '.join(s['missing'])}")
    if s["cut"]:
      notes.append(f"- {m}: cut at round {s['rounds']} (the shortest of its runs); longer in: {', '.join(s['cut'])}")
  if notes:
    lines += ["", "Missing or cut runs:", ""] + notes
  lines += ["", "Run directories: " + ", ".join(runs), ""]
  if appendix:
    lines += [appendix]
  fileio.write_text(out / "compare.md", "\n".join(lines))
  if plots:
    _plot(summary, "return", out / "compare_return.png", "real return")
    _plot(summary, "success", out / "compare_success.png", "real success (fraction of steps upright)")
  return summary


def main(argv: list[str] | None = None) -> int:
  """CLI: `python -m simdist_jax.analysis.compare RUN_DIR ... --out DIR`."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("run_dirs", nargs="+")
  ap.add_argument("--out", required=True, help="directory for compare.md and the plots")
  args = ap.parse_args(argv)
  summary = write(args.run_dirs, args.out)
  print((pathlib.Path(args.out) / "compare.md").read_text())
  del summary
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
