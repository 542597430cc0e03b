"""World-model pretraining (Eq. 2): K Adam steps per jit call, periodic eval, TensorBoard + JSONL metrics, orbax
checkpoints.

`pretrain(config, workdir, dataset) -> TrainResult` reads `config.model` and `config.run.seed`. `dataset` provides
`sample(key, batch_size) -> batch` ([B, L, ...] windows, see `losses.py`), `sample_eval(key, batch_size)`, `stats`
(scaler stats dict) and `dims`, and optionally `sampler() -> (sample_fn, arrays)`, a pure, hashable
`sample_fn(arrays, key, batch_size)` equal to `sample(key, batch_size)` (`WindowDataset`, `MixedDataset` and
`SyntheticDataset` have one): then the batches are drawn inside the compiled scan; otherwise (a streaming dataset,
`data.loading = "stream"`) they are drawn on the host and passed in stacked as [K, B, ...] (<= 256 MiB per chunk),
the same batches for the same keys.

Training runs in chunks of K steps, one `lax.scan` per jit call (`train_chunk`), with K the distance to the next
log / eval / checkpoint boundary (K = `model.log_every` with the shipped presets), so the host syncs once per chunk.
Inside the scan each step checks that its loss and gradient norm are finite; the first non-finite step and every
later step of the chunk leave the state unchanged, so the chunk returns the last good state, and the host stops
with `NonFiniteLossError` (last good state saved, the offending batch's statistics in the message).

Re-running the same command in the same `workdir` resumes from the latest checkpoint and continues the step count;
the data and dropout keys are `fold_in(key, step)` (separate `data` and `loss` keys), so a resumed run sees the same
batches as an uninterrupted one.

The compiled functions take the params, optimizer state and scaler as arguments and the static options as one
hashable `StepOptions` (every `config.model` key except the loop-only `LOOP_KEYS`), a jit static argument.

Data parallel (`config.run.mesh` >= 2 devices, `simdist_jax.mesh`): the state, scaler, dataset arrays and keys are
replicated over the mesh at the call site, the batch [B, L, ...] is sharded along B (drawn inside the scan and
pinned there by `train_chunk`'s static `mesh`; host-drawn [K, B, ...] stacks are placed sharded along axis 1), and
the same jitted step runs on every device, GSPMD all-reducing the gradient. The global batch, keys and batches are
those of one device, so the loss curve agrees to float rounding. Without a mesh (0 or 1) nothing changes. Several
processes (`simdist_jax.distributed`, `run.mesh = -1` over every process's devices): each process draws the same
batches and places its own devices' rows; process 0 writes `config.json` and the metrics, all of them take part
in the orbax checkpoints (a shared workdir).

`SyntheticDataset` is a tiny linear system with known dynamics, rewards and values (tests and demos).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Mapping, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from simdist_jax import mesh as mesh_lib
from simdist_jax.metrics import MetricsWriter, NullWriter, format_duration
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import losses as losses_lib
from simdist_jax.world_model import model as model_lib


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/Inf loss; the message names the step and the batch statistics."""


@flax.struct.dataclass
class TrainState:
  """Pretraining state (params only; the scaler is a constant argument of the step)."""

  params: Any
  opt_state: Any
  step: jax.Array


class TrainResult(NamedTuple):
  """What `pretrain` returns."""

  variables: dict[str, Any]
  step: int
  metrics: dict[str, float]
  workdir: str


# ----------------------------------------------------------------------------------------------------------------
# Optimizer, metrics, logging.


