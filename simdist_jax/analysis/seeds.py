"""The adaptation result over several training seeds: one row per run directory, then the acceptance criteria.

Reads each run's `adapt/rounds/round_<j>/round.json` (so a run whose later rounds are still going is read as far as
it got) and `expert/expert_eval.json`; with `--round K` the curve is cut after round K (e.g. the same runs at the
budget of an earlier preset). Per seed: the expert's sim return, the pretrained planner and its policy head in sim,
the real curve, final - round 0 with its paired 95 % CI (return and success), oracle (a), gap closed (the adapt
stage's definition, `adapt.loop.summarize`), held-out loss over persistence, action-effect error, and every drop
between consecutive rounds whose paired CI excludes zero. Then the criteria of the CartPole planning-quality issue.

  python -m simdist_jax.analysis.seeds runs/f0 runs/f1 runs/f2 runs/f3 runs/f4 runs/f5 [--round 4]

With `--against B0 B1 ...` (one base run per run, in order) a second table gives each run minus its base on the same
evaluation episodes (the same run.seed, world and protocol, checked in both runs' `adapt/config.json`): paired 95 %
CIs at round 0 and at the last round both have (return and success), and the sim planner on round 0's sim
reference episodes.

  python -m simdist_jax.analysis.seeds runs/f4 runs/f5 --against runs/u4 runs/u5
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Sequence

import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import fileio
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import loop
from simdist_jax.analysis import report


def load_rounds(workdir: str | pathlib.Path, upto: int | None = None) -> list[dict]:
  """round.json of rounds 0, 1, ... of `workdir` (contiguous from 0, at most `upto`); names the missing file."""
  rdir = paths.adapt_dir(pathlib.Path(workdir)) / "rounds"
  rounds = []
  while upto is None or len(rounds) <= upto:
    f = rdir / f"round_{len(rounds):02d}" / "round.json"
    if not f.exists():
      break
    rounds.append(fileio.read_json(f))
  if not rounds:
    raise FileNotFoundError(f"{rdir / 'round_00' / 'round.json'} not found: the run has no finished round 0")
  if upto is not None and len(rounds) <= upto:
    raise ValueError(f"{workdir}: --round {upto} asked for, but only rounds 0..{len(rounds) - 1} are finished")
  return rounds


def seed_row(rounds: Sequence[dict], expert_sim: float | None = None) -> dict:
  """Per-seed figures of one run's rounds (round 0 first)."""
  first, last = rounds[0], rounds[-1]
  summ = loop.summarize(list(rounds))
  row = {"rounds": len(rounds) - 1, "curve": [float(r["real/return_mean"]) for r in rounds],
         "success_curve": [float(r["real/success_mean"]) for r in rounds],
         "expert_sim": expert_sim, "sim_planner": summ["sim_planner_return"],
         "sim_policy_head": summ["sim_policy_head_return"], "oracle": summ["oracle_heads_return"],
         "gap_closed": summ["gap_closed_fraction"],
         "pred_over_persistence": [first["heldout/pred_over_persistence"], last["heldout/pred_over_persistence"]],
         "effect_error": [first.get("counterfactual/effect_error"), last.get("counterfactual/effect_error")]}
  row["planner_above_head"] = (None if row["sim_policy_head"] is None else
                               bool(row["sim_planner"] > row["sim_policy_head"]))
  row["planner_over_expert"] = None if not expert_sim else row["sim_planner"] / expert_sim
  if len(rounds) > 1:
    row["return_vs_round0"] = evaluation.paired_bootstrap_ci(last["real/returns"], first["real/returns"])
    row["success_vs_round0"] = evaluation.paired_bootstrap_ci(last["real/success"], first["real/success"])
    row["drops"] = []
    for j in range(1, len(rounds)):
      ci = evaluation.paired_bootstrap_ci(rounds[j]["real/returns"], rounds[j - 1]["real/returns"])
      if ci["hi"] < 0.0:
        row["drops"].append({"round": j, **ci})
  return row


def criteria(rows: Sequence[dict]) -> dict:
  """The CartPole issue's acceptance criteria over the seeds' rows."""
  n = len(rows)
  ratios = [r["planner_over_expert"] for r in rows if r["planner_over_expert"] is not None]
  gaps = [r["gap_closed"] for r in rows if r["gap_closed"] is not None]
  up = lambda key: sum(1 for r in rows if key in r and r[key]["lo"] > 0.0)  # noqa: E731
  return {"seeds": n,
          "sim_planner_over_expert_mean": float(np.mean(ratios)) if ratios else None,
          "planner_above_head_seeds": sum(1 for r in rows if r["planner_above_head"]),
          "return_up_seeds": up("return_vs_round0"), "success_up_seeds": up("success_vs_round0"),
          "gap_closed_mean": float(np.mean(gaps)) if gaps else None,
          "gap_closed_range": [float(np.min(gaps)), float(np.max(gaps))] if gaps else None,
          "seeds_with_drops": sum(1 for r in rows if r.get("drops")),
          "pred_over_persistence_final_max": float(max(r["pred_over_persistence"][1] for r in rows))}


# What must agree for two runs' evaluation episodes to be the same episodes (seeds from run.seed and the counts,
# initial states and the real world from env/domain).
PAIRING_KEYS = ("run.seed", "adapt.eval_episodes", "adapt.sim_eval_episodes", "env", "domain")


