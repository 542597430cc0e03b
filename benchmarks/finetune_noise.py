"""How much of one adaptation round's real return is the finetuning key? The same round redone with other keys.

Round J of a finished run is repeated exactly as the loop does it (`adapt.loop.finetune_on_episodes` from round
J-1's model on the real episodes of rounds 1..J, `adapt.finetune_steps` steps, the round's data key) with
`--keys` finetuning keys, the first being the loop's own (so key 0 reproduces the run's round J), and every model
is evaluated closed-loop on the run's 20 evaluation seeds. Optionally per variant (config overrides) and the
uniform weight average of the keys' models ("soup"; only the trainable tree is averaged, frozen trees stay
bitwise). A spread across keys as large as the run's round-to-round changes means the curve's drops are
optimization noise, not the data.

  python benchmarks/finetune_noise.py --workdir runs/x0 --round 5 --variant default= --variant anneal=model.finetune.lr.decay_steps=600,model.finetune.lr.end=1e-5 --soup
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import fileio
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.adapt import loop
from simdist_jax.adapt import recorder as rec
from simdist_jax.envs.registry import make_real_env
from simdist_jax.planner import mppi
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import finetune as ft_lib
from simdist_jax.world_model import model as model_lib


def soup(models: list, variables0: dict, train: str) -> dict:
  """Uniform average of the models' trainable trees; everything else is `variables0`'s (bitwise)."""
  trainable = [ft_lib.split_params(m["params"], train)[0] for m in models]
  avg = jax.tree_util.tree_map(lambda *xs: sum(xs) / len(xs), *trainable)
  frozen = ft_lib.split_params(variables0["params"], train)[1]
  return {**variables0, "params": ft_lib.merge_params(avg, frozen)}


def main() -> None:
  """Parses the flags; prints one line per (variant, key), the spread, and the soup."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--round", type=int, required=True, help="the round J >= 1 to redo")
  ap.add_argument("--keys", type=int, default=3)
  ap.add_argument("--variant", action="append", default=[], help="NAME=key=value[,key=value] (repeatable)")
  ap.add_argument("--soup", action="store_true", help="also evaluate the weight average of each variant's models")
  args = ap.parse_args()
  wd, j = pathlib.Path(args.workdir), args.round
  cfg = config_lib.from_json((wd / "config.json").read_text())
  try:  # a malformed variant or a bad key stops here, before any work
    cfgs = {name: config_lib.apply_overrides(cfg, ov)
            for name, ov in map(config_lib.parse_variant, args.variant or ["default="])}
  except config_lib.ConfigError as e:
    raise SystemExit(f"finetune_noise: {e}") from e
  rounds = paths.adapt_dir(wd) / "rounds"
  if j < 1 or not (rounds / f"round_{j:02d}" / "round.json").exists():
    raise SystemExit(f"--round {j}: {rounds / f'round_{j:02d}' / 'round.json'} not found (a finished round >= 1)")
  seed = int(cfg.run.seed)
  v0, _, dims = ckpt_lib.load(str(paths.model_dir(wd)))
  prev = ckpt_lib.load(str(rounds / f"round_{j - 1:02d}" / "model"))[0] if j > 1 else v0
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=T)
  env = make_real_env(cfg, "real")
  eps = [e for jj in range(1, j + 1) for e in rec.load_episodes(rounds / f"round_{jj:02d}" / "episodes", dims)[0]]
  eval_seeds = loop.eval_seeds(seed, int(cfg.adapt.eval_episodes))
  print(f"round {j} of {wd}: {len(eps)} real episodes; the run's own round {j} return "
        f"{fileio.read_json(rounds / f'round_{j:02d}' / 'round.json')['real/return_mean']:.1f}", flush=True)

  def evaluate(variables) -> dict:
    ctrl = evaluation.model_controller(pcfg, wm, variables, dims, jax.random.PRNGKey(seed))
    return evaluation.evaluate_episodes(env, ctrl, eval_seeds)

  for name, vcfg in cfgs.items():
    rets, models = [], []
    for k in range(args.keys):
      t0 = time.perf_counter()
      new, metrics, _ = loop.finetune_on_episodes(
          vcfg, prev, v0, eps, H, T, int(vcfg.adapt.finetune_steps), *loop.round_keys(seed, j, redo=k), wd,
          label=f"{name} key {k}")
      if float(metrics.get("finetune/nonfinite", 0.0)):
        print(f"{name} key {k}: non-finite finetuning loss, skipped", flush=True)
        continue
      ev = evaluate(new)
      rets.append(ev["return_mean"])
      models.append(new)
      print(f"{name} key {k}: return {ev['return_mean']:.1f} success {ev['success_mean']:.2f} "
            f"({time.perf_counter() - t0:.0f}s)", flush=True)
    if rets:
      print(f"{name}: mean {np.mean(rets):.1f}, keys {np.min(rets):.1f} .. {np.max(rets):.1f}", flush=True)
    if args.soup and len(models) > 1:
      ev = evaluate(soup(models, v0, str(vcfg.model.finetune.train)))
      print(f"{name} soup of {len(models)}: return {ev['return_mean']:.1f} success {ev['success_mean']:.2f}",
            flush=True)


if __name__ == "__main__":
  main()
