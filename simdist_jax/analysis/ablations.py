"""The ablation table of a `simdist-jax ablate` root: per row the final real return and the gap closed over seeds,
the paired difference against the default SimDist row per seed, and whether the paper's direction holds.

Reads `<root>/ablate.json` (the rows, their overrides and directions, the seeds) and, per row and seed,
`<root>/seed_<S>/<row>/adapt/adapt_results.json` (a run counts once its adaptation is complete; the others are named
as missing). Per row: the mean over seeds of the final real return and of the gap closed (`adapt.loop.summarize`:
(final - round 0) / (oracle - round 0), each run against its own oracle), each with the 95 % interval of the mean
over seeds (`compare.interval`, a percentile bootstrap over seeds; none with one seed). Per contrast (each row
against `simdist`, and the extra pairs of `ablate.CONTRASTS`): row - reference of the final return per seed, on the
seeds both completed, its mean and interval, and the verdict (`verdict`): for a direction "worse", "yes" when the
interval lies below 0, "no" when it lies above 0, "inconclusive" when it contains 0 or there are fewer than two
seeds; mirrored for "better"; "n/a" where the paper states no direction.

  python -m simdist_jax.analysis.ablations ROOT      (also: simdist-jax report ROOT)

Writes `<root>/report.md` and `<root>/ablations.json`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Sequence

import numpy as np

from simdist_jax import fileio
from simdist_jax.analysis.compare import interval

DEFAULT = "simdist"
MANIFEST = "ablate.json"
REPORT = "report.md"
JSON = "ablations.json"


def run_result(workdir: str | pathlib.Path) -> dict | None:
  """{"final", "round0", "gap", "success_final"} of a run whose adaptation is complete, else None."""
  p = pathlib.Path(workdir) / "adapt" / "adapt_results.json"
  if not p.exists():
    return None
  res = fileio.read_json(p)
  if not res.get("complete"):
    return None
  gap = res.get("gap_closed_fraction")
  return {"final": float(res["real_return_final"]), "round0": float(res["real_return_round0"]),
          "gap": None if gap is None else float(gap), "success_final": float(res["real_success_final"])}


def verdict(direction: str, ci: tuple | None) -> str:
  """Whether the paired interval (row - reference) agrees with the paper's direction ("worse": below 0)."""
  if direction not in ("worse", "better"):
    return "n/a (no direction stated)"
  if ci is None:
    return "inconclusive (< 2 seeds)"
  lo, hi = ci
  below, above = hi < 0.0, lo > 0.0
  if not (below or above):
    return "inconclusive"
  return "yes" if below == (direction == "worse") else "no"


def _mean(values: Sequence[float]) -> float | None:
  return float(np.mean(values)) if len(values) else None


def contrast(results: dict[str, dict[int, dict | None]], row: str, ref: str, direction: str, source: str) -> dict:
  """Row - reference of the final real return on the seeds where both are complete."""
  seeds = sorted(s for s in results.get(row, {}) if results[row][s] and (results.get(ref, {}).get(s)))
  diffs = {s: results[row][s]["final"] - results[ref][s]["final"] for s in seeds}
  ci = interval(list(diffs.values()))
  return {"row": row, "ref": ref, "direction": direction, "source": source, "per_seed": diffs,
          "mean": _mean(list(diffs.values())), "ci": ci, "verdict": verdict(direction, ci)}


def tabulate(root: str | pathlib.Path) -> dict:
  """The table of `root` as a dict: {"root", "seeds", "rows": [...], "contrasts": [...], "missing": [...]}.

  Raises:
    FileNotFoundError: `root` holds no `ablate.json` (not an ablation root).
  """
  root = pathlib.Path(root)
  if not (root / MANIFEST).exists():
    raise FileNotFoundError(f"{root / MANIFEST} not found: not the root of a `simdist-jax ablate` run")
  man = fileio.read_json(root / MANIFEST)
  seeds = [int(s) for s in man["seeds"]]
  results: dict[str, dict[int, dict | None]] = {}
  for name, row in man["rows"].items():
    src = DEFAULT if row.get("identical") else name  # identical to the default: the default's runs
    results[name] = {s: run_result(root / f"seed_{s}" / src) for s in seeds}
  rows, missing = [], []
  for name, row in man["rows"].items():
    res = {s: r for s, r in results[name].items() if r}
    missing += [f"seed_{s}/{name}" for s, r in results[name].items() if not r and not row.get("identical")]
    finals = [r["final"] for r in res.values()]
    gaps = [r["gap"] for r in res.values() if r["gap"] is not None]
    rows.append({"name": name, "overrides": row["overrides"], "what": row.get("what", ""),
                 "direction": row["direction"], "source": row["source"], "shares": row.get("shares", []),
                 "dirs": row.get("dirs", {}),
                 "identical": bool(row.get("identical")), "seeds": sorted(res),
                 "final": {s: r["final"] for s, r in res.items()}, "final_mean": _mean(finals),
                 "final_ci": interval(finals), "gap_mean": _mean(gaps), "gap_ci": interval(gaps),
                 "gap_seeds": len(gaps)})
  contrasts = [contrast(results, r["name"], DEFAULT, r["direction"], r["source"])
               for r in rows if r["name"] != DEFAULT and not r["identical"]]
  contrasts += [contrast(results, c["row"], c["ref"], c["direction"], c["source"]) for c in man.get("contrasts", [])
                if c["row"] in results and c["ref"] in results]
  return {"root": str(root), "config": man.get("config"), "overrides": man.get("overrides", []), "seeds": seeds,
          "rows": rows, "contrasts": contrasts, "missing": missing}


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
  return "-" if v is None else fmt.format(v)


