"""Peak host memory of loading + sampling the world model's windows: `data.loading = "memory"` vs `"stream"`.

  python benchmarks/data_memory.py [--scales 10] [--layout cartpole|go2] [--batches 200] [--resident-mib M]
                                   [--dir DIR] [--json]

Writes a synthetic dataset of `scale` x the layout's 1x transitions (cartpole: the demo's, `cartpole.py:small`, 256
envs x 1000 steps; go2: 1024 envs x 1000 steps of the Go2 layout, 769 B/transition) with the storage module's own
writer (`storage.write_dataset`; the scale multiplies the steps, shards of 250 steps; random episodes of 50..250
(CartPole) or 100..1000 (Go2) steps; float16 observations), then, for each mode in a fresh process: imports JAX,
loads the dataset as pretraining does with the layout's config (`cartpole.py:small`, `go2.py:paper`;
`windows.load_dataset`, checksums verified) and draws `--batches` training batches as pretraining draws them
(memory: the jitted in-memory sampler, the dataset on the device; stream: `train.draw_batches` chunks of K host
batches, <= 256 MiB, moved to the device once). Each process reports its peak resident set (`VmHWM` of
/proc/self/status, which counts every page mapped at the peak, file pages included; not `ru_maxrss`, which Linux
carries over from the forked parent's address space across exec), the resident set after importing JAX and
loading the config (the baseline) and after loading the dataset, load time, windows/s after the first chunk, and a
sha256 over every batch's bytes (equal digests: the two modes drew bitwise the same batches). On a CPU the
"device" is host memory, so the memory mode's device copy of the dataset is part of its peak. Printed side by
side per scale.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's simdist_jax
# layout -> (config whose model/data windows are used, envs, steps per 1x, episode length range, task dims)
LAYOUTS = {
    "cartpole": ("cartpole.py:small", 256, 1000, (50, 250),
                 {"proprio": 5, "extero": 0, "extero_shape": (), "action": 1, "command": 0}),
    "go2": ("go2.py:paper", 1024, 1000, (100, 1000),
            {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3}),
}


def _config(layout: str):
  from simdist_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  return config_lib.load_config(str(ROOT / "experiments" / "configs" / LAYOUTS[layout][0]))


def write(data_dir: pathlib.Path, layout: str, scale: int, seed: int = 0) -> dict:
  """The synthetic dataset of `layout` at `scale` x its 1x size (CartPole: the demo's 256 envs x 1000 steps;
  Go2: 1024 envs x 1000 steps), shards of 250 steps, one per chunk."""
  from simdist_jax.data import storage  # pylint: disable=import-outside-toplevel
  _, n, steps, (lo, hi), dims = LAYOUTS[layout]
  shard, steps = 250, steps * scale
  rng = np.random.default_rng(seed)
  left = rng.integers(lo, hi + 1, n)  # steps left in each env's current episode
  count = np.zeros(n, np.int64)  # episodes each env has finished

  def chunks():
    nonlocal left, count
    for _ in range(steps // shard):
      ep = np.empty((shard, n), np.int32)
      for s in range(shard):
        ep[s] = count * n + np.arange(n)
        left = left - 1
        done = left == 0
        count = count + done
        left = np.where(done, rng.integers(lo, hi + 1, n), left)
      yield {"proprio": rng.normal(size=(shard, n, dims["proprio"])).astype(np.float32),
             "extero": rng.normal(size=(shard, n, dims["extero"])).astype(np.float32),
             "command": rng.normal(size=(shard, n, dims["command"])).astype(np.float32),
             "action": rng.uniform(-1, 1, (shard, n, dims["action"])).astype(np.float32),
             "reward": rng.normal(size=(shard, n)).astype(np.float32),
             "value": rng.normal(size=(shard, n)).astype(np.float32),
             "expert_flag": rng.integers(0, 2, (shard, n)).astype(np.uint8),
             "noised": rng.integers(0, 2, (shard, n)).astype(np.uint8),
             "policy_id": np.zeros((shard, n), np.uint8), "episode_id": ep}

  return storage.write_dataset(data_dir, chunks(), dims, meta={"synthetic": f"{scale}x {layout}"})


def _status_kib(field: str = "VmRSS") -> int:
  """A `/proc/self/status` memory field in KiB (VmRSS: resident now; VmHWM: the peak of this address space)."""
  with open("/proc/self/status", encoding="utf-8") as f:
    return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child(mode: str, layout: str, data_dir: str, batches: int, resident_mib: float | None) -> dict:
  """Load + sample in this process; the figures as a dict."""
  import hashlib  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel
  from simdist_jax.data import stream  # pylint: disable=import-outside-toplevel
  from simdist_jax.data import windows  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import train  # pylint: disable=import-outside-toplevel
  if resident_mib is not None:
    stream.RESIDENT_BYTES = int(resident_mib * 2**20)
  cfg = _config(layout)  # imports the task (MuJoCo) too
  jax.block_until_ready(jax.numpy.ones(4) + 1)
  base = _status_kib()
  H, T, B = int(cfg.model.history), int(cfg.model.horizon), int(cfg.model.batch_size)
  t0 = time.perf_counter()
  ds = windows.load_dataset(data_dir, H, T, int(cfg.data.window_start_margin), int(cfg.data.window_end_margin),
                            float(cfg.data.eval_fraction), int(cfg.run.seed), front_pad=bool(cfg.data.front_pad),
                            loading=mode)
  t_load = time.perf_counter() - t0
  after_load = _status_kib()
  key = jax.random.key(0)
  digest = hashlib.sha256()

  def absorb(batch):
    for k in sorted(batch):
      digest.update(np.ascontiguousarray(np.asarray(batch[k])).tobytes())

  done, t_first, t0 = 0, None, time.perf_counter()
  while done < batches:
    if mode == "memory":  # what the in-scan sampler computes, one jitted draw per step
      fn, arrays = ds.sampler()
      absorb(jax.block_until_ready(fn(arrays, jax.random.fold_in(key, done), B)))
      k = 1
    else:  # what pretraining does: K host batches stacked (<= 256 MiB), moved to the device once
      host, k = train.draw_batches(ds, key, done, min(int(cfg.model.log_every), batches - done), B)
      jax.block_until_ready(jax.device_put(host))
      for i in range(k):
        absorb({kk: v[i] for kk, v in host.items()})  # the bytes that went to the device
      del host
    done += k
    if t_first is None:
      t_first, first, t0 = time.perf_counter() - t0, done, time.perf_counter()
  rate = (done - first) * B / max(time.perf_counter() - t0, 1e-9) if done > first else float("nan")
  return {"mode": mode, "peak_rss_mib": _status_kib("VmHWM") / 1024,
          "base_rss_mib": base / 1024, "loaded_rss_mib": after_load / 1024, "load_s": t_load,
          "first_s": t_first, "windows_per_s": rate, "batches": done, "batch_size": B, "L": H + T + 1,
          "train_windows": ds.num_train_windows, "digest": digest.hexdigest()[:16],
          "resident_mib": stream.RESIDENT_BYTES / 2**20 if mode == "stream" else None,
          "releases": ds._shards.releases if mode == "stream" else None}  # pylint: disable=protected-access


def main(argv: list[str] | None = None) -> int:
  """Writes the datasets (unless already in --dir), measures both modes per scale, prints the table."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--scales", default="10", help="comma-separated multiples of the 1x dataset (default 10)")
  ap.add_argument("--layout", default="cartpole", choices=sorted(LAYOUTS),
                  help="cartpole (1x = the demo's 256 envs x 1000 steps, windows of cartpole.py:small) or go2 "
                       "(1x = 1024 envs x 1000 steps of the Go2 layout, windows and batch of go2.py:paper)")
  ap.add_argument("--batches", type=int, default=200, help="training batches drawn per mode")
  ap.add_argument("--dir", default=None, help="where the datasets go (default: a temp dir, removed)")
  ap.add_argument("--resident-mib", type=float, default=None,
                  help="stream mode's budget of resident mapped data (default: stream.RESIDENT_BYTES, 256 MiB)")
  ap.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
  ap.add_argument("--child", nargs=2, metavar=("MODE", "DATA_DIR"), help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.child:
    print("RESULT " + json.dumps(child(args.child[0], args.layout, args.child[1], args.batches, args.resident_mib)),
          flush=True)
    return 0
  tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="simdist_data_memory_")
  root = pathlib.Path(args.dir or tmp.name)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                                   if os.environ.get("PYTHONPATH") else [])))
  results = []
  try:
    for scale in (int(s) for s in args.scales.split(",")):
      d = root / f"{args.layout}_x{scale}"
      from simdist_jax.data import storage  # pylint: disable=import-outside-toplevel
      man = storage.read_manifest(d) if (d / storage.MANIFEST).exists() else write(d, args.layout, scale)
      row = {"scale": scale, "transitions": man["transitions"], "shards": len(man["shards"]),
             "bytes_on_disk": man["bytes_on_disk"], "bytes_per_transition": man["bytes_per_transition"]}
      for mode in ("memory", "stream"):
        extra = ["--resident-mib", str(args.resident_mib)] if args.resident_mib is not None else []
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(d), "--batches", str(args.batches),
                              "--layout", args.layout] + extra, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
          sys.stderr.write(out.stdout[-2000:] + out.stderr[-4000:])
          return 1
        row[mode] = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
      results.append(row)
  finally:
    if tmp is not None:
      tmp.cleanup()
  if args.json:
    print(json.dumps(results))
    return 0
  for r in results:
    m, s = r["memory"], r["stream"]
    print(f"{r['scale']}x {args.layout}: {r['transitions']:,} transitions, {r['shards']} shards, "
          f"{r['bytes_on_disk'] / 2**20:.1f} MiB on disk ({r['bytes_per_transition']} B/transition); "
          f"{m['batches']} batches of {m['batch_size']} x L={m['L']}, {m['train_windows']:,} training windows")
    print(f"  {'mode':<8}{'peak RSS MiB':>14}{'baseline':>10}{'loaded':>8}{'load s':>8}{'windows/s':>11}"
          f"  batches sha256")
    for x in (m, s):
      print(f"  {x['mode']:<8}{x['peak_rss_mib']:>14.0f}{x['base_rss_mib']:>10.0f}{x['loaded_rss_mib']:>8.0f}"
            f"{x['load_s']:>8.2f}{x['windows_per_s']:>11,.0f}  {x['digest']}")
    same = "identical" if m["digest"] == s["digest"] else "DIFFERENT"
    print(f"  peak above the baseline: memory {m['peak_rss_mib'] - m['base_rss_mib']:.0f} MiB, stream "
          f"{s['peak_rss_mib'] - s['base_rss_mib']:.0f} MiB (resident budget {s['resident_mib']:.0f} MiB of mapped "
          f"data, dropped {s['releases']} times); batches {same}")
  return 0 if all(r["memory"]["digest"] == r["stream"]["digest"] for r in results) else 1


if __name__ == "__main__":
  sys.exit(main())