def check_pairable(workdir: str | pathlib.Path, base: str | pathlib.Path) -> None:
  """Raises ValueError naming the key and both config files where the two runs' evaluations are not the same
  episodes (`PAIRING_KEYS` of `<workdir>/adapt/config.json`)."""
  files = [paths.adapt_dir(pathlib.Path(w)) / "config.json" for w in (workdir, base)]
  for f in files:
    if not f.exists():
      raise FileNotFoundError(f"{f} not found: cannot check that the runs were evaluated on the same episodes")
  cfgs = [fileio.read_json(f) for f in files]
  for key in PAIRING_KEYS:
    vals = [report.get_path(c, key.split(".")) for c in cfgs]
    if vals[0] != vals[1]:
      raise ValueError(f"{key} differs between {files[0]} ({vals[0]!r}) and {files[1]} ({vals[1]!r}): the runs "
                       "were not evaluated on the same episodes, so they cannot be paired")


def paired_against(rounds: Sequence[dict], base: Sequence[dict]) -> dict:
  """One run minus a base run on the same evaluation episodes: paired CIs (`evaluation.paired_bootstrap_ci`) of the
  real return and success at round 0 and at the last round both runs have (`round`), and of the sim planner on
  round 0's sim reference episodes where both have them."""
  last = min(len(rounds), len(base)) - 1
  out: dict = {"round": last}
  for name, j in (("round0", 0), ("final", last)):
    for key, field in (("return", "real/returns"), ("success", "real/success")):
      a, b = rounds[j][field], base[j][field]
      if len(a) != len(b):
        raise ValueError(f"round {j}: {len(a)} against {len(b)} evaluation episodes ({field}): not the same episodes")
      out[f"{name}/{key}"] = evaluation.paired_bootstrap_ci(a, b)
  if "sim/returns" in rounds[0] and "sim/returns" in base[0]:
    out["round0/sim_planner"] = evaluation.paired_bootstrap_ci(rounds[0]["sim/returns"], base[0]["sim/returns"])
  return out


def _f(v, fmt="{:.1f}") -> str:
  return "-" if v is None else fmt.format(v)


def main(argv: list[str] | None = None) -> int:
  """Prints the markdown table and the criteria; `--json` also writes them."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("workdirs", nargs="+")
  ap.add_argument("--round", type=int, default=None, help="cut every curve after this round")
  ap.add_argument("--json", default=None, help="also write rows and criteria to this file")
  ap.add_argument("--against", nargs="+", default=None, metavar="BASE",
                  help="one base run per run (same order): paired run - base differences on the same episodes")
  args = ap.parse_args(argv)
  if args.against is not None and len(args.against) != len(args.workdirs):
    ap.error(f"--against takes one base run per run: {len(args.workdirs)} runs, {len(args.against)} bases")
  pairs = []
  for wd, bwd in zip(args.workdirs, args.against or [], strict=False):
    check_pairable(wd, bwd)
    pairs.append({"workdir": wd, "against": bwd,
                  **paired_against(load_rounds(wd, args.round), load_rounds(bwd, args.round))})
  rows = []
  for wd in args.workdirs:
    expert_eval = report.load_json(paths.expert_dir(pathlib.Path(wd)) / "expert_eval.json")
    rows.append({"workdir": wd, **seed_row(load_rounds(wd, args.round), report.expert_refs(expert_eval).get("sim"))})
  print("| run | expert sim | sim planner / head | real rounds 0 -> J | final - round 0 [CI] | success 0 -> J [CI] "
        "| oracle (a) | gap closed | held-out / persistence 0 -> J | effect error 0 -> J | drops (round: diff [CI]) |")
  print("|---" * 11 + "|")
  for r in rows:
    v, s = r.get("return_vs_round0"), r.get("success_vs_round0")
    drops = ", ".join(f"{d['round']}: {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]" for d in r.get("drops", []))
    print(f"| {r['workdir']} | {_f(r['expert_sim'])} | {_f(r['sim_planner'])} / {_f(r['sim_policy_head'])} | "
          + " -> ".join(f"{x:.1f}" for x in r["curve"])
          + (f" | {v['diff']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}]" if v else " | -")
          + (f" | {r['success_curve'][0]:.2f} -> {r['success_curve'][-1]:.2f} [{s['lo']:+.2f}, {s['hi']:+.2f}]"
             if s else " | -")
          + f" | {_f(r['oracle'])} | {_f(r['gap_closed'], '{:.0%}')} | "
          f"{_f(r['pred_over_persistence'][0], '{:.2f}')} -> {_f(r['pred_over_persistence'][1], '{:.2f}')} | "
          f"{_f(r['effect_error'][0], '{:.2f}')} -> {_f(r['effect_error'][1], '{:.2f}')} | {drops or 'none'} |")
  if pairs:
    print()
    print("| run | against | round 0: return [CI] | success [CI] | last round | return [CI] | success [CI] "
          "| sim planner, round 0 [CI] |")
    print("|---" * 8 + "|")
    for p in pairs:
      ci = report.format_ci
      print(f"| {p['workdir']} | {p['against']} | {ci(p['round0/return'])} | {ci(p['round0/success'], '{:+.2f}')} "
            f"| {p['round']} | {ci(p['final/return'])} | {ci(p['final/success'], '{:+.2f}')} "
            f"| {ci(p.get('round0/sim_planner'))} |")
  crit = criteria(rows)
  print()
  for k, val in crit.items():
    shown = [f"{x:.3g}" for x in val] if isinstance(val, list) else (f"{val:.3g}" if isinstance(val, float) else val)
    print(f"{k}: {shown}")
  if args.json:
    config_lib.atomic_write_text(args.json, json.dumps({"rows": rows, "criteria": crit, "against": pairs}, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
