"""Single-step behaviour cloning of the clean expert in the sim dataset (paper §5, "Single-step BC").

The starting policy of the RL baselines and a baseline of its own: pi(o_t, c_t) -> a_t on SimDist's encoder
(`networks.DeterministicActor`), trained by mean squared error on the z-scored actions of the steps whose action
came from the uncorrupted expert (`expert_flag`, the mask of SimDist's own BC term). It sees no real data, so its
real-world curve is one point (round 0), drawn as a horizontal line beside the methods that adapt.

The `baseline-bc` stage (`simdist-jax baseline --algo=bc ...`) writes under `<workdir>/baselines/bc/`:
  params.msgpack        the actor's parameters (flax serialization)
  meta.json             hidden widths, dims, the scaler it was trained with, the training summary
  rounds/round_00/round.json  the adaptation loop's per-round record: real return/success on the loop's
                        evaluation seeds (the same initial states as `adapt`), the sim return on its sim seeds, the
                        held-out imitation error next to the trivial predictor
  results.json          {"algo", "uses_real_data", "complete", "rounds": [...], summary}; written last.

Sanity check (issue 20): on held-out sim episodes the BC error on expert steps is reported next to the error of
the best constant action (the expert actions' mean over the same batch), as `bc/heldout_mse_over_constant`.
Dimension letters: B batch, L = 2 window (t, t+1), P/E/C/A feature dims.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from simdist_jax import config as config_lib
from simdist_jax import fileio
from simdist_jax.adapt import evaluation
from simdist_jax.adapt.loop import eval_seeds
from simdist_jax.baselines import losses
from simdist_jax.baselines import networks
from simdist_jax.baselines import online
from simdist_jax.data import scaler as scaler_lib
from simdist_jax.envs.registry import make_real_env
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import train as train_lib

NAME = "bc"


@dataclasses.dataclass(frozen=True)
class BCConfig:
  """The `baselines.bc` section as a typed record (validated at config load, `validation._baselines`)."""

  hidden: tuple[int, ...]
  num_steps: int
  batch_size: int
  chunk_steps: int
  eval_batches: int
  lr: Any  # the `lr` sub-section (peak, warmup_steps, decay_steps, end), as `train.make_optimizer` reads it
  grad_clip: float

  @classmethod
  def from_config(cls, section: Any) -> "BCConfig":
    """From `cfg.baselines.bc`."""
    return cls(hidden=tuple(int(w) for w in section.hidden), num_steps=int(section.num_steps),
               batch_size=int(section.batch_size), chunk_steps=int(section.chunk_steps),
               eval_batches=int(section.eval_batches), lr=section.lr, grad_clip=float(section.grad_clip))


def _current_inputs(scaler: Any, batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
  """z-scored proprio/extero/command of each window's first step: [B, P], [B, E], [B, C]."""
  return tuple(model_lib.scale(scaler, k, batch[k][:, 0]) for k in ("proprio", "extero", "command"))


def predict(actor: networks.DeterministicActor, params: Any, scaler: Any, batch: dict) -> jax.Array:
  """z-scored action predictions for the windows' first steps: [B, A]."""
  p, e, c = _current_inputs(scaler, batch)
  return jax.vmap(actor.apply, in_axes=(None, 0, 0, 0))({"params": params}, p, e, c)


def loss_fn(actor: networks.DeterministicActor, params: Any, scaler: Any, batch: dict) -> tuple[jax.Array, dict]:
  """Masked MSE on the z-scored expert actions of a batch of windows (first step of each)."""
  pred = predict(actor, params, scaler, batch)
  target = model_lib.scale(scaler, "action", batch["action"][:, 0])
  mask = batch["expert_flag"][:, 0] * batch["mask"][:, 0]
  loss = losses.masked_bc_loss(pred, target, mask)
  return loss, {"bc/loss": loss, "bc/expert_share": jnp.mean(mask)}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _train_chunk(actor, tx, sampler, batch_size: int, params, opt_state, scaler, arrays, key, steps):
  """`len(steps)` Adam steps in one `lax.scan`; batch i drawn with fold_in(key, steps[i]). Returns the new
  params, optimizer state and the per-step losses [K]."""
  def step(carry, s):
    prm, opt = carry
    batch = sampler(arrays, jax.random.fold_in(key, s), batch_size)
    (loss, _), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(actor, prm, scaler, batch)
    updates, opt = tx.update(grads, opt, prm)
    return (optax.apply_updates(prm, updates), opt), loss
  (params, opt_state), loss = jax.lax.scan(step, (params, opt_state), steps)
  return params, opt_state, loss


def make_actor(spec: model_lib.ModelSpec, bcfg: BCConfig) -> networks.DeterministicActor:
  """The BC actor on the encoder of `spec` with the head widths of `bcfg`."""
  return networks.DeterministicActor(spec, bcfg.hidden)


