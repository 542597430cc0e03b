"""Planner latency per control step: ours (context once, broadcast) vs naive (context per sample, official-like).

Usage:
  python benchmarks/planner_latency.py            # samples {64,256,472,1024} x iterations {1,4,8} x horizon {5,25}
  python benchmarks/planner_latency.py --quick    # samples {64,472} x iterations {1,8} x horizon {5,25}, fewer reps
  python benchmarks/planner_latency.py --preset tiny --samples 16 --iterations 1 --horizons 4 --reps 3  # smoke

One control step = `simdist_jax.planner.controller.act` jitted: history -> context -> MPPI (prior + iterations) ->
mean[0] -> history push; wall time from numpy inputs to the action on the host (block_until_ready), after a
warm-up call that compiles. Model: the paper-size Go2 world model (`model` section, preset `paper`, random params;
T is set to the planning horizon so that h = 5 really plans 5 steps), or a stand-in of similar cost if the world
model package is unavailable (printed).

The naive variant mimics the official code's evaluation (digest §4.3): every candidate in every iteration
re-encodes the context (proprio MLP, height-map CNN, history tokens) and re-runs the 4-layer policy decoder, i.e.
the model inputs are tiled to the batch. The planner itself is unchanged (same samples, elites, weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, NamedTuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/ (config files) is not installed

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.planner import controller
from simdist_jax.planner import mppi

GO2_DIMS = {"proprio": 35, "extero": 315, "extero_shape": (21, 15), "action": 12, "command": 3}
HISTORY = 25


def load_model(horizon: int, preset: str = "paper", fast_init: bool = False) -> tuple[Any, Any, str]:
  """(model, variables, description): the real model of the Go2 `model` section at `preset` (default the paper
  size; `tiny` for smoke runs, history 4) with T = horizon, else a stand-in. `fast_init`: random weights of the
  init's shapes from numpy (`standins.random_params`), not the compiled initializer (dry runs)."""
  global HISTORY  # the context length the controller keeps: the model's H
  try:
    from experiments.configs.sections import model as model_section  # pylint: disable=import-outside-toplevel
    from simdist_jax.world_model.model import make_world_model  # pylint: disable=import-outside-toplevel
    from simdist_jax.world_model.model import param_count  # pylint: disable=import-outside-toplevel
    cfg = model_section.get("go2", preset, GO2_DIMS)
    HISTORY = int(cfg.history)
    cfg.horizon = horizon  # a local copy built for this benchmark only
    model = make_world_model(cfg, GO2_DIMS)
    if fast_init:
      from standins import random_params  # pylint: disable=import-outside-toplevel
      variables = random_params(model.init, jax.random.key(0))
    else:
      variables = jax.jit(model.init)(jax.random.key(0))
    return model, variables, (f"real world model ({preset} preset, H={HISTORY}, T={horizon}, "
                              f"{param_count(variables['params'])} params)")
  except Exception as e:  # pylint: disable=broad-except
    model, variables = _standin(horizon)
    return model, variables, f"STAND-IN model (world model unavailable: {type(e).__name__}: {e})"


