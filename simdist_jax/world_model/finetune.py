"""Dynamics-only finetuning on real windows (paper Eq. 3, Algorithm 1 inner step).

The params tree is split into `trainable` (by default the `dynamics` subtree, i.e. exactly the 2-layer decoder the
official code finetunes) and `frozen` (everything else). The loss takes them as separate arguments and only
argument 0 is differentiated, so the optimizer state exists only for the trainable tree and every frozen leaf is
returned bit-identical. The optimizer is a fresh Adam with its own warmup-cosine schedule each call
(`config.model.finetune.lr`). `config.model.finetune.train` selects "dynamics" | "dynamics+encoder" | "all" (the
Fig. 10 unfreezing ablations). Steps run K per jit call in a guarded `lax.scan` (`finetune_chunk`, params and
batches as arguments, static options as `train.StepOptions`); a non-finite loss returns the input variables
unchanged (see `finetune_variables`).

Data parallel over `config.run.mesh` devices exactly as pretraining (`train` module docstring): trainable, frozen,
scaler, optimizer state and dataset arrays replicated, the [B, L, ...] batch sharded along B; the returned variables
are back on the default device.
"""

import functools
import os
from typing import Any, Callable, Mapping, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from simdist_jax import mesh as mesh_lib
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


class _FtParts(NamedTuple):
  loss_fn: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule


def _finetune_parts(opts: train_lib.StepOptions) -> _FtParts:
  """Eq. 3 loss, the fresh finetuning optimizer and its schedule for `opts` (traced once per compile)."""
  mcfg = opts.model_cfg()
  loss_fn = losses_lib.make_finetune_loss(model_lib.make_world_model(mcfg, opts.dims_dict()), mcfg)
  tx, schedule = train_lib.make_optimizer(mcfg.finetune.lr, float(mcfg.grad_clip or 0.0))
  return _FtParts(loss_fn, tx, schedule)


def optimizer(opts: train_lib.StepOptions) -> optax.GradientTransformation:
  """The finetuning optimizer of `opts` (for `tx.init` of the trainable tree)."""
  return _finetune_parts(opts).tx


def _step(parts: _FtParts, state: FinetuneState, frozen: Any, scaler: Any, batch: Any, key_loss: jax.Array
          ) -> tuple[FinetuneState, dict]:
  """One Adam step on the trainable tree; grads w.r.t. argument 0 only; dropout / noise key fold_in(key, step)."""
  k = jax.random.fold_in(key_loss, state.step)
  (_, metrics), grads = jax.value_and_grad(parts.loss_fn, argnums=0, has_aux=True)(
    state.trainable, frozen, scaler, batch, k, True)
  updates, opt_state = parts.tx.update(grads, state.opt_state, state.trainable)
  trainable = optax.apply_updates(state.trainable, updates)
  metrics = {**metrics, "finetune/grad_norm": optax.global_norm(grads), "finetune/lr": parts.schedule(state.step),
             "finetune/param_norm": optax.global_norm(trainable)}
  return FinetuneState(trainable, opt_state, state.step + 1), metrics


@functools.partial(jax.jit, static_argnames=("opts",))
def finetune_step(opts: train_lib.StepOptions, state: FinetuneState, frozen: Any, scaler: Any, batch: Any,
                  key_loss: jax.Array) -> tuple[FinetuneState, dict]:
  """One unguarded finetuning step (one jit call); `finetune_chunk` scans the same step."""
  return _step(_finetune_parts(opts), state, frozen, scaler, batch, key_loss)


# Step metrics that must be finite for a finetuning step to count (`train.guarded_scan`).
FINITE_KEYS = ("finetune/loss", "finetune/grad_norm", "finetune/param_norm")


@functools.partial(jax.jit, static_argnames=("opts", "num_steps", "batch_size", "sample_fn", "mesh"))
def finetune_chunk(opts: train_lib.StepOptions, state: FinetuneState, frozen: Any, scaler: Any, data: Any,
                   key_data: jax.Array, key_loss: jax.Array, *, num_steps: int, batch_size: int,
                   sample_fn: Callable | None = None, mesh: jax.sharding.Mesh | None = None
                   ) -> tuple[FinetuneState, dict]:
  """`num_steps` guarded finetuning steps in one `lax.scan` (`train.guarded_scan`): `(state, metrics [K])`.

  `data`, `key_data`, `sample_fn`, `mesh`: as in `train.train_chunk` (step s trains on
  `sample_fn(data, fold_in(key_data, s), batch_size)`, or on the pre-drawn `data[k]` without a `sample_fn`; with a
  mesh the batch is sharded along B and the state replicated).
  """
  parts = _finetune_parts(opts)

  def one(st: FinetuneState, x: Any) -> tuple[FinetuneState, dict]:
    batch = x if sample_fn is None else sample_fn(data, jax.random.fold_in(key_data, st.step), batch_size)
    st, m = _step(parts, st, frozen, scaler, mesh_lib.constrain(batch, mesh), key_loss)
    return mesh_lib.constrain(st, mesh, None), m

  xs = data if sample_fn is None else None
  return train_lib.guarded_scan(one, state, xs, num_steps, FINITE_KEYS)


