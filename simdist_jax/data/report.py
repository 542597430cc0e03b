"""`simdist-jax data-report`: summary of a generated dataset, printed and written to `data/data_report.json`.

Reports: transitions, episodes, shards and bytes; the share of clean expert actions (expert_flag; paper 55.7% for
the quadruped), also split into the paper's definition (expert policy AND not noised) and clip coincidences; per
source policy (ladder id / PPO iteration): steps, episodes and the distribution of returns of complete episodes
(episodes cut by the end of the recording are excluded); noise statistics (noised share, never-noised envs, sigma,
noisy/clean interval lengths); float16 round-trip errors and non-finite values from the manifest.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from simdist_jax import paths
from simdist_jax.config import atomic_write_text
from simdist_jax.data import storage


def _dist(x: np.ndarray) -> dict:
  x = np.asarray(x, np.float64)
  if x.size == 0:
    return {"count": 0}
  q = np.percentile(x, [5, 25, 50, 75, 95])
  return {"count": int(x.size), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
          "p05": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "p95": float(q[4]),
          "max": float(x.max())}


def _segments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Runs of equal values along axis 0 of x[S, N], per env: (starts, ends, env) in env-major flat indices."""
  s, n = x.shape
  flat = np.swapaxes(x, 0, 1).reshape(-1)
  cut = np.zeros(flat.size, bool)
  cut[0] = True
  cut[1:] = flat[1:] != flat[:-1]
  cut[::s] = True  # env boundaries
  starts = np.flatnonzero(cut)
  ends = np.concatenate([starts[1:], [flat.size]])
  return starts, ends, starts // s


def summarize(data_dir: str | os.PathLike, verify: bool = True) -> dict:
  """Computes the report dict for a generated dataset directory."""
  data_dir = pathlib.Path(data_dir)
  man, a = storage.load_all(data_dir, ["reward", "episode_id", "policy_id", "noised", "expert_flag"], verify=verify)
  s, n = a["reward"].shape
  flag, noised, pid = a["expert_flag"].astype(bool), a["noised"].astype(bool), a["policy_id"].astype(np.int64)
  expert_id = int(man["ladder"]["expert_id"])
  iters = man["ladder"]["iterations"]
  is_exp = pid == expert_id
  out: dict[str, Any] = {
      "data_dir": str(data_dir), "transitions": int(s * n), "num_envs": int(n), "steps_per_env": int(s),
      "shards": len(man["shards"]), "bytes_per_transition": man["bytes_per_transition"],
      "bytes_on_disk": man["bytes_on_disk"],
      "share_clean_expert": float(flag.mean()),
      "share_expert_policy_steps": float(is_exp.mean()),
      "share_expert_and_not_noised": float((is_exp & ~noised).mean()),
      "share_flag_by_clip_coincidence": float((flag & ~(is_exp & ~noised)).mean()),
  }
  # Episodes: runs of episode_id per env; complete = not the last run of its env.
  st, en, env = _segments(a["episode_id"])
  last = np.concatenate([env[1:] != env[:-1], [True]])
  flat_r = np.swapaxes(a["reward"], 0, 1).reshape(-1).astype(np.float64)
  flat_p = np.swapaxes(pid, 0, 1).reshape(-1)
  returns = np.add.reduceat(flat_r, st)
  lengths = en - st
  ep_pid = flat_p[st]
  out["episodes"] = int(st.size)
  out["complete_episodes"] = int((~last).sum())
  out["episode_length"] = _dist(lengths[~last])
  per = {}
  for k in range(int(man["ladder"]["num_policies"])):
    sel = (ep_pid == k) & ~last
    per[str(k)] = {"iteration": int(iters[k]) if k < len(iters) else None, "expert": k == expert_id,
                   "steps": int((pid == k).sum()), "episodes": int((ep_pid == k).sum()),
                   "return": _dist(returns[sel]), "return_per_step": _dist(returns[sel] / lengths[sel])}
  out["per_policy"] = per
  # Noise.
  sigma = np.load(data_dir / "envs" / "noise_sigma.npy")
  never = np.load(data_dir / "envs" / "never_noised.npy").astype(bool)
  nst, nen, _ = _segments(noised)
  flat_n = np.swapaxes(noised, 0, 1).reshape(-1)
  complete = (nen % s) != 0  # runs cut by the end of the recording are excluded
  eligible = ~np.repeat(never, s)[nst]
  run_len = nen - nst
  out["noise"] = {
      "noised_share": float(noised.mean()), "never_noised_envs": int(never.sum()),
      "never_noised_share": float(never.mean()),
      "sigma": {"mean": float(sigma.mean()), "min": float(sigma.min()), "max": float(sigma.max())},
      "noisy_interval": _dist(run_len[complete & flat_n[nst]]),
      "clean_interval": _dist(run_len[complete & ~flat_n[nst] & eligible]),
      "clean_expert_share_of_expert_steps": float(flag[is_exp].mean()) if is_exp.any() else 0.0,
  }
  out["float16_error"] = {k: v["worst_rel_to_std"] for k, v in man["float16_error"].items()}
  out["float16_max_abs_error"] = {k: float(max(v["max_abs"])) if v["max_abs"] else 0.0
                                  for k, v in man["float16_error"].items()}
  out["nonfinite"] = man["nonfinite"]
  return out