def init_params(actor: networks.DeterministicActor, key: jax.Array) -> Any:
  """Fresh actor parameters."""
  s = actor.spec
  return actor.init(key, jnp.zeros(s.proprio), jnp.zeros(s.extero), jnp.zeros(s.command))["params"]


def train(actor: networks.DeterministicActor, bcfg: BCConfig, dataset: Any, scaler: Any, key: jax.Array,
          log: Callable[[str], None] = print, log_every_s: float = 10.0) -> tuple[Any, dict]:
  """Trains the actor on `dataset` (a `WindowDataset` with T >= 1; only each window's first step is used).

  Returns (params, {"bc/final_loss", "bc/steps", "bc/wall_s"}). Raises `train.NonFiniteLossError` naming the
  chunk of steps where the loss became non-finite."""
  key_init, key_data = jax.random.split(key)
  params = init_params(actor, key_init)
  tx, _ = train_lib.make_optimizer(bcfg.lr, bcfg.grad_clip)
  opt_state = tx.init(params)
  sampler, arrays = dataset.sampler()
  t0, last_log, step, loss = time.perf_counter(), 0.0, 0, float("nan")
  while step < bcfg.num_steps:
    k = min(bcfg.chunk_steps, bcfg.num_steps - step)
    params, opt_state, chunk_loss = _train_chunk(actor, tx, sampler, bcfg.batch_size, params, opt_state, scaler,
                                                 arrays, key_data, jnp.arange(step, step + k))
    chunk_loss = np.asarray(chunk_loss)
    if not np.all(np.isfinite(chunk_loss)):
      bad = step + int(np.flatnonzero(~np.isfinite(chunk_loss))[0])
      raise train_lib.NonFiniteLossError(f"BC loss became non-finite at step {bad} (steps {step}..{step + k - 1})")
    step += k
    loss = float(chunk_loss[-1])
    now = time.perf_counter() - t0
    if now - last_log >= log_every_s or step == bcfg.num_steps:
      last_log = now
      eta = now / step * (bcfg.num_steps - step)
      log(f"step {step}/{bcfg.num_steps} | loss {float(chunk_loss.mean()):.4f} | elapsed {now:.0f}s | "
          f"ETA {eta:.0f}s")
  return params, {"bc/final_loss": loss, "bc/steps": step, "bc/wall_s": time.perf_counter() - t0}


def heldout_metrics(actor: networks.DeterministicActor, params: Any, scaler: Any, dataset: Any, key: jax.Array,
                    batch_size: int, num_batches: int) -> dict:
  """On held-out sim episodes, expert steps only, z-scored action units: the BC error, the error of the best
  constant action (the expert actions' mean over the same windows) and their ratio (< 1: BC beats the constant)."""
  preds, targets, masks = [], [], []
  for i in range(num_batches):
    batch = dataset.sample_eval(jax.random.fold_in(key, i), batch_size)
    preds.append(np.asarray(predict(actor, params, scaler, batch)))
    targets.append(np.asarray(model_lib.scale(scaler, "action", batch["action"][:, 0])))
    masks.append(np.asarray(batch["expert_flag"][:, 0] * batch["mask"][:, 0]) > 0)
  pred, target, mask = np.concatenate(preds), np.concatenate(targets), np.concatenate(masks)
  if not mask.any():
    raise ValueError(f"no expert step among {mask.size} held-out windows of {dataset.source}")
  err = float(np.mean((pred[mask] - target[mask]) ** 2))
  const = float(np.mean((target[mask] - target[mask].mean(0)) ** 2))
  return {"bc/heldout_mse": err, "bc/heldout_constant_mse": const,
          "bc/heldout_mse_over_constant": err / max(const, 1e-12), "bc/heldout_expert_steps": int(mask.sum())}


