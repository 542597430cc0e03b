"""Dynamics-only finetuning on real windows (paper Eq. 3, Algorithm 1 inner step).

The params tree is split into `trainable` (by default the `dynamics` subtree, i.e. exactly the 2-layer decoder the
official code finetunes) and `frozen` (everything else). The loss takes them as separate arguments and only
argument 0 is differentiated, so the optimizer state exists only for the trainable tree and every frozen leaf is
returned bit-identical. The optimizer is a fresh Adam with its own warmup-cosine schedule each call
(`config.model.finetune.lr`). `config.model.finetune.train` selects "dynamics" | "dynamics+encoder" | "all"
(the Fig. 10 unfreezing ablations).
"""

import functools
import json
import os
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from simdist_jax.metrics import MetricsWriter
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import losses as losses_lib
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import train as train_lib

TRAINABLE = {
  "dynamics": ("dynamics",),
  "dynamics+encoder": ("dynamics", "encoder"),
  "all": model_lib.PARAM_KEYS,
}


def split_params(params: Mapping[str, Any], train: str = "dynamics") -> tuple[dict[str, Any], dict[str, Any]]:
  """`params` -> (trainable, frozen), two dicts over disjoint top-level keys."""
  if train not in TRAINABLE:
    raise ValueError(f"model.finetune.train must be one of {sorted(TRAINABLE)}, got {train!r}")
  keys = TRAINABLE[train]
  return {k: v for k, v in params.items() if k in keys}, {k: v for k, v in params.items() if k not in keys}