def _standin(horizon: int) -> tuple[Any, Any]:
  """MLP stand-in of roughly the real model's FLOPs per candidate (used only if the real model is missing)."""
  z, a, p, e, c = 64, GO2_DIMS["action"], GO2_DIMS["proprio"], GO2_DIMS["extero"], GO2_DIMS["command"]
  keys = iter(jax.random.split(jax.random.key(0), 16))
  dense = lambda i, o: jax.random.normal(next(keys), (i, o)) / np.sqrt(i)
  params = {"encoder": {"w1": dense(p + e, 256), "w2": dense(256, z)}, "history": {"w": dense(p + a, z)},
            "dynamics": {"w1": dense(z + a, 256), "w2": dense(256, z)}, "reward": {"w": dense(z + a + c, 1)},
            "value": {"w": dense(z + c, 1)}, "policy": {"w1": dense(z + c, 256), "w2": dense(256, a)}}

  class Ctx(NamedTuple):
    tokens: jax.Array
    z: jax.Array

  def context(v, ph, ah, pt, et):
    enc = v["params"]["encoder"]
    zt = jnp.tanh(jnp.tanh(jnp.concatenate([pt, et]) @ enc["w1"]) @ enc["w2"])
    hist = jnp.concatenate([ph, ah], -1) @ v["params"]["history"]["w"]
    return Ctx(jnp.concatenate([hist, hist, zt[None]]), zt)

  def predict_latents(v, ctx, actions):
    d = v["params"]["dynamics"]
    def step(zz, act):
      zz = jnp.tanh(jnp.tanh(jnp.concatenate([zz + ctx.tokens.mean(0), act]) @ d["w1"]) @ d["w2"])
      return zz, zz
    return jax.lax.scan(step, ctx.z, actions)[1]

  def predict_returns(v, ctx, z_hat, actions, commands):
    zs = jnp.concatenate([ctx.z[None], z_hat[:-1]])
    r = jnp.concatenate([zs, actions, commands[:-1]], -1) @ v["params"]["reward"]["w"]
    val = jnp.concatenate([z_hat, commands[1:]], -1) @ v["params"]["value"]["w"]
    return r[:, 0], val[:, 0]

  def policy_chunk(v, ctx, commands):
    pol = v["params"]["policy"]
    x = jnp.concatenate([jnp.broadcast_to(ctx.z, (horizon, z)), commands[:-1]], -1)
    return jnp.tanh(x @ pol["w1"]) @ pol["w2"]

  model = type("StandIn", (NamedTuple,), {"__annotations__": {k: Any for k in (
      "context", "predict_latents", "predict_returns", "policy_chunk")}})(
          context, predict_latents, predict_returns, policy_chunk)
  return model, {"params": params, "scaler": {}}


class RawContext(NamedTuple):
  """The naive planner's "context": the raw model inputs, re-encoded for every candidate."""
  proprio_hist: jax.Array
  action_hist: jax.Array
  proprio_t: jax.Array
  extero_t: jax.Array


def naive_model(model: Any) -> Any:
  """Wraps `model` so that each candidate re-encodes the context and re-runs the policy decoder (official-like).

  Inside the planner's vmap over candidates, the raw inputs are made to depend on the candidate (+ 0 * a), so XLA
  computes the encoder once per candidate, as the official code's explicit batch tiling does.
  """

  def tie(raw: RawContext, actions: jax.Array) -> RawContext:
    zero = 0.0 * actions[0, 0]
    return RawContext(*(x + zero for x in raw))

  def context(v, ph, ah, pt, et):
    return RawContext(ph, ah, pt, et)

  def policy_chunk(v, raw, commands):  # the once-per-step prior (batch 1 in the official code too)
    return model.policy_chunk(v, model.context(v, *raw), commands)

  def predict_latents(v, raw, actions):
    ctx = model.context(v, *tie(raw, actions))
    return model.predict_latents(v, ctx, actions), ctx  # the planner passes z_hat through opaquely

  def predict_returns(v, raw, z_hat_ctx, actions, commands):
    z_hat, ctx = z_hat_ctx
    r, val = model.predict_returns(v, ctx, z_hat, actions, commands)
    pol = model.policy_chunk(v, ctx, commands)  # official `inference` also decodes the policy per sample
    return r + 0.0 * jnp.sum(pol), val

  return model._replace(context=context, predict_latents=predict_latents, predict_returns=predict_returns,
                        policy_chunk=policy_chunk)