@functools.partial(jax.jit, static_argnums=0)
def act(actor: networks.DeterministicActor, params: Any, scaler: Any, low: jax.Array, high: jax.Array,
        proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
  """One raw action for one raw observation, clipped to [low, high]."""
  a = actor.apply({"params": params}, model_lib.scale(scaler, "proprio", proprio),
                  model_lib.scale(scaler, "extero", extero), model_lib.scale(scaler, "command", command))
  return jnp.clip(model_lib.unscale(scaler, "action", a), low, high)


class PolicyController:
  """The BC actor as a host controller of `evaluation.run_episode` (stateless: no history, no planning)."""

  def __init__(self, actor: networks.DeterministicActor, params: Any, scaler: Any, low: Any, high: Any) -> None:
    s = actor.spec
    self.actor, self.params, self.scaler = actor, params, scaler
    self.low = jnp.broadcast_to(jnp.asarray(low, jnp.float32), (s.action,))
    self.high = jnp.broadcast_to(jnp.asarray(high, jnp.float32), (s.action,))
    self._empty_cmd = jnp.zeros((s.command,), jnp.float32)

  def reset(self, key: jax.Array) -> None:
    """Nothing to reset; `key` is unused (the policy is deterministic)."""
    del key

  def replace_last_action(self, applied: Any) -> None:
    """The policy keeps no action history; `applied` is unused."""
    del applied

  def __call__(self, proprio: Any, extero: Any = None, command: Any = None) -> np.ndarray:
    """The clipped raw action for one raw observation (absent extero/command: empty)."""
    s = self.actor.spec
    ext = jnp.zeros((s.extero,), jnp.float32) if extero is None else jnp.asarray(extero, jnp.float32).reshape(-1)
    cmd = self._empty_cmd if command is None else jnp.asarray(command, jnp.float32).reshape(-1)
    return np.asarray(act(self.actor, self.params, self.scaler, self.low, self.high,
                          jnp.asarray(proprio, jnp.float32), ext, cmd))


# ---- the stage ------------------------------------------------------------------------------------------------
def is_complete(cfg: Any, workdir: Any) -> bool:
  """results.json exists and says complete."""
  del cfg
  return online.results_complete(workdir, NAME)


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Trains BC on the run's sim dataset and evaluates it with the adaptation loop's protocol (round 0 only)."""
  out = online.baseline_dir(workdir, NAME)
  out.mkdir(parents=True, exist_ok=True)
  log = lambda msg: print(f"[baseline-bc] {msg}", flush=True)  # noqa: E731
  dataset, spec, scaler, low, high, seed = online.make_setup(cfg, workdir)
  bcfg = BCConfig.from_config(cfg.baselines.bc)
  actor = make_actor(spec, bcfg)
  key_train, key_eval = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 0xBC))
  log(f"{dataset.num_train_windows:,} training / {dataset.num_eval_windows:,} held-out transitions; "
      f"{bcfg.num_steps} steps of batch {bcfg.batch_size}")
  params, train_summary = train(actor, bcfg, dataset, scaler, key_train, log=log,
                                log_every_s=float(cfg.run.log_every_s))
  held = heldout_metrics(actor, params, scaler, dataset, key_eval, bcfg.batch_size, bcfg.eval_batches)
  log(f"held-out expert-step error {held['bc/heldout_mse']:.4f} vs best constant action "
      f"{held['bc/heldout_constant_mse']:.4f} (ratio {held['bc/heldout_mse_over_constant']:.3f})")
  fileio.write_bytes(out / "params.msgpack", flax.serialization.to_bytes(params))
  fileio.write_json(out / "meta.json", {"algo": NAME, "hidden": list(bcfg.hidden), "dims": {
      k: (list(v) if isinstance(v, tuple) else v) for k, v in dataset.dims.items()},
      "scaler": scaler_lib.stats_to_json(dataset.stats), **train_summary})

  controller = PolicyController(actor, params, scaler, low, high)
  acfg = cfg.adapt
  t0 = time.perf_counter()
  grid = evaluation.eval_grid(cfg)
  sim = evaluation.evaluate_episodes(make_real_env(cfg, "sim"), controller,
                                     eval_seeds(seed, int(acfg.sim_eval_episodes)), grid)
  real = evaluation.evaluate_episodes(make_real_env(cfg, "real"), controller,
                                      eval_seeds(seed, int(acfg.eval_episodes)), grid)
  row = {"round": 0, "real_minutes": 0.0, "real_episodes": 0,
         "real/return_mean": real["return_mean"], "real/return_std": real["return_std"],
         "real/returns": real["returns"], "real/success_mean": real["success_mean"], "real/success": real["success"],
         "real/success_final": real["success_final"], "sim/return_mean": sim["return_mean"],
         "sim/return_std": sim["return_std"], "sim/returns": sim["returns"], "sim/success_mean": sim["success_mean"],
         **held, "wall_s": time.perf_counter() - t0}
  rdir = out / "rounds" / "round_00"  # the adaptation loop's naming
  rdir.mkdir(parents=True, exist_ok=True)
  config_lib.atomic_write_text(rdir / "round.json", json.dumps(row, indent=2))
  summary = {"algo": NAME, "uses_real_data": False, "complete": True, "rounds": [row],
             "real_return_round0": real["return_mean"], "real_return_final": real["return_mean"],
             "real_success_round0": real["success_mean"], "real_success_final": real["success_mean"],
             "sim_return": sim["return_mean"], **held, **train_summary}
  config_lib.atomic_write_text(out / "results.json", json.dumps(summary, indent=2))
  log(f"done: sim return {sim['return_mean']:.2f} +- {sim['return_std']:.2f} ({len(sim['returns'])} episodes), "
      f"real return {real['return_mean']:.2f} +- {real['return_std']:.2f}, success {real['success_mean']:.2f} "
      f"({len(real['returns'])} episodes, the adaptation loop's evaluation seeds); no real data used")
  return summary
