"""Pretraining loss (paper Eq. 2) and dynamics-only finetuning loss (Eq. 3).

Dimension letters: B batch, L = H + T + 1 window length, H history, T horizon, P/E/A/C obs/action/command dims.

A window holds steps s..s+H+T; the current step is t = s + H (index H). Per step k: o_k, a_k applied at k,
r_k = r(s_k, a_k), value_k = V^e(s_k), flag_k. Hence (indices into the window):
- context: proprio[0:H], action[0:H] (history), proprio[H], extero[H] (current; noise-augmented when training);
- future actions a_t..a_{t+T-1} = action[H:H+T]; commands c_t..c_{t+T} = command[H:H+T+1];
- latent targets sg(E(clean o_{t+1..t+T})) = encode(proprio[H+1:], extero[H+1:]), deterministic, un-augmented;
- reward targets reward[H:H+T]; value targets value[H+1:H+T+1];
- BC targets action[H:H+T] with mask cumprod(flag[H:H+T]) (zero from the first non-expert step on).

Every term is a plain mean of squared errors in z-scored units (official `losses.py`); masked BC entries still count
in the mean's denominator, as in the official code. With a dynamics ensemble (`model.dynamics_ensemble` = K > 1,
not in the paper) the latent term is the mean over the K members of each member's own error (each is trained as a
standalone model on the same batch), and the heads read the members' mean prediction, which the planner scores.
"""

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from simdist_jax.world_model import model as model_lib

