"""World-model pretraining (Eq. 2): jitted Adam step, periodic eval, TensorBoard + JSONL metrics, orbax checkpoints.

`pretrain(config, workdir, dataset) -> TrainResult` reads `config.model` and `config.run.seed`. `dataset` provides
`sample(key, batch_size) -> batch` ([B, L, ...] windows, see `losses.py`), `sample_eval(key, batch_size)`, `stats`
(scaler stats dict) and `dims`. Re-running the same command in the same `workdir` resumes from the latest
checkpoint and continues the step count; the data and dropout keys are `fold_in(seed_key, step)`, so a resumed run
sees the same batches as an uninterrupted one.

`SyntheticDataset` is a tiny linear system with known dynamics, rewards and values (tests and demos).
"""

import functools
import json
import math
import os
import time
from typing import Any, Mapping, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from simdist_jax.metrics import MetricsWriter, format_duration
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
# Pretraining.


def make_train_step(loss_fn: Any, tx: optax.GradientTransformation, schedule: optax.Schedule):
  """Returns the jitted `step(state, scaler, batch, seed_key) -> (state, metrics)`, dropout key fold_in(seed, step)."""

  def step_fn(state: TrainState, scaler: Any, batch: Any, seed_key: jax.Array) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(seed_key, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, scaler, batch, key, True)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "train/grad_norm": tree_norm(grads), "train/update_norm": tree_norm(updates),
               "train/param_norm": tree_norm(params), "train/lr": schedule(state.step)}
    del loss
    return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics

  return jax.jit(step_fn)


def static_key(model_cfg: Any, dims: Mapping[str, Any], fields: tuple[str, ...]) -> str:
  """Hashable JSON of the config fields that shape a compiled step (used to reuse compiled functions)."""
  cfg = ckpt_lib._jsonable(model_cfg)  # noqa: SLF001
  return json.dumps({"dims": ckpt_lib.dims_to_json(dims), **{k: cfg.get(k) for k in fields}}, sort_keys=True)


_STEP_FIELDS = ckpt_lib.ARCH_KEYS + ("dropout_attn", "dropout_mlp", "loss_weights", "aug_noise", "lr", "grad_clip",
                                     "heads_stop_gradient")


@functools.lru_cache(maxsize=8)
def _compiled(key: str) -> tuple[Any, ...]:
  """(wm, jitted init, tx, schedule, jitted train step, jitted eval) for a static config; cached so that repeated
  `pretrain` calls (resume, sweeps, tests) with the same shapes do not recompile."""
  d = json.loads(key)
  mcfg = ml_collections.ConfigDict({k: v for k, v in d.items() if k != "dims"})
  dims = ckpt_lib.dims_from_json(d["dims"])
  wm = model_lib.make_world_model(mcfg, dims)
  loss_fn = losses_lib.make_pretrain_loss(wm, mcfg)
  tx, schedule = make_optimizer(mcfg.lr, float(mcfg.grad_clip or 0.0))
  eval_fn = jax.jit(lambda p, s, b, k: loss_fn(p, s, b, k, False, "eval"))
  return wm, jax.jit(wm.init), tx, schedule, make_train_step(loss_fn, tx, schedule), eval_fn


def evaluate(eval_fn: Any, params: Any, scaler: Any, dataset: Any, key: jax.Array, batch_size: int,
             num_batches: int) -> dict[str, float]:
  """Mean eval metrics over `num_batches` held-out batches (deterministic model, no augmentation)."""
  acc: dict[str, float] = {}
  for i in range(num_batches):
    k_data, k_loss = jax.random.split(jax.random.fold_in(key, i))
    _, m = eval_fn(params, scaler, dataset.sample_eval(k_data, batch_size), k_loss)
    for k, v in m.items():
      acc[k] = acc.get(k, 0.0) + float(v) / num_batches
  return acc


