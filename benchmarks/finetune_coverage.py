"""Does finetuning generalize to where success lies? Finetuning variants scored on two sets of real states.

The adaptation loop's real data comes from its own planner, which in a shifted world rarely reaches the states a
working plan passes through. This script finetunes the pretrained model on the real episodes of a finished run
(rounds 1..K, from the pretrained model, `adapt.finetune_steps` x K dynamics-only steps, i.e.
`adapt.finetune_from=pretrained`) once per variant (config overrides), and scores every model on the counterfactual
instrument (`evaluation.counterfactual_losses`: latent loss over persistence, action-effect error, chunk-rank
correlation) at two sets of restored real states side by side:

  heldout  the run's held-out real episodes (recorded with the pretrained planner: the data's own distribution);
  oracle   episodes of the oracle (MPPI with the true real-world simulator and the frozen heads,
           `simdist_jax.analysis.oracle`), recorded here: the states a plan that works goes through.

A model that improves on `heldout` and degrades on `oracle` has learned the visited region and lost the rest.
Rows "pretrained" and "run round K" (the closed-loop model of the run) come first.

  python benchmarks/finetune_coverage.py --workdir runs/f1 --round 4 --variant default= --variant simmix=adapt.sim_mix=0.5 --variant lowlr=model.finetune.lr.peak=1e-4
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import loop
from simdist_jax.adapt import recorder as rec
from simdist_jax.analysis import oracle as oracle_lib
from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.registry import make_domain, make_real_env, make_task
from simdist_jax.planner import mppi
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Parses the flags and prints one row per model."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="a run directory whose adapt stage has rounds 1..--round")
  ap.add_argument("--round", type=int, required=True, help="finetune on the real episodes of rounds 1..K")
  ap.add_argument("--variant", action="append", default=[], help="NAME=key=value[,key=value] (repeatable)")
  ap.add_argument("--oracle-episodes", type=int, default=4)
  ap.add_argument("--sigma", type=float, default=0.3)
  ap.add_argument("--points", type=int, default=20)
  ap.add_argument("--chunks", type=int, default=8)
  args = ap.parse_args()
  wd = pathlib.Path(args.workdir)
  cfg = config_lib.from_json((wd / "config.json").read_text())
  try:  # a malformed variant or a bad key stops here, before any work
    cfgs = {name: config_lib.apply_overrides(cfg, ov) for name, ov in map(config_lib.parse_variant, args.variant)}
  except config_lib.ConfigError as e:
    raise SystemExit(f"finetune_coverage: {e}") from e
  task = make_task(cfg)
  adir = paths.adapt_dir(wd)
  rounds = [adir / "rounds" / f"round_{j:02d}" for j in range(1, args.round + 1)]
  for r in rounds:
    if not (r / "round.json").exists():
      raise SystemExit(f"{r}: round not complete (no round.json); --round must be <= the run's finished rounds")
  variables0, _, dims = ckpt_lib.load(str(paths.model_dir(wd)))
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=T)
  real_env = make_real_env(cfg, "real")

  mjx_env = MjxEnv(task, make_domain(cfg, "real", task), sim_domain=make_domain(cfg, "sim", task))
  oracle = oracle_lib.OracleController(pcfg, wm, variables0, real_env, mjx_env, "heads", jax.random.PRNGKey(0))
  tmp = wd / "_coverage_episodes"
  oracle_eps = evaluation.record_episodes(real_env, oracle, dims, [90_000 + i for i in range(args.oracle_episodes)],
                                          tmp)
  shutil.rmtree(tmp, ignore_errors=True)
  held = rec.load_episodes(adir / "heldout", dims)[0]
  rng = np.random.default_rng(0)
  sets = {name: [evaluation.counterfactual_windows(real_env, ep, H, T, args.sigma, args.points, rng, pcfg.action_low,
                                                   pcfg.action_high, args.chunks) for ep in eps]
          for name, eps in (("heldout", held), ("oracle", oracle_eps))}

  episodes = [ep for r in rounds for ep in rec.load_episodes(r / "episodes", dims)[0]]
  print(f"{len(episodes)} real episodes of rounds 1..{args.round}; {len(oracle_eps)} oracle episodes; "
        f"sigma {args.sigma}, {args.points} states x {args.chunks} chunks per episode", flush=True)
  print(f"{'model':28s} | {'heldout: loss/pers  effect err  rank':38s} | {'oracle: loss/pers  effect err  rank':37s}")

  def row(name: str, variables) -> None:
    cells = []
    for s in ("heldout", "oracle"):
      cf = evaluation.counterfactual_losses(wm, variables, sets[s], pcfg)
      cells.append(f"{cf['model'].mean() / cf['persistence'].mean():10.3f} {cf['effect_error']:11.3f} "
                   f"{cf['return_spearman']:+6.3f}")
    print(f"{name:28s} | {cells[0]:38s} | {cells[1]:37s}", flush=True)

  row("pretrained", variables0)
  row(f"run round {args.round}", ckpt_lib.load(str(rounds[-1] / "model"))[0])
  for name, vcfg in cfgs.items():
    t0 = time.perf_counter()
    steps = int(vcfg.adapt.finetune_steps) * args.round
    new, metrics, _ = loop.finetune_on_episodes(vcfg, variables0, variables0, episodes, H, T, steps,
                                                jax.random.PRNGKey(1), jax.random.PRNGKey(2), wd, label=name)
    if float(metrics.get("finetune/nonfinite", 0.0)):
      print(f"{name}: non-finite finetuning loss, skipped", flush=True)
      continue
    row(f"{name} ({steps} st, {time.perf_counter() - t0:.0f}s)", new)


if __name__ == "__main__":
  main()