def merge_params(trainable: Mapping[str, Any], frozen: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of `split_params`."""
  overlap = set(trainable) & set(frozen)
  if overlap:
    raise ValueError(f"trainable and frozen params overlap on {sorted(overlap)}")
  return {**frozen, **trainable}


@flax.struct.dataclass
class FinetuneState:
  """Finetuning state: only the trainable tree has optimizer state."""

  trainable: Any
  opt_state: Any
  step: jax.Array


def make_finetune_step(loss_fn: Any, tx: optax.GradientTransformation, schedule: optax.Schedule):
  """Jitted `step(state, frozen, scaler, batch, key) -> (state, metrics)`; grads w.r.t. argument 0 only."""

  def step_fn(state: FinetuneState, frozen: Any, scaler: Any, batch: Any, key: jax.Array) -> tuple[FinetuneState, dict]:
    k = jax.random.fold_in(key, state.step)
    (_, metrics), grads = jax.value_and_grad(loss_fn, argnums=0, has_aux=True)(
      state.trainable, frozen, scaler, batch, k, True)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {**metrics, "finetune/grad_norm": optax.global_norm(grads), "finetune/lr": schedule(state.step)}
    return FinetuneState(trainable, opt_state, state.step + 1), metrics

  return jax.jit(step_fn)


_FT_FIELDS = ckpt_lib.ARCH_KEYS + ("dropout_attn", "dropout_mlp", "aug_noise", "grad_clip", "finetune")


@functools.lru_cache(maxsize=8)
def _compiled(key: str) -> tuple[Any, ...]:
  """(tx, jitted finetune step, jitted eval) for a static config; cached so that adaptation rounds reuse them."""
  d = json.loads(key)
  mcfg = ml_collections.ConfigDict({k: v for k, v in d.items() if k != "dims"})
  wm = model_lib.make_world_model(mcfg, ckpt_lib.dims_from_json(d["dims"]))
  loss_fn = losses_lib.make_finetune_loss(wm, mcfg)
  tx, schedule = train_lib.make_optimizer(mcfg.finetune.lr, float(mcfg.grad_clip or 0.0))
  eval_fn = jax.jit(lambda tr, fr, sc, b, k: loss_fn(tr, fr, sc, b, k, False, "finetune/eval"))
  return tx, make_finetune_step(loss_fn, tx, schedule), eval_fn


def finetune_variables(config: Any, variables: Mapping[str, Any], dataset: Any, num_steps: int,
                       key: jax.Array) -> tuple[dict[str, Any], dict[str, float]]:
  """Finetunes `variables` for `num_steps` on `dataset` windows; returns (new variables, metrics).

  The scaler is kept (the sim scaler, as in the official code). Metrics: mean finetune loss over the last
  `min(100, num_steps)` steps and, when the dataset has `sample_eval`, the held-out latent loss before/after.
  """
  mcfg, fcfg = config.model, config.model.finetune
  tx, step, eval_fn = _compiled(train_lib.static_key(mcfg, dataset.dims, _FT_FIELDS))
  trainable, frozen = split_params(variables["params"], str(fcfg.train))
  scaler = variables["scaler"]
  key_data, key_loss, key_eval = jax.random.split(key, 3)
  del key
  bs = int(fcfg.batch_size)

  def held_out(tr: Any) -> float | None:
    if not hasattr(dataset, "sample_eval") or getattr(dataset, "num_eval_windows", None) == 0:
      return None  # no held-out windows (e.g. real data with eval_fraction 0)
    vals = [float(eval_fn(tr, frozen, scaler, dataset.sample_eval(jax.random.fold_in(key_eval, i), bs), key_eval)[0])
            for i in range(4)]
    return sum(vals) / len(vals)

  before = held_out(trainable)
  state = FinetuneState(trainable, tx.init(trainable), jnp.zeros((), jnp.int32))
  tail = max(1, min(100, int(num_steps)))
  acc: dict[str, float] = {}
  for i in range(int(num_steps)):
    state, m = step(state, frozen, scaler, dataset.sample(jax.random.fold_in(key_data, i), bs), key_loss)
    if i >= num_steps - tail:
      for k, v in m.items():
        acc[k] = acc.get(k, 0.0) + float(v) / tail
  if acc and not all(map(lambda v: v == v and abs(v) != float("inf"), acc.values())):
    raise train_lib.NonFiniteLossError(f"non-finite finetuning metrics after {num_steps} steps: {acc}")
  metrics = dict(acc)
  after = held_out(state.trainable)
  if before is not None:
    metrics["finetune/eval/loss/latent_before"] = before
    metrics["finetune/eval/loss/latent_after"] = after
  new_vars = {"params": merge_params(state.trainable, frozen), "scaler": scaler}
  return new_vars, metrics


def finetune(config: Any, pretrained_dir: str, dataset: Any, workdir: str, num_steps: int | None = None,
             seed_offset: int = 0) -> dict[str, Any]:
  """Loads the latest checkpoint in `pretrained_dir`, finetunes it, saves to `workdir`, returns the variables.

  The checkpoint's architecture must match `config.model` and `dataset.dims` (else `CheckpointMismatchError`).
  The saved step continues the loaded one (`step + num_steps`), so rounds chained through directories count up.
  `num_steps` defaults to `config.model.finetune.num_steps`.
  """
  num_steps = int(config.model.finetune.num_steps if num_steps is None else num_steps)
  variables, saved_cfg, dims = ckpt_lib.load_checked(pretrained_dir, config.model, dataset.dims)
  src = ckpt_lib.Checkpointer(ckpt_lib._ckpt_dir(pretrained_dir), create=False)  # noqa: SLF001
  start = int(src.latest_step())
  src.close()
  key = jax.random.fold_in(jax.random.key(int(config.run.seed)), start + seed_offset)
  new_vars, metrics = finetune_variables(config, variables, dataset, num_steps, key)
  workdir = os.path.abspath(workdir)
  ckpt_lib.save_config(workdir, config)
  writer = MetricsWriter(workdir, tb_subdir="tb")
  writer.write(start + num_steps, metrics)
  writer.close()
  out = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(config.model.keep_checkpoints))
  out.save(start + num_steps, new_vars, saved_cfg, dims, kind="finetune",
           extra={"source": os.path.abspath(pretrained_dir), "source_step": start, "num_steps": num_steps})
  out.close()
  return new_vars
