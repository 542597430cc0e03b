"""`simdist-jax report RUN_DIR`: report.md with the learning curve, prediction loss and every number.

Reads `adapt/config.json` (the config the adaptation ran with; `<workdir>/config.json` when it is missing),
`expert/expert_eval.json`, `data/data_report.json` (if present) and
`adapt/adapt_results.json`; writes `<workdir>/report/report.md`, `learning_curve.png` (task metric vs
minutes of real data, with the expert's sim and real returns and the sim planner's return as reference lines)
and `pred_loss.png` (held-out latent prediction loss per horizon step, before/after adaptation).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths


def _pyplot():
  """`matplotlib.pyplot` on the non-interactive Agg backend, selected here (when plotting) rather than at import,
  so importing this module leaves the process's matplotlib backend alone."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def load_json(path: pathlib.Path):
  """The JSON file at `path`, or None when it does not exist."""
  from simdist_jax import fileio  # pylint: disable=import-outside-toplevel
  return fileio.read_json(path) if path.exists() else None  # a truncated file: CorruptFileError naming it


def expert_refs(expert_eval: dict | None) -> dict:
  """Final expert's sim/real mean return from expert_eval.json (tolerant to its layout)."""
  if not expert_eval:
    return {}
  out = {}
  for dom in ("sim", "real"):
    for key in (f"expert/{dom}/return_mean", f"{dom}_expert_return"):
      if key in expert_eval:
        out[dom] = float(expert_eval[key])
    if dom not in out and "checkpoints" in expert_eval:
      last = expert_eval["checkpoints"][-1]
      for k in (f"{dom}/return_mean", f"{dom}_return_mean", dom):
        if k in last:
          v = last[k]
          out[dom] = float(v["mean"] if isinstance(v, dict) else v)
          break
  return out