@functools.partial(jax.jit, static_argnames=("opts",))
def eval_step(opts: train_lib.StepOptions, trainable: Any, frozen: Any, scaler: Any, batch: Any, key: jax.Array
              ) -> tuple[jax.Array, dict]:
  """Deterministic Eq. 3 latent loss ("finetune/eval/..." metrics) on `batch`."""
  return _finetune_parts(opts).loss_fn(trainable, frozen, scaler, batch, key, False, "finetune/eval")


def finetune_variables(config: Any, variables: Mapping[str, Any], dataset: Any, num_steps: int,
                       key: jax.Array, label: str = "") -> tuple[dict[str, Any], dict[str, float]]:
  """Finetunes `variables` for `num_steps` on `dataset` windows; returns (new variables, metrics).

  Runs in chunks of K = min(`config.model.log_every`, remaining) steps, one `lax.scan` per jit call and one host
  sync per chunk; batches are drawn inside the scan when the dataset has `sampler()` (see `train`), else on the
  host. The scaler is kept (the sim scaler, as in the official code).

  Contract on a non-finite loss or gradient (NaN/inf at any step): finetuning stops, a warning naming `label`
  (e.g. "round 2") and the step is printed, and the INPUT `variables` are returned unchanged (the very same
  arrays, bitwise) with metrics `{"finetune/nonfinite": 1.0, "finetune/nonfinite_step": step, ...}` (plus the
  offending step's loss terms and the held-out latent loss before, when available); callers keep the previous
  model and log it. No exception is raised.

  Metrics otherwise: `finetune/nonfinite` 0.0, the mean of every step metric over the last `min(100, num_steps)`
  steps and, when the dataset has held-out windows (`sample_eval`), the held-out latent loss before/after.
  """
  mcfg, fcfg = config.model, config.model.finetune
  mesh = mesh_lib.from_config(config)
  mesh_lib.check_divisible(mesh, {"model.finetune.batch_size": int(fcfg.batch_size)})
  opts = train_lib.StepOptions.from_config(mcfg, dataset.dims)
  tx = optimizer(opts)
  trainable, frozen = split_params(variables["params"], str(fcfg.train))
  scaler = variables["scaler"]
  key_data, key_loss, key_eval = jax.random.split(key, 3)
  del key
  bs, num_steps = int(fcfg.batch_size), int(num_steps)
  sample_fn, arrays = train_lib.dataset_sampler(dataset)
  if mesh is not None:  # data parallel: everything but the batch replicated
    trainable, frozen, scaler, arrays, key_data, key_loss = mesh_lib.replicate(
      (trainable, frozen, scaler, arrays, key_data, key_loss), mesh)

  def held_out(tr: Any) -> float | None:
    if not hasattr(dataset, "sample_eval") or getattr(dataset, "num_eval_windows", None) == 0:
      return None  # no held-out windows (e.g. real data with eval_fraction 0)
    vals = [float(eval_step(opts, tr, frozen, scaler,
                            mesh_lib.shard(dataset.sample_eval(jax.random.fold_in(key_eval, i), bs), mesh),
                            mesh_lib.replicate(key_eval, mesh))[0]) for i in range(4)]
    return sum(vals) / len(vals)

  before = held_out(trainable)
  state = FinetuneState(trainable, tx.init(trainable), jnp.zeros((), jnp.int32))
  tail = max(1, min(100, num_steps))
  acc: dict[str, float] = {}
  step = 0
  while step < num_steps:
    k = min(int(mcfg.log_every), num_steps - step)
    if sample_fn is None:
      data, k = train_lib.draw_batches(dataset, key_data, step, k, bs)
      data = mesh_lib.shard(data, mesh, axis=1)  # [K, B, ...] split along B
    else:
      data = arrays
    state, m = finetune_chunk(opts, state, frozen, scaler, data, key_data, key_loss, num_steps=k, batch_size=bs,
                              sample_fn=sample_fn, mesh=mesh)
    m = jax.device_get(m)  # the one host sync of the chunk
    bad = train_lib.first_nonfinite(m["finite"])
    if bad is not None:
      where = f" ({label})" if label else ""
      print(f"[world_model] WARNING: non-finite finetuning loss {float(m['finetune/loss'][bad])} at step "
            f"{step + bad}/{num_steps}{where}: keeping the input variables unchanged", flush=True)
      out = {"finetune/nonfinite": 1.0, "finetune/nonfinite_step": float(step + bad)}
      out.update({kk: float(v[bad]) for kk, v in m.items() if kk != "finite"})
      if before is not None:
        out["finetune/eval/loss/latent_before"] = before
      return dict(variables), out
    for i in range(k):
      if step + i >= num_steps - tail:
        for kk, v in m.items():
          if kk != "finite":
            acc[kk] = acc.get(kk, 0.0) + float(v[i]) / tail
    step += k
  metrics = {"finetune/nonfinite": 0.0, **acc}
  after = held_out(state.trainable)
  if before is not None:
    metrics["finetune/eval/loss/latent_before"] = before
    metrics["finetune/eval/loss/latent_after"] = after
  new_vars = mesh_lib.to_default_device({"params": merge_params(state.trainable, frozen), "scaler": scaler}, mesh)
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