def pretrain(config: Any, workdir: str, dataset: Any) -> TrainResult:
  """Pretrains (or resumes) the world model on `dataset` for `config.model.num_steps` steps; see module doc."""
  mcfg = config.model
  dims = dataset.dims
  wm, init_fn, tx, _, train_step, eval_fn = _compiled(static_key(mcfg, dims, _STEP_FIELDS))
  root_key = jax.random.key(int(config.run.seed))
  key_init, key_data, key_loss, key_eval = jax.random.split(root_key, 4)
  del root_key

  workdir = os.path.abspath(workdir)
  ckpt_lib.save_config(workdir, config)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(mcfg.keep_checkpoints))

  start = ckpt.latest_step()
  if start is not None:  # check before any compute, so a wrong task/config fails fast
    meta = ckpt.restore_meta(start)
    ckpt_lib.check_compatible(meta["model_cfg"], ckpt_lib.dims_from_json(meta["dims"]), mcfg, dims,
                              where=f"checkpoint {ckpt.directory}/{start}")
  variables = wm.with_scaler(init_fn(key_init), dataset.stats)
  state = TrainState(params=variables["params"], opt_state=tx.init(variables["params"]), step=jnp.zeros((), jnp.int32))
  if start is not None:
    abstract_ts = jax.eval_shape(lambda: {"opt_state": state.opt_state})
    restored, ts = ckpt.restore(start, jax.eval_shape(lambda: variables), abstract_ts)
    variables = {"params": dict(restored["params"]), "scaler": dict(restored["scaler"])}
    state = TrainState(params=variables["params"], opt_state=ts["opt_state"], step=jnp.asarray(start, jnp.int32))
    print(f"[world_model] resuming from step {start} in {ckpt.directory}", flush=True)
  scaler = variables["scaler"]

  writer = MetricsWriter(workdir, tb_subdir="tb")
  num_steps, batch_size = int(mcfg.num_steps), int(mcfg.batch_size)
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
      batch = dataset.sample(jax.random.fold_in(key_data, step), batch_size)
      new_state, metrics = train_step(state, scaler, batch, key_loss)
      loss = float(metrics["train/loss"])
      if not math.isfinite(loss):
        if step > last_saved:
          save(state)
        raise NonFiniteLossError(
          f"non-finite training loss {loss} at step {step} (terms: "
          + ", ".join(f"{k}={float(v):.4g}" for k, v in metrics.items() if k.startswith("train/loss/"))
          + f"); last good checkpoint: step {last_saved} in {ckpt.directory}\nbatch statistics:\n  "
          + batch_stats(batch))
      state, step = new_state, step + 1
      if step % int(mcfg.log_every) == 0 or step == num_steps:
        metrics_out.update({k: float(v) for k, v in metrics.items()})
        rate = (step - step0) / max(time.time() - t0, 1e-9)
        metrics_out["train/steps_per_s"] = rate
        writer.write(step, {k: v for k, v in metrics_out.items() if k.startswith("train/")})
        print(f"[world_model] step {step}/{num_steps} loss {loss:.4f} latent {metrics_out['train/loss/latent']:.4f}"
              f" reward {metrics_out['train/loss/reward']:.4f} value {metrics_out['train/loss/value']:.4f}"
              f" bc {metrics_out['train/loss/action']:.4f} | {rate:.1f} it/s, {rate * batch_size:.0f} win/s,"
              f" ETA {format_duration((num_steps - step) / max(rate, 1e-9))}", flush=True)
      if step % int(mcfg.eval_every) == 0 or step == num_steps:
        ev = evaluate(eval_fn, state.params, scaler, dataset, jax.random.fold_in(key_eval, step), batch_size,
                      int(mcfg.eval_batches))
        metrics_out.update(ev)
        writer.write(step, ev)
        print(f"[world_model] eval step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(ev.items())),
              flush=True)
      if step % int(mcfg.checkpoint_every) == 0 or step == num_steps:
        save(state)
  finally:
    writer.close()
    ckpt.close()
  return TrainResult({"params": state.params, "scaler": scaler}, step, metrics_out, workdir)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic data.


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
    self._sample = jax.jit(self._sample_impl, static_argnums=(2,))

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

  def _sample_impl(self, data: Mapping[str, jax.Array], key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    n, length = data["reward"].shape
    k_ep, k_start = jax.random.split(key)
    ep = jax.random.randint(k_ep, (batch_size,), 0, n)
    start = jax.random.randint(k_start, (batch_size,), 0, length - self.L + 1)
    idx = start[:, None] + jnp.arange(self.L)
    return {k: v[ep[:, None], idx] for k, v in data.items()}

  def sample(self, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """Training windows `[B, L, ...]`."""
    return self._sample(self._train, key, batch_size)

  def sample_eval(self, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """Windows from held-out episodes."""
    return self._sample(self._eval, key, batch_size)