def _ci(ci: tuple | None, fmt: str = "{:+.1f}") -> str:
  return "" if ci is None else f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _shares(dirs: dict[str, str]) -> str:
  """The stage directories a row takes from the default run (`ablate.share_plan`), copies marked."""
  return ", ".join(d + (" (copy)" if how == "copy" else "") for d, how in dirs.items()) or "nothing"


def markdown(table: dict, heading: str = "#") -> str:
  """The table as markdown (a heading, the row table, the extra contrasts, the directions' sources, the missing
  runs)."""
  by_ref = {(c["row"], c["ref"]): c for c in table["contrasts"]}
  ovr = table.get("overrides") or []
  ovr_text = ("" if not ovr else f" with {' '.join(ovr)}" if len(ovr) <= 4 else
              f" with {len(ovr)} overrides (`{MANIFEST}`)")
  lines = [f"{heading} Ablations", "",
           f"Config `{table.get('config')}`{ovr_text}; seeds {', '.join(map(str, table['seeds']))}. "
           "Final real return (last adaptation round, the loop's evaluation seeds) and gap closed ((final - round 0) "
           "/ (oracle - round 0), each run against its own oracle): mean over seeds with the 95 % interval of the "
           "mean over seeds (percentile bootstrap; with few seeds it is narrow, read it with the per-seed values). "
           "Δ: row - simdist of the final return per seed (paired: the same seed's expert, data and evaluation "
           "seeds). \"holds?\": yes when the interval of Δ lies on the paper's side of 0, no when on the other, "
           "otherwise inconclusive.", "",
           "| row | overrides | shares with simdist | seeds | final real return | gap closed | Δ per seed | "
           "Δ mean | paper's direction | holds? |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in table["rows"]:
    ovr = ", ".join(f"`{o}`" for o in r["overrides"]) or "(default)"
    gap = ("-" if r["gap_mean"] is None else
           f"{r['gap_mean']:.0%}" + ("" if r["gap_ci"] is None else
                                     f" [{r['gap_ci'][0]:.0%}, {r['gap_ci'][1]:.0%}]"))
    final = _num(r["final_mean"]) + _ci(r["final_ci"], "{:.1f}")
    if r["name"] == DEFAULT:
      lines.append(f"| **{r['name']}** | {ovr} | - | {len(r['seeds'])} | {final} | {gap} | - | - | - | - |")
      continue
    if r["identical"]:
      lines.append(f"| {r['name']} | {ovr} | everything | - | identical to simdist under this config (the "
                   "overrides change nothing the runs depend on) | | | | | |")
      continue
    c = by_ref[(r["name"], DEFAULT)]
    per = ", ".join(f"s{s} {d:+.1f}" for s, d in c["per_seed"].items()) or "-"
    lines.append(f"| {r['name']} | {ovr} | {_shares(r['dirs'])} | {len(r['seeds'])} | {final} | {gap} | {per} | "
                 f"{_num(c['mean'], '{:+.1f}')}{_ci(c['ci'])} | {r['direction']} | {c['verdict']} |")
  extra = [c for c in table["contrasts"] if c["ref"] != DEFAULT]
  if extra:
    lines += ["", "Other paired contrasts (row - reference, final real return):", "",
              "| row - reference | Δ per seed | Δ mean | direction | holds? | source |", "|---|---|---|---|---|---|"]
    for c in extra:
      per = ", ".join(f"s{s} {d:+.1f}" for s, d in c["per_seed"].items()) or "-"
      lines.append(f"| {c['row']} - {c['ref']} | {per} | {_num(c['mean'], '{:+.1f}')}{_ci(c['ci'])} | "
                   f"{c['direction']} | {c['verdict']} | {c['source']} |")
  lines += ["", "Directions (\"worse\": the row is expected below simdist) and their sources:", ""]
  for r in table["rows"]:
    if r["name"] != DEFAULT:
      lines.append(f"- {r['name']} ({r['what']}): {r['direction']}; {r['source']}")
  if table["missing"]:
    lines += ["", "Missing (adaptation not complete): " + ", ".join(table["missing"])]
  return "\n".join(lines) + "\n"


def _jsonable(table: dict) -> dict:
  return json.loads(json.dumps(table, default=list))


def write(root: str | pathlib.Path) -> dict:
  """Tabulates `root`; writes `<root>/report.md` and `<root>/ablations.json`; returns the table."""
  root = pathlib.Path(root)
  table = tabulate(root)
  fileio.write_text(root / REPORT, markdown(table))
  fileio.write_text(root / JSON, json.dumps(_jsonable(table), indent=2))
  return table


def main(argv: list[str] | None = None) -> int:
  """CLI: `python -m simdist_jax.analysis.ablations ROOT`: writes and prints the table."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("root")
  args = ap.parse_args(argv)
  write(args.root)
  print((pathlib.Path(args.root) / REPORT).read_text())
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