def time_step(cfg: mppi.PlannerConfig, model: Any, variables: Any, horizon: int, reps: int) -> dict[str, float]:
  """Compile once, then time `reps` control steps (numpy in, numpy action out)."""
  act = controller.make_act(cfg, model)
  state = controller.init_controller(cfg, GO2_DIMS, HISTORY, jax.random.key(1))
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(reps + 1, GO2_DIMS["proprio"])).astype(np.float32)
  ext = rng.normal(size=(GO2_DIMS["extero"],)).astype(np.float32) * 0.1
  cmds = np.tile(np.array([[0.5, 0.0, 0.0]], np.float32), (horizon + 1, 1))
  t0 = time.perf_counter()
  a, state, _ = act(variables, state, obs[0], ext, cmds)
  np.asarray(jax.block_until_ready(a))
  compile_s = time.perf_counter() - t0
  lat = []
  for i in range(reps):
    t0 = time.perf_counter()
    a, state, _ = act(variables, state, obs[i + 1], ext, cmds)
    np.asarray(jax.block_until_ready(a))
    lat.append(time.perf_counter() - t0)
  lat_ms = np.asarray(lat) * 1e3
  return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
          "compile_s": compile_s}


def main() -> None:
  """Prints planner latency p50/p99 for each size side by side."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="subset: samples {64,472} x iterations {1,8}")
  parser.add_argument("--reps", type=int, default=None, help="timed steps per setting (default 30; quick 8)")
  parser.add_argument("--samples", type=int, nargs="*", default=None)
  parser.add_argument("--iterations", type=int, nargs="*", default=None)
  parser.add_argument("--horizons", type=int, nargs="*", default=None)
  parser.add_argument("--no-naive", action="store_true", help="skip the naive (official-like) variant")
  parser.add_argument("--json", type=str, default=None, help="also write the rows to this JSON file")
  parser.add_argument("--preset", default="paper", choices=("paper", "small", "tiny"),
                      help="Go2 world-model size (default: the paper's)")
  parser.add_argument("--fast-init", action="store_true",
                      help="random weights drawn with numpy instead of the compiled initializer (dry runs)")
  args = parser.parse_args()
  samples = args.samples or ([64, 472] if args.quick else [64, 256, 472, 1024])
  iterations = args.iterations or ([1, 8] if args.quick else [1, 4, 8])
  horizons = args.horizons or [5, 25]
  reps = args.reps or (8 if args.quick else 30)

  dev = jax.devices()[0]
  print(f"device: {dev.platform} / {dev.device_kind} (jax {jax.__version__}, {len(jax.devices())} device(s))")
  base = mppi.PlannerConfig(action_low=-10.0, action_high=10.0)  # paper values (planner section, go2 paper)
  rows = []
  header = (f"{'h':>3} {'N':>5} {'it':>3} | {'ours p50':>9} {'p99':>9} | {'naive p50':>9} {'p99':>9} | "
            f"{'ratio':>6} | compile s (ours/naive)")
  for h in horizons:
    model, variables, desc = load_model(h, args.preset, args.fast_init)
    print(f"\nhorizon {h}: {desc}")
    print(header)
    naive = None if args.no_naive else naive_model(model)
    for n in samples:
      n_prior = round(n * 22 / 472)  # the paper's 450 + 22 split, scaled
      for it in iterations:
        cfg = dataclasses.replace(base, num_samples=n - n_prior, num_prior_samples=n_prior, iterations=it,
                                  num_elites=min(64, n), horizon=h)
        ours = time_step(cfg, model, variables, h, reps)
        row = {"device": dev.device_kind, "preset": args.preset, "horizon": h, "samples": n, "iterations": it, "ours": ours}
        line = f"{h:>3} {n:>5} {it:>3} | {ours['p50_ms']:>9.2f} {ours['p99_ms']:>9.2f} | "
        if naive is not None:
          nv = time_step(cfg, naive, variables, h, reps)
          row["naive"] = nv
          row["ratio_p50"] = nv["p50_ms"] / ours["p50_ms"]
          line += (f"{nv['p50_ms']:>9.2f} {nv['p99_ms']:>9.2f} | {row['ratio_p50']:>6.2f} | "
                   f"{ours['compile_s']:.1f}/{nv['compile_s']:.1f}")
        else:
          line += f"{'-':>9} {'-':>9} | {'-':>6} | {ours['compile_s']:.1f}"
        print(line, flush=True)
        rows.append(row)
  print("\nms per control step (p50/p99 over timed steps after compile); ratio = naive p50 / ours p50")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
