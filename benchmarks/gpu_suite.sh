#!/usr/bin/env bash
# The GPU suite in one call: install from the wheelhouse, smoke tests, the benchmarks at paper sizes, ONE JSON.
#
#   bash benchmarks/gpu_suite.sh [--dry-run] [--out FILE] [--wheelhouse DIR] [--site DIR] [--budget-s S]
#
# 1. install: when mujoco, mujoco.mjx, brax, ml_collections, tensorboardX and pytest import already, nothing;
#    otherwise `pip install --no-index --no-deps --target SITE WHEELHOUSE/*.whl` (the wheelhouse of
#    tools/gpu_wheelhouse.sh, default ./.whl; SITE default /tmp/simdist_site) and PYTHONPATH=SITE. This checkout is
#    always first on PYTHONPATH.
# 2. smoke: a few fast tests (pytest -m "not slow").
# 3. benchmarks, paper sizes (the issue's targets in brackets):
#    planner_paper  planner_latency.py, Go2 paper model, 472 candidates x 8 iterations x T = 25, ours and naive
#                   [p50 <= 5 ms, p99 <= 10 ms]
#    pretrain       train_throughput.py, Go2 paper model, batch 512, H = T = 25, 1 vs K steps per jit call
#                   [>= 20k windows/s]
#    data           data_throughput.py, Go2 paper config, 4096 envs, stand-in ladder: generation transitions/s and
#                   sampler windows/s [generation >= 200k transitions/s]
#    planner_small  planner_latency.py, Go2 small model, 80 candidates x 2 iterations x T = 10 (the small preset)
#    env            env_throughput.py, CartPole MJX at 4096 envs
#    pretrain_bf16  as pretrain, K steps per jit call only, model.compute_dtype = bfloat16 (mixed precision)
#    Steps run in that order, each under `timeout`; the whole suite stops starting steps once --budget-s (default
#    480 s = 8 min, dry run 400 s) would be exceeded: a step that did not fit is recorded as "skipped".
# 4. OUT (default gpu_suite_<UTC time>.json): device (platform, kind, count, jax/jaxlib versions), per step its
#    status / seconds / command / log tail, "figures" (flat name -> number), "vs_targets" and each benchmark's own
#    JSON ("raw"). Exit status 1 when a step failed or timed out (the JSON is written all the same), else 0.
#
# --dry-run: tiny sizes, about a minute on an idle 2-core CPU and 2.5 min beside two training jobs (each step may
# take 120 s, the whole 400 s, so a loaded machine does not fail it; tests/test_gpu_suite.py runs it in the default
# suite): one smoke test, the tiny Go2 model in the planner, tiny CartPole pretraining ("after" mode only), the
# point-mass stand-in env for the data step (no MuJoCo compile), no env step, numpy-drawn weights (--fast-init) and
# XLA's cheapest CPU compile (--xla_backend_optimization_level=0). Its figures check the plumbing only.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
OUT=""
WHEELHOUSE=.whl
SITE=/tmp/simdist_site
BUDGET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    --out=*) OUT=${1#*=} ;;
    --wheelhouse) WHEELHOUSE=$2; shift ;;
    --wheelhouse=*) WHEELHOUSE=${1#*=} ;;
    --site) SITE=$2; shift ;;
    --site=*) SITE=${1#*=} ;;
    --budget-s) BUDGET=$2; shift ;;
    --budget-s=*) BUDGET=${1#*=} ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
[ -z "$BUDGET" ] && { [ $DRY = 1 ] && BUDGET=400 || BUDGET=480; }
[ -z "$OUT" ] && OUT="gpu_suite_$(date -u +%Y%m%dT%H%M%SZ).json"
WORK=$(mktemp -d -t simdist_gpu_suite.XXXXXX)
STEPS=$WORK/steps.jsonl
: > "$STEPS"
START=$(date +%s)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

record() {  # name status rc seconds log cmd...
  local name=$1 status=$2 rc=$3 secs=$4 log=$5
  shift 5
  "$PY" - "$name" "$status" "$rc" "$secs" "$log" "$@" >> "$STEPS" <<'PY'
import json, sys
name, status, rc, secs, log, *cmd = sys.argv[1:]
try:
  tail = open(log, errors="replace").read()[-1500:] if log else ""
except OSError:
  tail = ""
print(json.dumps({"name": name, "status": status, "rc": int(rc), "seconds": float(secs), "cmd": cmd,
                  "log_tail": tail}))
PY
}

step() {  # name timeout_s cmd...: runs cmd under timeout, within the remaining budget
  local name=$1 limit=$2
  shift 2
  local now left t0 rc status
  now=$(date +%s)
  left=$(( START + BUDGET - now - 5 ))
  if [ "$left" -lt 10 ]; then
    echo "== $name: skipped (budget of ${BUDGET} s spent)"
    record "$name" skipped -1 0 "" "$@"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit} s): $*"
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  local secs
  secs=$("$PY" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 2))" "$t0")
  echo "   $status in ${secs} s"
  [ $status != ok ] && tail -5 "$WORK/$name.log" | sed 's/^/   | /'
  record "$name" "$status" "$rc" "$secs" "$WORK/$name.log" "$@"
}