def make_optimizer(lr_cfg: Any, grad_clip: float = 0.0) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with a linear-warmup + cosine schedule (`optax.warmup_cosine_decay_schedule`), optional clipping."""
  schedule = optax.warmup_cosine_decay_schedule(
    init_value=0.0, peak_value=float(lr_cfg.peak), warmup_steps=int(lr_cfg.warmup_steps),
    decay_steps=max(int(lr_cfg.decay_steps), int(lr_cfg.warmup_steps) + 1), end_value=float(lr_cfg.end))
  tx = optax.adam(schedule)
  if grad_clip and grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(float(grad_clip)), tx)
  return tx, schedule


def batch_stats(batch: Mapping[str, Any]) -> str:
  """One line per batch key: shape, min/max/mean over finite values and the count of non-finite entries."""
  lines = []
  for k, v in batch.items():
    x = np.asarray(v, np.float64)
    fin = np.isfinite(x)
    nbad = int(x.size - fin.sum())
    if fin.any():
      xf = x[fin]
      lines.append(f"{k}{list(x.shape)}: min={xf.min():.4g} max={xf.max():.4g} mean={xf.mean():.4g} "
                   f"nonfinite={nbad}")
    else:
      lines.append(f"{k}{list(x.shape)}: nonfinite={nbad} (no finite values)")
  return "\n  ".join(lines)


def tree_norm(tree: Any) -> jax.Array:
  """Global L2 norm of a pytree."""
  return optax.global_norm(tree)


# ----------------------------------------------------------------------------------------------------------------
# Static options of the compiled functions.

# `config.model` keys (dotted paths) that only steer the Python loop: step counts, how often to log / evaluate /
# save, and batch sizes (a shape, on which jit keys by itself). Every OTHER key, present or future, is part of
# `StepOptions`, so an option that a loss or an optimizer reads can never be left out of the compiled function's
# cache key; a key wrongly left out of this list only costs a recompile.
LOOP_KEYS = frozenset({"num_steps", "batch_size", "log_every", "eval_every", "eval_batches", "checkpoint_every",
                       "keep_checkpoints", "finetune.num_steps", "finetune.batch_size"})


def _freeze(x: Any, where: str) -> Any:
  if isinstance(x, np.ndarray):
    x = x.tolist()
  elif isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, (list, tuple)):
    return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(x))
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  raise TypeError(f"model option {where} = {x!r} ({type(x).__name__}) is not a plain value; expected a bool, "
                  f"number, string, None or a tuple of them")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
  out = []
  for k in sorted(d):
    path = f"{prefix}{k}"
    v = d[k]
    if isinstance(v, Mapping):
      out.extend(_flatten(v, path + "."))
    elif path not in LOOP_KEYS:
      out.append((path, _freeze(v, "model." + path)))
  return out


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """Hashable static options of the compiled train / eval / finetune functions (a jit static argument).

  Attributes:
    model: every leaf of `config.model` outside `LOOP_KEYS`, as sorted (dotted path, value) pairs, lists as tuples.
    dims: the env dims as sorted (name, value) pairs (`extero_shape` a tuple).
  """

  model: tuple[tuple[str, Any], ...]
  dims: tuple[tuple[str, Any], ...]

  @classmethod
  def from_config(cls, model_cfg: Any, dims: Mapping[str, Any]) -> StepOptions:
    """From `config.model` (ConfigDict or dict) and the dataset dims."""
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
    d = ckpt_lib.dims_from_json(ckpt_lib.dims_to_json(dims))
    return cls(model=tuple(_flatten(cfg)), dims=tuple(sorted(d.items())))

  def model_cfg(self) -> ml_collections.ConfigDict:
    """The options as a nested ConfigDict (without `LOOP_KEYS`)."""
    root: dict[str, Any] = {}
    for path, v in self.model:
      *parents, leaf = path.split(".")
      node = root
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = v
    return ml_collections.ConfigDict(root)

  def dims_dict(self) -> dict[str, Any]:
    """The env dims as a dict {name: value}."""
    return dict(self.dims)


class _Parts(NamedTuple):
  wm: model_lib.WorldModel
  loss_fn: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule


def _pretrain_parts(opts: StepOptions) -> _Parts:
  """World model, Eq. 2 loss, optimizer and schedule for `opts` (cheap Python; traced once per compile)."""
  mcfg = opts.model_cfg()
  wm = model_lib.make_world_model(mcfg, opts.dims_dict())
  tx, schedule = make_optimizer(mcfg.lr, float(mcfg.grad_clip or 0.0))
  return _Parts(wm, losses_lib.make_pretrain_loss(wm, mcfg), tx, schedule)


def make_world_model(opts: StepOptions) -> model_lib.WorldModel:
  """The world model of `opts`."""
  return model_lib.make_world_model(opts.model_cfg(), opts.dims_dict())


@functools.partial(jax.jit, static_argnames=("opts",))
def init_params(opts: StepOptions, key: jax.Array) -> dict[str, Any]:
  """Freshly initialised `{"params": ...}` of the world model of `opts`."""
  return make_world_model(opts).init(key)


def optimizer(opts: StepOptions) -> optax.GradientTransformation:
  """The pretraining optimizer of `opts` (for `tx.init`)."""
  return _pretrain_parts(opts).tx


# ----------------------------------------------------------------------------------------------------------------
# Compiled steps.


def _step(parts: _Parts, state: TrainState, scaler: Any, batch: Any, key_loss: jax.Array
          ) -> tuple[TrainState, dict]:
  """One Adam step on `batch`; dropout / noise key fold_in(key_loss, step)."""
  key = jax.random.fold_in(key_loss, state.step)
  (_, metrics), grads = jax.value_and_grad(parts.loss_fn, has_aux=True)(state.params, scaler, batch, key, True)
  updates, opt_state = parts.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {**metrics, "train/grad_norm": tree_norm(grads), "train/update_norm": tree_norm(updates),
             "train/param_norm": tree_norm(params), "train/lr": parts.schedule(state.step)}
  return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics


@functools.partial(jax.jit, static_argnames=("opts",))
def train_step(opts: StepOptions, state: TrainState, scaler: Any, batch: Any, key_loss: jax.Array
               ) -> tuple[TrainState, dict]:
  """One unguarded Adam step (one jit call): `(state, metrics)`. `train_chunk` scans the same step."""
  return _step(_pretrain_parts(opts), state, scaler, batch, key_loss)


def guarded_scan(step_fn: Callable[[Any, Any], tuple[Any, dict]], state: Any, xs: Any, num_steps: int,
                 finite_keys: tuple[str, ...]) -> tuple[Any, dict]:
  """`lax.scan` of `step_fn(state, x) -> (state, metrics)` over `num_steps` steps that keeps the state after the
  last step whose scalar `metrics[k]` for every k in `finite_keys` (loss, gradient norm, new parameter norm) were
  finite: from the first non-finite step on, updates are discarded (the state stays bitwise what it was). Returns
  `(state, metrics)`, each metric stacked to [K], plus "finite" [K] (bool, per step)."""

  def body(carry: tuple[Any, jax.Array], x: Any) -> tuple[tuple[Any, jax.Array], dict]:
    st, ok = carry
    new, m = step_fn(st, x)
    finite = jnp.all(jnp.stack([jnp.isfinite(m[k]) for k in finite_keys]))
    ok = ok & finite
    st = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, st)
    return (st, ok), {**m, "finite": finite}

  (state, _), metrics = jax.lax.scan(body, (state, jnp.asarray(True)), xs, length=num_steps)
  return state, metrics


# Step metrics that must be finite for a pretraining step to count (`guarded_scan`).
FINITE_KEYS = ("train/loss", "train/grad_norm", "train/param_norm")


@functools.partial(jax.jit, static_argnames=("opts", "num_steps", "batch_size", "sample_fn", "mesh"))
def train_chunk(opts: StepOptions, state: TrainState, scaler: Any, data: Any, key_data: jax.Array,
                key_loss: jax.Array, *, num_steps: int, batch_size: int, sample_fn: Callable | None = None,
                mesh: jax.sharding.Mesh | None = None) -> tuple[TrainState, dict]:
  """`num_steps` guarded Adam steps in one `lax.scan` (see `guarded_scan`): `(state, metrics [K])`.

  Args:
    opts: static options.
    state: the training state.
    scaler: the (constant) scaler.
    data: with `sample_fn`, the dataset arrays of `dataset.sampler()`: step s trains on
      `sample_fn(data, fold_in(key_data, s), batch_size)`; without, pre-drawn batches stacked to [K, B, ...].
    key_data: the batch key stream (folded with the step).
    key_loss: the dropout / noise key stream (folded with the step).
    num_steps: K, the number of steps.
    batch_size: B, windows per step (the global batch: B / n per device on a mesh of n).
    sample_fn: the dataset's pure sampler, or None.
    mesh: None (one device: the program is the single-device one), or the data-parallel mesh: each step's batch
      is constrained to be sharded along B and the state to be replicated (place the arguments with
      `mesh.replicate` / `mesh.shard` at the call site).
  """
  parts = _pretrain_parts(opts)

  def one(st: TrainState, x: Any) -> tuple[TrainState, dict]:
    batch = x if sample_fn is None else sample_fn(data, jax.random.fold_in(key_data, st.step), batch_size)
    st, m = _step(parts, st, scaler, mesh_lib.constrain(batch, mesh), key_loss)
    return mesh_lib.constrain(st, mesh, None), m

  xs = data if sample_fn is None else None
  return guarded_scan(one, state, xs, num_steps, FINITE_KEYS)


@functools.partial(jax.jit, static_argnames=("opts",))
def eval_step(opts: StepOptions, params: Any, scaler: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, dict]:
  """Deterministic (no dropout, no noise) Eq. 2 loss and its "eval/..." metrics on `batch`."""
  return _pretrain_parts(opts).loss_fn(params, scaler, batch, key, False, "eval")


# ----------------------------------------------------------------------------------------------------------------
# Host-side batches and chunking.

# Cap on the bytes of host-drawn batches stacked for one chunk (datasets without `sampler()`).
_PRESAMPLE_BYTES = 256 << 20


def dataset_sampler(dataset: Any) -> tuple[Callable | None, Any]:
  """`dataset.sampler()`, the pure in-scan sampler `(sample_fn, arrays)`, or `(None, None)` when the dataset has
  none (no `sampler` method, or one that returns None: a streaming dataset, or a mix with one); then batches are
  drawn on the host (`draw_batches`)."""
  get = getattr(dataset, "sampler", None)
  out = get() if get is not None else None
  return out if out is not None else (None, None)


def draw_batches(dataset: Any, key_data: jax.Array, start: int, num_steps: int, batch_size: int) -> tuple[Any, int]:
  """Host-drawn batches for steps start.. (key fold_in(key_data, step)), stacked to [K, B, ...]; K <= num_steps is
  cut so that the stack stays under `_PRESAMPLE_BYTES`. Returns (stacked batches, K): numpy when the dataset's
  batches are numpy (a streaming dataset: stacked on the host, moved to the device(s) once by the caller), else
  device arrays."""
  first = dataset.sample(jax.random.fold_in(key_data, start), batch_size)
  size = sum(x.nbytes for x in jax.tree.leaves(first))
  k = max(1, min(num_steps, -(-_PRESAMPLE_BYTES // max(size, 1))))  # the first K whose stack reaches the cap
  if all(isinstance(x, np.ndarray) for x in jax.tree.leaves(first)):  # host batches: filled into one stack
    out = jax.tree.map(lambda x: np.empty((k,) + x.shape, x.dtype), first)
    for i in range(k):
      batch = first if i == 0 else dataset.sample(jax.random.fold_in(key_data, start + i), batch_size)
      jax.tree.map(lambda o, x, i=i: o.__setitem__(i, x), out, batch)
    return out, k
  batches = [first] + [dataset.sample(jax.random.fold_in(key_data, s), batch_size)
                       for s in range(start + 1, start + k)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *batches), k


def next_boundary(step: int, end: int, *periods: int) -> int:
  """The smallest multiple of any of `periods` after `step`, capped at `end`."""
  return min([end] + [(step // p + 1) * p for p in periods if p > 0])


def first_nonfinite(finite: np.ndarray) -> int | None:
  """Index of the first False in a [K] bool array, None if all are True."""
  bad = np.flatnonzero(~np.asarray(finite, bool))
  return int(bad[0]) if bad.size else None


def evaluate(eval_fn: Any, params: Any, scaler: Any, dataset: Any, key: jax.Array, batch_size: int,
             num_batches: int, mesh: jax.sharding.Mesh | None = None) -> dict[str, float]:
  """Mean eval metrics over `num_batches` held-out batches (deterministic model, no augmentation); with a mesh
  each batch is sharded along B (`params` and `scaler` replicated by the caller)."""
  acc: dict[str, float] = {}
  for i in range(num_batches):
    k_data, k_loss = jax.random.split(jax.random.fold_in(key, i))
    batch = mesh_lib.shard(dataset.sample_eval(k_data, batch_size), mesh)
    _, m = eval_fn(params, scaler, batch, mesh_lib.replicate(k_loss, mesh))
    for k, v in m.items():
      acc[k] = acc.get(k, 0.0) + float(v) / num_batches
  return acc


# ----------------------------------------------------------------------------------------------------------------
# Pretraining.


def pretrain(config: Any, workdir: str, dataset: Any) -> TrainResult:
  """Pretrains (or resumes) the world model on `dataset` for `config.model.num_steps` steps; see module doc.

  Raises:
    NonFiniteLossError: a step's loss or gradient norm was NaN/inf; the last good state (before that step) is saved
      first, and the message names the step, the loss terms and the offending batch's statistics.
  """
  mcfg = config.model
  dims = dataset.dims
  mesh = mesh_lib.from_config(config)
  mesh_lib.check_divisible(mesh, {"model.batch_size": int(mcfg.batch_size)})
  opts = StepOptions.from_config(mcfg, dims)
  wm, tx = make_world_model(opts), optimizer(opts)
  root_key = jax.random.key(int(config.run.seed))
  key_init, key_data, key_loss, key_eval = jax.random.split(root_key, 4)
  del root_key

  workdir = os.path.abspath(workdir)
  primary = jax.process_index() == 0  # a multi-host run: process 0 writes the config and the metrics
  if primary:
    ckpt_lib.save_config(workdir, config)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(mcfg.keep_checkpoints))

  start = ckpt.latest_step()
  if start is not None:  # check before any compute, so a wrong task/config fails fast
    meta = ckpt.restore_meta()  # the newest readable metadata (warns past a corrupt step)
    ckpt_lib.check_compatible(meta["model_cfg"], ckpt_lib.dims_from_json(meta["dims"]), mcfg, dims,
                              where=f"checkpoint {ckpt.directory}/{start}")
  variables = wm.with_scaler(init_params(opts, key_init), dataset.stats)
  state = TrainState(params=variables["params"], opt_state=tx.init(variables["params"]), step=jnp.zeros((), jnp.int32))
  if start is not None:
    abstract_ts = jax.eval_shape(lambda: {"opt_state": state.opt_state})
    start, restored, ts = ckpt.restore_latest(jax.eval_shape(lambda: variables), abstract_ts,
                                              discard_corrupt=True)  # falls back past a corrupt latest step
    variables = {"params": dict(restored["params"]), "scaler": dict(restored["scaler"])}
    state = TrainState(params=variables["params"], opt_state=ts["opt_state"], step=jnp.asarray(start, jnp.int32))
    print(f"[world_model] resuming from step {start} in {ckpt.directory}", flush=True)
  scaler = variables["scaler"]
  sample_fn, arrays = dataset_sampler(dataset)
  eval_fn = functools.partial(eval_step, opts)
  if mesh is not None:  # data parallel: everything but the batch replicated (identity at one device)
    state, scaler, arrays = mesh_lib.replicate((state, scaler, arrays), mesh)
    key_data, key_loss = mesh_lib.replicate((key_data, key_loss), mesh)
    print(f"[world_model] data parallel over {mesh_lib.size(mesh)} devices ({mesh.devices[0].platform}): "
          f"{int(mcfg.batch_size) // mesh_lib.size(mesh)} windows per device per step", flush=True)

  writer = MetricsWriter(workdir, tb_subdir="tb") if primary else NullWriter()
  num_steps, batch_size = int(mcfg.num_steps), int(mcfg.batch_size)
  log_every, eval_every, ckpt_every = int(mcfg.log_every), int(mcfg.eval_every), int(mcfg.checkpoint_every)
  step = int(state.step)
  last_saved = start if start is not None else -1
  metrics_out: dict[str, float] = {}
  t0, step0 = time.time(), step

  def save(s: TrainState) -> None:
    nonlocal last_saved
    ckpt.save(int(s.step), {"params": s.params, "scaler": scaler}, mcfg, dims,
              train_state={"opt_state": s.opt_state}, kind="pretrain")
    last_saved = int(s.step)

  try:
    while step < num_steps:
      k = next_boundary(step, num_steps, log_every, eval_every, ckpt_every) - step
      if sample_fn is None:
        drawn, k = draw_batches(dataset, key_data, step, k, batch_size)  # this process's copy (the error path)
        data = mesh_lib.shard(drawn, mesh, axis=1)  # [K, B, ...] split along B
      else:
        data = arrays
      state, metrics = train_chunk(opts, state, scaler, data, key_data, key_loss, num_steps=k,
                                   batch_size=batch_size, sample_fn=sample_fn, mesh=mesh)
      metrics = jax.device_get(metrics)  # the one host sync of the chunk
      bad = first_nonfinite(metrics["finite"])
      if bad is not None:
        bad_step = step + bad  # == int(state.step): the chunk kept the state before that step
        if bad_step > last_saved:
          save(state)
        batch = (jax.tree.map(lambda x, bad=bad: x[bad], drawn) if sample_fn is None
                 else dataset.sample(jax.random.fold_in(key_data, bad_step), batch_size))
        raise NonFiniteLossError(
          f"non-finite training loss {float(metrics['train/loss'][bad])} at step {bad_step} (terms: "
          + ", ".join(f"{kk}={float(v[bad]):.4g}" for kk, v in metrics.items() if kk.startswith("train/loss/"))
          + f", grad_norm={float(metrics['train/grad_norm'][bad]):.4g}; {int((~metrics['finite']).sum())} of the "
          f"chunk's {k} steps non-finite); last good checkpoint: step {last_saved} in {ckpt.directory}\n"
          f"batch statistics:\n  " + batch_stats(batch))
      step += k
      if step % log_every == 0 or step == num_steps:
        metrics_out.update({kk: float(v[-1]) for kk, v in metrics.items() if kk != "finite"})
        rate = (step - step0) / max(time.time() - t0, 1e-9)
        metrics_out["train/steps_per_s"] = rate
        writer.write(step, {kk: v for kk, v in metrics_out.items() if kk.startswith("train/")})
        print(f"[world_model] step {step}/{num_steps} loss {metrics_out['train/loss']:.4f} latent "
              f"{metrics_out['train/loss/latent']:.4f} reward {metrics_out['train/loss/reward']:.4f} value "
              f"{metrics_out['train/loss/value']:.4f} bc {metrics_out['train/loss/action']:.4f} | {rate:.1f} it/s, "
              f"{rate * batch_size:.0f} win/s, ETA {format_duration((num_steps - step) / max(rate, 1e-9))}",
              flush=True)
      if step % eval_every == 0 or step == num_steps:
        ev = evaluate(eval_fn, state.params, scaler, dataset, jax.random.fold_in(key_eval, step), batch_size,
                      int(mcfg.eval_batches), mesh)
        metrics_out.update(ev)
        writer.write(step, ev)
        print(f"[world_model] eval step {step}: " + " ".join(f"{kk}={v:.4f}" for kk, v in sorted(ev.items())),
              flush=True)
      if step % ckpt_every == 0 or step == num_steps:
        save(state)
  finally:
    writer.close()
    ckpt.close()
  variables = mesh_lib.to_default_device({"params": state.params, "scaler": scaler}, mesh)
  return TrainResult(variables, step, metrics_out, workdir)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic data.


@dataclasses.dataclass(frozen=True)
class SyntheticSampler:
  """Pure sampler of `SyntheticDataset` windows of length L: `self(data, key, B)` over {key: [N, len, ...]} arrays."""

  L: int

  def __call__(self, data: Mapping[str, jax.Array], key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """`batch_size` windows of length L, each from a uniformly drawn episode and start: {key: [B, L, ...]}."""
    n, length = data["reward"].shape
    k_ep, k_start = jax.random.split(key)
    ep = jax.random.randint(k_ep, (batch_size,), 0, n)
    start = jax.random.randint(k_start, (batch_size,), 0, length - self.L + 1)
    idx = start[:, None] + jnp.arange(self.L)
    return {k: v[ep[:, None], idx] for k, v in data.items()}


class SyntheticDataset:
  """Tiny linear system with known dynamics, reward and value, in the window-sampler batch format.

  x_{k+1} = A x_k + g B a_k (g = `gain`, 1 in "sim"; set e.g. 0.5 for a shifted "real" system), proprio = x (P = 4),
  no extero, A = 2 actions, C = 1 command (a per-episode target for x_0). Expert a = -K (x - [c, 0, 0, 0]);
  in "noise windows" Gaussian noise (std 1) is added and expert_flag = 0. Reward r_k = -(x_0 - c)^2 - 0.1 |a|^2,
  value_k = -2 (x_0 - c)^2 - |x_{1:}|^2 (a fixed quadratic, i.e. a known V(s_k)).
  """

  def __init__(self, H: int, T: int, num_episodes: int = 64, num_eval_episodes: int = 16, episode_len: int = 64,
               gain: float = 1.0, noise_prob: float = 0.3, seed: int = 0) -> None:
    """Generates all episodes up front (numpy) and keeps them as device arrays."""
    self.H, self.T, self.L = H, T, H + T + 1
    if episode_len < self.L:
      raise ValueError(f"episode_len {episode_len} < window length {self.L}")
    self.dims = {"proprio": 4, "extero": 0, "extero_shape": (), "action": 2, "command": 1}
    rng = np.random.default_rng(seed)
    self.A_mat = np.array([[1.0, 0.1, 0, 0], [-0.2, 0.9, 0, 0.1], [0, 0, 0.95, 0.1], [0, 0, -0.1, 0.9]], np.float32)
    self.B_mat = gain * np.array([[0, 0], [0.1, 0], [0, 0], [0, 0.1]], np.float32)
    self.K = np.array([[1.0, 1.5, 0, 0], [0, 0, 0.5, 1.0]], np.float32)
    self._train = self._generate(rng, num_episodes, episode_len, noise_prob)
    self._eval = self._generate(rng, num_eval_episodes, episode_len, noise_prob)
    flat = {k: v.reshape((v.shape[0] * v.shape[1],) + v.shape[2:]) for k, v in self._train.items()}
    self.stats = {k: {"mean": v.mean(0), "std": v.std(0)} for k, v in flat.items() if k != "expert_flag"}
    self._train = {k: jnp.asarray(v) for k, v in self._train.items()}
    self._eval = {k: jnp.asarray(v) for k, v in self._eval.items()}
    self._sample = jax.jit(SyntheticSampler(self.L), static_argnums=(2,))

  def _generate(self, rng: np.random.Generator, n: int, length: int, noise_prob: float) -> dict[str, np.ndarray]:
    x = rng.normal(0, 1.0, (n, 4)).astype(np.float32)
    c = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    out = {k: [] for k in ("proprio", "extero", "action", "command", "reward", "value", "expert_flag")}
    noisy = np.zeros(n, bool)
    for _ in range(length):
      switch = rng.uniform(size=n) < 0.1
      noisy = np.where(switch, rng.uniform(size=n) < noise_prob, noisy)
      err = x - np.concatenate([c, np.zeros((n, 3), np.float32)], axis=1)
      a = -err @ self.K.T + noisy[:, None] * rng.normal(0, 1.0, (n, 2))
      out["proprio"].append(x.copy())
      out["extero"].append(np.zeros((n, 0), np.float32))
      out["action"].append(a)
      out["command"].append(c.copy())
      out["reward"].append(-(err[:, 0] ** 2) - 0.1 * (a ** 2).sum(-1))
      out["value"].append(-2.0 * err[:, 0] ** 2 - (x[:, 1:] ** 2).sum(-1))
      out["expert_flag"].append((~noisy).astype(np.float32))
      x = x @ self.A_mat.T + a @ self.B_mat.T
    return {k: np.stack(v, axis=1).astype(np.float32) for k, v in out.items()}

  def sampler(self) -> tuple[SyntheticSampler, dict[str, jax.Array]]:
    """(pure `fn(arrays, key, batch_size)`, arrays) with `fn(arrays, key, B) == sample(key, B)` (for jit/scan)."""
    return SyntheticSampler(self.L), self._train

  def sample(self, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """Training windows `[B, L, ...]`."""
    return self._sample(self._train, key, batch_size)

  def sample_eval(self, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """Windows from held-out episodes."""
    return self._sample(self._eval, key, batch_size)