def format_report(r: dict) -> str:
  """The `summarize` dict as text: totals, per-policy returns, noise, float16 error and non-finite counts."""
  lines = [f"dataset {r['data_dir']}: {r['transitions']:,} transitions ({r['num_envs']} envs x "
           f"{r['steps_per_env']} steps, {r['shards']} shards), {r['episodes']:,} episodes "
           f"({r['complete_episodes']:,} complete), {r['bytes_per_transition']} B/transition, "
           f"{r['bytes_on_disk'] / 2**20:.1f} MiB",
           f"clean expert actions: {100 * r['share_clean_expert']:.1f}% (paper quadruped 55.7%); expert policy "
           f"{100 * r['share_expert_policy_steps']:.1f}% of steps, expert & not noised "
           f"{100 * r['share_expert_and_not_noised']:.1f}%, clip coincidences "
           f"{100 * r['share_flag_by_clip_coincidence']:.2f}%",
           "per policy (id, iteration): steps, episodes, return mean +- std [p05, median, p95]"]
  for k, v in r["per_policy"].items():
    d = v["return"]
    ret = (f"{d['mean']:.2f} +- {d['std']:.2f} [{d['p05']:.2f}, {d['median']:.2f}, {d['p95']:.2f}]"
           if d["count"] else "no complete episode")
    lines.append(f"  {k:>3} it {v['iteration']!s:>6}{' (expert)' if v['expert'] else '         '}: "
                 f"{v['steps']:>10,} steps {v['episodes']:>7,} eps  return {ret}")
  nz = r["noise"]
  ni, ci = nz["noisy_interval"], nz["clean_interval"]
  lines.append(f"noise: {100 * nz['noised_share']:.1f}% of steps noised, {nz['never_noised_envs']} envs never noised "
               f"({100 * nz['never_noised_share']:.1f}%), sigma in [{nz['sigma']['min']:.3f}, "
               f"{nz['sigma']['max']:.3f}] mean {nz['sigma']['mean']:.3f}")
  if ni["count"] and ci["count"]:
    lines.append(f"  noisy intervals {ni['mean']:.1f} steps [{ni['min']:.0f}, {ni['max']:.0f}], clean intervals "
                 f"{ci['mean']:.1f} steps [{ci['min']:.0f}, {ci['max']:.0f}]")
  lines.append("float16 worst round-trip error / std: " + ", ".join(f"{k} {v:.2e}" for k, v in
                                                                    r["float16_error"].items()))
  lines.append("non-finite values: " + (json.dumps(r["nonfinite"]) if r["nonfinite"] else "none"))
  return "\n".join(lines)


def is_complete(cfg: Any, workdir: str | os.PathLike) -> bool:
  """True when `<workdir>/data/data_report.json` exists."""
  del cfg
  return (paths.data_dir(workdir) / "data_report.json").is_file()


def run_stage(cfg: Any, workdir: str | os.PathLike) -> dict:
  """Prints the report of `<workdir>/data/` and writes `<workdir>/data/data_report.json`."""
  del cfg
  ddir = paths.data_dir(workdir)
  r = summarize(ddir)
  print(format_report(r))
  atomic_write_text(ddir / "data_report.json", json.dumps(r, indent=1, sort_keys=True))
  return r