# 1. install
if "$PY" -c "import mujoco, mujoco.mjx, brax, ml_collections, tensorboardX, pytest" > /dev/null 2>&1; then
  echo "== install: skipped (packages importable)"
  record install skipped-importable 0 0 ""
else
  if ! ls "$WHEELHOUSE"/*.whl > /dev/null 2>&1; then
    echo "gpu_suite.sh: no wheels in $WHEELHOUSE (build them with tools/gpu_wheelhouse.sh)" >&2
    exit 2
  fi
  step install 120 "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELHOUSE"/*.whl
  export PYTHONPATH="$ROOT:$SITE${PYTHONPATH#"$ROOT"}"
fi

# 2. smoke tests, 3. benchmarks
B=benchmarks
if [ $DRY = 1 ]; then
  # Figures of a dry run check the plumbing only: compile fast, not well.
  export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  step smoke 120 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
    tests/test_mesh.py::test_helpers_are_the_identity_without_a_mesh
  step planner_paper 120 "$PY" $B/planner_latency.py --preset tiny --samples 16 --iterations 1 --horizons 4 \
    --reps 3 --no-naive --fast-init --json "$WORK/planner_paper.json"
  step pretrain 120 "$PY" $B/train_throughput.py --task cartpole --preset tiny --batch 8 --k 2 --steps 4 \
    --repeats 1 --modes after --fast-init --json "$WORK/pretrain.json"
  step pretrain_bf16 120 "$PY" $B/train_throughput.py --task cartpole --preset tiny --batch 8 --k 2 --steps 4 \
    --repeats 1 --modes after --fast-init --compute-dtype bfloat16 --json "$WORK/pretrain_bf16.json"
  step data 120 "$PY" $B/data_throughput.py --env toy --num_envs 16 --shard_steps 40 --shards 2 --batch 8 --H 4 \
    --T 4 --json "$WORK/data.json"
else
  step smoke 90 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/test_compat.py tests/test_mesh.py \
    tests/world_model/test_losses.py tests/planner/test_mppi.py
  step planner_paper 120 "$PY" $B/planner_latency.py --samples 472 --iterations 8 --horizons 25 --reps 200 \
    --json "$WORK/planner_paper.json"
  step pretrain 150 "$PY" $B/train_throughput.py --task go2 --preset paper --batch 512 --k 100 --steps 500 \
    --repeats 1 --json "$WORK/pretrain.json"
  step data 180 "$PY" $B/data_throughput.py --config experiments/configs/go2.py:paper --num_envs 4096 \
    --shard_steps 100 --shards 3 --batch 512 --H 25 --T 25 --json "$WORK/data.json"
  step planner_small 60 "$PY" $B/planner_latency.py --preset small --samples 80 --iterations 2 --horizons 10 \
    --reps 200 --no-naive --json "$WORK/planner_small.json"
  step env 90 "$PY" $B/env_throughput.py --batches 256,4096 --steps 200 --no-c --json "$WORK/env.json"
  step pretrain_bf16 90 "$PY" $B/train_throughput.py --task go2 --preset paper --batch 512 --k 100 --steps 500 \
    --repeats 1 --modes after --compute-dtype bfloat16 --json "$WORK/pretrain_bf16.json"
fi

# 4. one JSON
"$PY" - "$WORK" "$OUT" "$DRY" "$START" "$BUDGET" <<'PY'
import json, math, os, pathlib, sys, time
work, out, dry, start, budget = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", float(sys.argv[4]), int(sys.argv[5])
steps = {}
for line in (work / "steps.jsonl").read_text().splitlines():
  s = json.loads(line)
  steps[s.pop("name")] = s
raw = {}
for p in sorted(work.glob("*.json")):
  try:
    raw[p.stem] = json.loads(p.read_text())
  except ValueError as e:
    raw[p.stem] = {"error": f"unreadable JSON: {e}"}
try:
  import jax, jaxlib
  d = jax.devices()
  device = {"platform": d[0].platform, "device_kind": d[0].device_kind, "count": len(d), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__}
except Exception as e:  # pylint: disable=broad-except
  device = {"error": f"{type(e).__name__}: {e}"}
fig = {}
def put(name, v):
  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
    fig[name] = float(v)
for name in ("planner_paper", "planner_small"):
  for row in raw.get(name, []) if isinstance(raw.get(name), list) else []:
    tag = f"{name}_N{row['samples']}_it{row['iterations']}_T{row['horizon']}"
    for variant in ("ours", "naive"):
      for k, v in (row.get(variant) or {}).items():
        put(f"{tag}_{variant}_{k}", v)
    put(f"{tag}_naive_over_ours_p50", row.get("ratio_p50"))
for name in ("pretrain", "pretrain_bf16", "data"):
  for k, v in (raw.get(name) or {}).items():
    put(f"{name}_{k}", v)
for b, r in ((raw.get("env") or {}).get("mjx") or {}).items():
  for k, v in r.items():
    put(f"env_mjx_b{b}_{k}", v)
targets = {"generation_transitions_per_s": 200_000, "pretrain_windows_per_s": 20_000, "planner_p50_ms": 5.0,
           "planner_p99_ms": 10.0}
first = next(iter(raw.get("planner_paper") or []), None) if isinstance(raw.get("planner_paper"), list) else None
measured = {"generation_transitions_per_s": (raw.get("data") or {}).get("generation_transitions_per_s"),
            "pretrain_windows_per_s": (raw.get("pretrain") or {}).get("after_windows_per_s"),
            "planner_p50_ms": ((first or {}).get("ours") or {}).get("p50_ms"),
            "planner_p99_ms": ((first or {}).get("ours") or {}).get("p99_ms")}
vs_targets = {k: {"measured": v, "target": targets[k],
                  "met": None if v is None else (v <= targets[k] if k.endswith("_ms") else v >= targets[k])}
              for k, v in measured.items()}
res = {"suite": "simdist_jax benchmarks/gpu_suite.sh", "mode": "dry-run" if dry else "full",
       "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)), "total_s": round(time.time() - start, 1),
       "budget_s": budget, "device": device, "hostname": os.uname().nodename, "targets": targets,
       "vs_targets": vs_targets,
       "steps": steps, "figures": fig, "raw": raw}
pathlib.Path(out).write_text(json.dumps(res, indent=1, sort_keys=True))
bad = [n for n, s in steps.items() if s["status"] not in ("ok", "skipped-importable")]
print(f"== wrote {out}: {len(fig)} figures on {device.get('device_kind', '?')}, {res['total_s']} s"
      + (f"; not ok: {bad}" if bad else ""))
sys.exit(1 if any(steps[n]["status"] in ("failed", "timeout") for n in bad) else 0)
PY
rc=$?
rm -rf "$WORK"
exit $rc