Batch = Mapping[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


class Window(NamedTuple):
  """One window split into model inputs and targets (raw units)."""

  proprio_hist: jax.Array  # [H, P]
  action_hist: jax.Array  # [H, A]
  proprio_t: jax.Array  # [P]
  extero_t: jax.Array  # [E]
  actions: jax.Array  # [T, A]   a_t..a_{t+T-1}
  commands: jax.Array  # [T+1, C] c_t..c_{t+T}
  proprio_next: jax.Array  # [T, P]  o^p_{t+1..t+T}
  extero_next: jax.Array  # [T, E]
  reward: jax.Array  # [T]      r_t..r_{t+T-1}
  value: jax.Array  # [T]      V_{t+1..t+T}
  expert_flag: jax.Array  # [T]  flags at t..t+T-1


def split_window(window: Batch, H: int, T: int) -> Window:
  """Single-example window dict (leading dim L = H + T + 1) -> `Window`."""
  L = H + T + 1
  for k in ("proprio", "extero", "action", "command", "reward", "value", "expert_flag"):
    if window[k].shape[0] != L:
      raise ValueError(f"window[{k!r}] has length {window[k].shape[0]}, expected L = H + T + 1 = {L}")
  return Window(
    proprio_hist=window["proprio"][:H],
    action_hist=window["action"][:H],
    proprio_t=window["proprio"][H],
    extero_t=window["extero"][H],
    actions=window["action"][H:H + T],
    commands=window["command"][H:H + T + 1],
    proprio_next=window["proprio"][H + 1:],
    extero_next=window["extero"][H + 1:],
    reward=window["reward"][H:H + T],
    value=window["value"][H + 1:H + T + 1],
    expert_flag=window["expert_flag"][H:H + T],
  )


def bc_mask(expert_flag: jax.Array) -> jax.Array:
  """`[T]` 0/1 flags -> `[T]` prefix mask cumprod(flags): 1 until (excluding) the first non-expert step."""
  return jnp.cumprod(expert_flag.astype(jnp.float32), axis=-1)


def masked_bc_loss(pred: jax.Array, target: jax.Array, expert_flag: jax.Array) -> jax.Array:
  """Mean over [T, A] of bc_mask[:, None] * (pred - target)^2 (masked entries count in the denominator)."""
  return jnp.mean(bc_mask(expert_flag)[:, None] * jnp.square(pred - target))


def _augment(key: jax.Array, w: Window, noise_p: jax.Array, noise_e: float) -> Window:
  """Adds zero-mean Gaussian noise (raw units) to the context observations only (not to targets)."""
  k_hist, k_p, k_e = jax.random.split(key, 3)
  return w._replace(
    proprio_hist=w.proprio_hist + noise_p * jax.random.normal(k_hist, w.proprio_hist.shape),
    proprio_t=w.proprio_t + noise_p * jax.random.normal(k_p, w.proprio_t.shape),
    extero_t=w.extero_t + noise_e * jax.random.normal(k_e, w.extero_t.shape),
  )


def _aug_noise(model_cfg: Any, P: int) -> tuple[jax.Array, float]:
  noise_p = jnp.asarray(tuple(model_cfg.aug_noise.proprio), jnp.float32)
  if noise_p.shape != (P,):
    raise ValueError(f"model.aug_noise.proprio has {noise_p.shape[0]} entries, expected P = {P}")
  return noise_p, float(model_cfg.aug_noise.extero)


def _scaled_context(wm: model_lib.WorldModel, params: Any, sc: Any, w: Window) -> tuple[jax.Array, jax.Array]:
  s = model_lib.scale
  return wm.apply(params, "context", s(sc, "proprio", w.proprio_hist), s(sc, "action", w.action_hist),
                  s(sc, "proprio", w.proprio_t), s(sc, "extero", w.extero_t))


def _latent_targets(wm: model_lib.WorldModel, params: Any, sc: Any, w: Window) -> jax.Array:
  s = model_lib.scale
  enc = lambda p, e: wm.apply(params, "encode", s(sc, "proprio", p), s(sc, "extero", e))  # noqa: E731
  return jax.lax.stop_gradient(jax.vmap(enc)(w.proprio_next, w.extero_next))


def _mean_metrics(prefix: str, terms: dict[str, jax.Array], total: jax.Array) -> dict[str, jax.Array]:
  out = {f"{prefix}/loss": total}
  out.update({f"{prefix}/loss/{k}": v for k, v in terms.items()})
  return out


def make_pretrain_loss(wm: model_lib.WorldModel, model_cfg: Any) -> LossFn:
  """Returns `loss(params, scaler, batch, key, train=True, prefix="train") -> (loss, metrics)` (Eq. 2).

  `batch` is the window-sampler dict with leading dims [B, L]. `train` enables dropout and input noise.
  """
  H, T, P = wm.spec.history, wm.spec.horizon, wm.spec.proprio
  w_cfg = model_cfg.loss_weights
  weights = {k: float(w_cfg[k]) for k in ("latent", "reward", "value", "action")}
  noise_p, noise_e = _aug_noise(model_cfg, P)
  heads_sg = bool(model_cfg.heads_stop_gradient)

  def per_example(params: Any, sc: Any, window: Batch, key: jax.Array, train: bool) -> dict[str, jax.Array]:
    s = model_lib.scale
    w = split_window(window, H, T)
    k_aug, k_dyn, k_ret, k_pi = jax.random.split(key, 4)
    z_tgt = _latent_targets(wm, params, sc, w)  # clean targets
    w_in = _augment(k_aug, w, noise_p, noise_e) if train else w
    tokens, z = _scaled_context(wm, params, sc, w_in)
    a_s, c_s = s(sc, "action", w.actions), s(sc, "command", w.commands)
    z_members = wm.apply(params, "member_latents", tokens, z, a_s, train=train, rng=k_dyn)  # [K, T, Z]
    z_hat = jnp.mean(z_members, axis=0)  # what the planner scores (K = 1: the one decoder's prediction)
    z_hat_heads = jax.lax.stop_gradient(z_hat) if heads_sg else z_hat
    r_hat, v_hat = wm.apply(params, "returns", z, z_hat_heads, a_s, c_s, train=train, rng=k_ret)
    a_hat = wm.apply(params, "policy_chunk", tokens, c_s, train=train, rng=k_pi)
    return {
      "latent": jnp.mean(jnp.square(z_members - z_tgt[None])),  # each member fits the targets on its own
      "reward": jnp.mean(jnp.square(r_hat - s(sc, "reward", w.reward))),
      "value": jnp.mean(jnp.square(v_hat - s(sc, "value", w.value))),
      "action": masked_bc_loss(a_hat, a_s, w.expert_flag),
      "bc_mask_frac": jnp.mean(bc_mask(w.expert_flag)),
    }

  def loss_fn(params: Any, scaler: Any, batch: Batch, key: jax.Array, train: bool = True,
              prefix: str = "train") -> tuple[jax.Array, dict[str, jax.Array]]:
    B = batch["proprio"].shape[0]
    keys = jax.random.split(key, B)
    terms = jax.vmap(per_example, in_axes=(None, None, 0, 0, None))(params, scaler, batch, keys, train)
    terms = {k: jnp.mean(v) for k, v in terms.items()}
    total = sum(weights[k] * terms[k] for k in weights)
    metrics = _mean_metrics(prefix, {k: terms[k] for k in weights}, total)
    metrics[f"{prefix}/bc_mask_frac"] = terms["bc_mask_frac"]
    return total, metrics

  return loss_fn


def make_finetune_loss(wm: model_lib.WorldModel, model_cfg: Any) -> LossFn:
  """Returns `loss(trainable, frozen, scaler, batch, key, train=True, prefix="finetune") -> (loss, metrics)`.

  Eq. 3: latent consistency, ||z_hat_{t+1..t+T} - sg(E(o_{t+1..t+T}))||^2 with the encoder taken from the
  merged params (frozen in the default `dynamics` mode). Differentiate argument 0 (`trainable`) only. Reward, value
  and BC heads are not trained (the official code computes them with weight 0).

  With `model.finetune.head_consistency` = lambda > 0 (not in the paper; 0 = Eq. 3 exactly) the loss adds
  lambda * mean over the T steps of (R(z_hat) - sg R(E(o)))^2 + (V(z_hat) - sg V(E(o)))^2: the frozen reward and
  value heads (deterministic, scaled units) on the predicted latents against the same heads on the encoded true
  future observations. Its targets need no reward or value label (only the real observations), and the gradient
  still reaches only the trainable tree: the dynamics is pulled towards the latent errors the planner's returns
  are sensitive to.
  """
  H, T, P = wm.spec.history, wm.spec.horizon, wm.spec.proprio
  noise_p, noise_e = _aug_noise(model_cfg, P)
  augment = bool(model_cfg.finetune.augment)
  dropout = bool(model_cfg.finetune.dropout)
  head_w = float(model_cfg.finetune.get("head_consistency", 0.0))

  def per_example(params: Any, sc: Any, window: Batch, key: jax.Array, train: bool) -> dict[str, jax.Array]:
    w = split_window(window, H, T)
    k_aug, k_dyn = jax.random.split(key)
    z_tgt = _latent_targets(wm, params, sc, w)
    w_in = _augment(k_aug, w, noise_p, noise_e) if (train and augment) else w
    tokens, z = _scaled_context(wm, params, sc, w_in)
    a_s = model_lib.scale(sc, "action", w.actions)
    z_members = wm.apply(params, "member_latents", tokens, z, a_s, train=train and dropout, rng=k_dyn)
    z_hat = jnp.mean(z_members, axis=0)
    out = {"latent": jnp.mean(jnp.square(z_members - z_tgt[None]))}
    if head_w > 0.0:
      c_s = model_lib.scale(sc, "command", w.commands)
      r_hat, v_hat = wm.apply(params, "returns", z, z_hat, a_s, c_s, train=False)
      r_tgt, v_tgt = jax.lax.stop_gradient(wm.apply(params, "returns", z, z_tgt, a_s, c_s, train=False))
      out["heads"] = jnp.mean(jnp.square(r_hat - r_tgt)) + jnp.mean(jnp.square(v_hat - v_tgt))
    return out

  def loss_fn(trainable: Any, frozen: Any, scaler: Any, batch: Batch, key: jax.Array, train: bool = True,
              prefix: str = "finetune") -> tuple[jax.Array, dict[str, jax.Array]]:
    params = {**frozen, **trainable}
    B = batch["proprio"].shape[0]
    keys = jax.random.split(key, B)
    terms = jax.vmap(per_example, in_axes=(None, None, 0, 0, None))(params, scaler, batch, keys, train)
    terms = {k: jnp.mean(v) for k, v in terms.items()}
    total = terms["latent"] + (head_w * terms["heads"] if head_w > 0.0 else 0.0)
    return total, _mean_metrics(prefix, terms, total)

  return loss_fn