def write_report(workdir) -> pathlib.Path:
  """Writes the report for `workdir`; returns the path of report.md."""
  workdir = pathlib.Path(workdir)
  adapt = load_json(paths.adapt_dir(workdir) / "adapt_results.json")
  if adapt is None:
    raise FileNotFoundError(f"{paths.adapt_dir(workdir) / 'adapt_results.json'} not found: run the adapt stage first")
  # Config values come from the adapt stage's own record: what the numbers below were made with (its fingerprint
  # covers every key printed here), not the config of the latest invocation.
  cfg = load_json(paths.adapt_dir(workdir) / "config.json") or load_json(workdir / "config.json") or {}
  expert_eval = load_json(paths.expert_dir(workdir) / "expert_eval.json")
  data_report = load_json(paths.data_dir(workdir) / "data_report.json")
  refs = expert_refs(expert_eval)
  out = paths.report_dir(workdir)
  out.mkdir(parents=True, exist_ok=True)
  rounds = adapt["rounds"]
  minutes = [r["real_minutes"] for r in rounds]

  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.errorbar(minutes, [r["real/return_mean"] for r in rounds], yerr=[r["real/return_std"] for r in rounds],
              marker="o", capsize=3, label="SimDist planner (real)")
  ax.axhline(adapt["sim_planner_return"], color="g", ls="--", label="planner in sim (pretrained)")
  r0 = rounds[0]
  if adapt.get("oracle_heads_return") is not None:
    ax.axhline(adapt["oracle_heads_return"], color="m", ls="-.", label="oracle: true dynamics + frozen heads (real)")
  for key, color, label in (("reference/policy_head/return_mean", "c", "policy head alone (real)"),
                            ("reference/energy_pump/return_mean", "y", "energy pump one-liner (real)")):
    if key in r0:
      ax.axhline(r0[key], color=color, ls=":", label=label)
  if "sim" in refs:
    ax.axhline(refs["sim"], color="k", ls=":", label="expert in sim")
  if "real" in refs:
    ax.axhline(refs["real"], color="r", ls=":", label="expert in real")
  ax.set_title(f"{cfg.get('task', '?')} ({cfg.get('preset', '?')}): adaptation")
  _save(plt, fig, ax, out / "learning_curve.png", "minutes of real data", "episode return (real world)")

  fig, ax = plt.subplots(figsize=(6, 4))
  for r in (rounds[0], rounds[-1]):
    per = r["heldout/pred_loss_per_step"]
    ax.plot(range(1, len(per) + 1), per, marker=".",
            label=f"round {r['round']} ({r['real_minutes']:.1f} min): mean {r['heldout/pred_loss_mean']:.4f}")
  if "heldout/persistence_per_step" in rounds[0]:
    per = rounds[0]["heldout/persistence_per_step"]
    ax.plot(range(1, len(per) + 1), per, "k--", label="persistence (z_hat_{t+k} = z_t)")
  ax.set_yscale("log")
  _save(plt, fig, ax, out / "pred_loss.png", "horizon step k", "latent prediction loss (held-out real)")

  traces = adapt.get("value_traces") or []
  if traces:
    fig, ax = plt.subplots(figsize=(6, 4))
    dt = float(get_path(cfg, ("env", "ctrl_dt")) or 1.0)
    for tr in traces:
      ok = (tr.get("success_frac") or 0.0) >= 0.2
      ax.plot(np.arange(1, len(tr["value"]) + 1) * dt, tr["value"], color="g" if ok else "r", alpha=0.5, lw=1)
    ax.plot([], [], color="g", label="upright >= 20 % of the episode")
    ax.plot([], [], color="r", label="upright < 20 %")
    ax.set_title("value over time, recorded real episodes")
    _save(plt, fig, ax, out / "value_over_time.png", "time in episode [s]", "frozen value head on encoded real obs")

  c = lambda *ks: get_path(cfg, ks)  # noqa: E731
  lines = [f"# SimDist run report: {cfg.get('task', '?')} / {cfg.get('preset', '?')}", "",
           f"Run directory: `{workdir}`", "",
           "![learning curve](learning_curve.png)", "", "![prediction loss](pred_loss.png)", "",
           *(["![value over time](value_over_time.png)", ""] if traces else []),
           "## Summary", "",
           "| quantity | value | from config |", "|---|---|---|"]
  rows = [
      ("expert return, sim", refs.get("sim"), "expert.*"),
      ("expert return, real", refs.get("real"), "domain.real"),
      ("pretrained planner return, sim", adapt["sim_planner_return"], "planner.*, model.*"),
      ("planner return, real, round 0", adapt["real_return_round0"], "domain.real"),
      ("planner return, real, final", adapt["real_return_final"],
       f"adapt.rounds={c('adapt', 'rounds')}, adapt.episodes_per_round={c('adapt', 'episodes_per_round')}"),
      ("planner success, real, round 0 -> final",
       f"{_fmt(adapt.get('real_success_round0'))} -> {_fmt(adapt.get('real_success_final'))}",
       "Task.success (CartPole: cos theta > 0.9), fraction of steps"),
      ("final - round 0, paired 95% CI", format_ci(adapt.get("final_vs_round0")),
       f"adapt.eval_episodes={c('adapt', 'eval_episodes')} (same seeds every round)"),
      ("oracle: true dynamics + frozen heads, real", adapt.get("oracle_heads_return"),
       f"adapt.oracle_episodes={c('adapt', 'oracle_episodes')}"),
      ("gap to the oracle closed", adapt["gap_closed_fraction"], "(final - round 0) / (oracle - round 0)"),
      ("policy head alone, sim (same seeds as the sim planner)", rounds[0].get("sim/policy_head/return_mean"),
       f"adapt.sim_eval_episodes={c('adapt', 'sim_eval_episodes')}"),
      ("policy head alone, real", rounds[0].get("reference/policy_head/return_mean"), ""),
      ("energy pump one-liner, real", rounds[0].get("reference/energy_pump/return_mean"), "Task.reference_controllers"),
      ("held-out pred. loss / persistence, round 0 -> final",
       f"{_fmt(adapt.get('pred_over_persistence_round0'))} -> {_fmt(adapt.get('pred_over_persistence_final'))}",
       "below 1: better than copying z_t"),
      ("held-out pred. loss, round 0", adapt["pred_loss_round0"], f"adapt.heldout_episodes={c('adapt', 'heldout_episodes')}"),
      ("held-out pred. loss, final", adapt["pred_loss_final"], f"adapt.finetune_steps={c('adapt', 'finetune_steps')}"),
      ("pred. loss ratio (round 0 / final)", adapt["pred_loss_ratio"], ""),
      ("frozen params bitwise unchanged", adapt["frozen_unchanged_all_rounds"], f"model.finetune.train={c('model', 'finetune', 'train')}"),
  ]
  for name, val, src in rows:
    lines.append(f"| {name} | {_fmt(val)} | {src} |")
  lines += ["", "## Rounds", "",
            "| round | real minutes | episodes | real return | vs round 0 (paired 95% CI) | success | held-out pred. "
            "loss (/ persistence) | counterfactual loss (/ persistence) | frozen unchanged | fallbacks | planner p50 ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rounds:
    lat = r.get("planner/latency", {}).get("latency/p50_ms")
    cf = r.get("counterfactual/pred_loss_mean")
    lines.append(f"| {r['round']} | {r['real_minutes']:.2f} | {r['real_episodes']} | {r['real/return_mean']:.2f} "
                 f"± {r['real/return_std']:.2f} | {format_ci(r.get('real/return_vs_round0'))} | "
                 f"{_fmt(r.get('real/success_mean'))} | {r['heldout/pred_loss_mean']:.4f} "
                 f"({_fmt(r.get('heldout/pred_over_persistence'))}) | "
                 f"{_fmt(cf)} ({_fmt(r.get('counterfactual/pred_over_persistence'))}) | {r['frozen_unchanged']} | "
                 f"{_fmt(r.get('planner/nonfinite_fallbacks'))} | {_fmt(lat)} |")
  if data_report:
    lines += ["", "## Dataset", "", "```", json.dumps(data_report, indent=1)[:3000], "```"]
  if expert_eval:
    lines += ["", "## Expert ladder", "", "```", json.dumps(expert_eval, indent=1)[:3000], "```"]
  lines += ["", "## Config", "", "Key settings: " + ", ".join(
      f"`{k}={_fmt(v)}`" for k, v in (
          ("domain.real", c("domain", "real")), ("model.history", c("model", "history")),
          ("model.horizon", c("model", "horizon")), ("planner.num_samples", c("planner", "num_samples")),
          ("planner.iterations", c("planner", "iterations")))), "",
      "These values are the adaptation's (`adapt/config.json`); every stage directory keeps the config its "
      "artifacts were made from in its own `config.json`."]
  path = out / "report.md"
  config_lib.atomic_write_text(path, "\n".join(lines) + "\n")
  return path


def _save(plt, fig, ax, path: pathlib.Path, xlabel: str, ylabel: str) -> None:
  """Labels the axes, adds the legend and writes the figure to `path` (PNG, 120 dpi)."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def get_path(d, ks):
  """d[k0][k1]... for the keys `ks` of nested dicts; None where a key is missing or a level is not a dict."""
  for k in ks:
    if not isinstance(d, dict) or k not in d:
      return None
    d = d[k]
  return d


def format_ci(d, fmt: str = "{:+.1f}") -> str:
  """'+12.3 [+4.5, +20.1]' for a paired_bootstrap_ci dict (each number by `fmt`), '-' without one."""
  if not d:
    return "-"
  return f"{fmt.format(d['diff'])} [{fmt.format(d['lo'])}, {fmt.format(d['hi'])}]"


def _fmt(v):
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)


def run_stage(cfg, workdir) -> None:
  """`simdist-jax report RUN_DIR`: writes the report of a run directory."""
  del cfg
  path = write_report(workdir)
  print(f"[report] wrote {path}", flush=True)
