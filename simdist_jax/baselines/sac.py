"""Soft actor-critic on SimDist's encoders: the core of the RLPD baseline (Ball et al. 2023) and of SGFT-SAC.

Pure pieces, one batch at a time; `update` is the only jitted entry point of training:
  * `Actor`: phi(o, c) -> MLP -> (mu, log sigma) of a tanh-squashed Gaussian in the normalized action box
    y in [-1, 1]^A; the env action is a = low + (y + 1) (high - low) / 2 (`to_env` / `from_env`).
  * `Critic`: K members (`nn.vmap`), each its own encoder + LayerNorm MLP on [phi(o, c), y] (RLPD's LayerNorm
    critics).
  * `update(...)`: G critic steps (one per batch of the stacked [G, B] batches, RLPD's update-to-data ratio G), each
    with a target that is the minimum over a random subset of `critic_subset` target members minus the entropy
    term (`losses.ensemble_subset_min`), Polyak-averaged targets, then ONE actor step and ONE temperature step on the
    last batch (RLPD's code updates the actor once per G critic steps).

Transition batches (`online.TRANSITION_KEYS`): {"proprio" [B, P], "extero" [B, E], "command" [B, C], "action" [B, A] (env units), "reward" [B],
"next_proprio", "next_extero", "next_command", "not_done" [B] (0 only at a true termination, never at a time
limit)}, raw units; observations are z-scored inside with a fixed scaler (the sim dataset's).
Log-probabilities are those of y in [-1, 1]^A (the constant Jacobian of the affine map to the env box is left out,
so `target_entropy` is in the normalized box; RLPD's default -A/2).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from simdist_jax.baselines import losses
from simdist_jax.baselines import networks
from simdist_jax.world_model import model as model_lib

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


@dataclasses.dataclass(frozen=True)
class SACConfig:
  """Typed hyperparameters (from a config section with these keys; RLPD's defaults in the `paper` preset)."""

  hidden: tuple[int, ...]
  num_critics: int
  critic_subset: int
  discount: float
  tau: float
  actor_lr: float
  critic_lr: float
  temperature_lr: float
  init_temperature: float
  target_entropy: float | None  # None: -A / 2
  backup_entropy: bool

  @classmethod
  def from_config(cls, c: Any) -> "SACConfig":
    """From a config section (ConfigDict or dict) holding the fields above."""
    te = c["target_entropy"]
    return cls(hidden=tuple(int(w) for w in c["hidden"]), num_critics=int(c["num_critics"]),
               critic_subset=int(c["critic_subset"]), discount=float(c["discount"]), tau=float(c["tau"]),
               actor_lr=float(c["actor_lr"]), critic_lr=float(c["critic_lr"]),
               temperature_lr=float(c["temperature_lr"]), init_temperature=float(c["init_temperature"]),
               target_entropy=None if te is None else float(te), backup_entropy=bool(c["backup_entropy"]))


class Actor(nn.Module):
  """`[P], [E], [C] -> (mu [A], log_std [A])` of the pre-tanh Gaussian."""

  spec: model_lib.ModelSpec
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, proprio: jax.Array, extero: jax.Array, command: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`[P], [E], [C] -> (mu [A], log_std [A])`, log_std clipped to [LOG_STD_MIN, LOG_STD_MAX]."""
    f = networks.Features(self.spec, name="features")(proprio, extero, command)
    for i, w in enumerate(self.hidden):
      f = nn.gelu(nn.Dense(w, name=f"dense_{i}")(f))
    mu = nn.Dense(self.spec.action, name="mu")(f)
    log_std = nn.Dense(self.spec.action, name="log_std")(f)
    return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class _CriticMember(nn.Module):
  spec: model_lib.ModelSpec
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, proprio: jax.Array, extero: jax.Array, command: jax.Array, y: jax.Array) -> jax.Array:
    x = jnp.concatenate([networks.Features(self.spec, name="features")(proprio, extero, command), y])
    for i, w in enumerate(self.hidden):
      x = nn.gelu(nn.LayerNorm(name=f"ln_{i}")(nn.Dense(w, name=f"dense_{i}")(x)))
    return nn.Dense(1, name="q")(x)[0]


class Critic(nn.Module):
  """`[P], [E], [C], y [A] -> [K]`: K independently initialized members."""

  spec: model_lib.ModelSpec
  hidden: Sequence[int]
  num: int

  @nn.compact
  def __call__(self, proprio, extero, command, y) -> jax.Array:
    """`[P], [E], [C], [A] -> [K]` member values."""
    ens = nn.vmap(_CriticMember, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
                  out_axes=0, axis_size=self.num)
    return ens(self.spec, self.hidden, name="members")(proprio, extero, command, y)


class Nets(NamedTuple):
  """The static half of the agent (hashable: a jit static argument)."""

  actor: Actor
  critic: Critic
  actor_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  temp_tx: optax.GradientTransformation
  cfg: SACConfig


class SACState(NamedTuple):
  """Everything that changes during training (a pytree)."""

  actor: Any
  critic: Any
  target_critic: Any
  log_alpha: jax.Array
  actor_opt: Any
  critic_opt: Any
  temp_opt: Any
  steps: jax.Array


def make_nets(spec: model_lib.ModelSpec, cfg: SACConfig) -> Nets:
  """Modules and optimizers (Adam, as RLPD) for `spec`'s encoder and `cfg`."""
  return Nets(Actor(spec, cfg.hidden), Critic(spec, cfg.hidden, cfg.num_critics), optax.adam(cfg.actor_lr),
              optax.adam(cfg.critic_lr), optax.adam(cfg.temperature_lr), cfg)


def init_state(nets: Nets, key: jax.Array, actor_params: Any = None) -> SACState:
  """Fresh agent (or with the given actor parameters, e.g. from BC); targets start equal to the critics."""
  s = nets.actor.spec
  p, e, c, y = jnp.zeros(s.proprio), jnp.zeros(s.extero), jnp.zeros(s.command), jnp.zeros(s.action)
  k_a, k_c = jax.random.split(key)
  actor = nets.actor.init(k_a, p, e, c)["params"] if actor_params is None else actor_params
  critic = nets.critic.init(k_c, p, e, c, y)["params"]
  log_alpha = jnp.log(jnp.asarray(nets.cfg.init_temperature, jnp.float32))
  return SACState(actor, critic, critic, log_alpha, nets.actor_tx.init(actor), nets.critic_tx.init(critic),
                  nets.temp_tx.init(log_alpha), jnp.zeros((), jnp.int32))


def target_entropy(nets: Nets) -> float:
  """The configured entropy target, or RLPD's -A / 2."""
  te = nets.cfg.target_entropy
  return -0.5 * nets.actor.spec.action if te is None else te


def to_env(y: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
  """Normalized box [-1, 1]^A -> env actions."""
  return low + (y + 1.0) * 0.5 * (high - low)


def from_env(a: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
  """Env actions -> the normalized box (clipped into it)."""
  return jnp.clip(2.0 * (a - low) / (high - low) - 1.0, -1.0, 1.0)


def tanh_gaussian_sample(mu: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(y = tanh(mu + sigma eps) [..., A], log pi(y) [...]) with the tanh change of variables in its stable form
  log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))."""
  u = mu + jnp.exp(log_std) * jax.random.normal(key, mu.shape)
  log_n = -0.5 * (((u - mu) / jnp.exp(log_std)) ** 2 + 2.0 * log_std + jnp.log(2.0 * jnp.pi))
  log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
  return jnp.tanh(u), jnp.sum(log_n - log_det, axis=-1)


def _obs(scaler: Any, batch: dict, prefix: str = "") -> tuple[jax.Array, jax.Array, jax.Array]:
  return tuple(model_lib.scale(scaler, k, batch[prefix + k]) for k in ("proprio", "extero", "command"))


def _policy(nets: Nets, params: Any, obs: tuple, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  mu, log_std = jax.vmap(nets.actor.apply, in_axes=(None, 0, 0, 0))({"params": params}, *obs)
  return tanh_gaussian_sample(mu, log_std, key)


def _q(nets: Nets, params: Any, obs: tuple, y: jax.Array) -> jax.Array:
  """[K, B] member values."""
  return jax.vmap(nets.critic.apply, in_axes=(None, 0, 0, 0, 0), out_axes=1)({"params": params}, *obs, y)


def critic_loss(nets: Nets, critic: Any, state: SACState, scaler: Any, batch: dict, low, high, key: jax.Array
                ) -> tuple[jax.Array, dict]:
  """Mean over members and batch of (Q_k(s, a) - y)^2, y = r + gamma (1 - d) (min over a random target subset of
  Q'(s', a') - alpha log pi(a'|s') [backup_entropy]), a' ~ pi(s')."""
  cfg = nets.cfg
  k_pi, k_sub = jax.random.split(key)
  nxt = _obs(scaler, batch, "next_")
  y_next, logp_next = _policy(nets, state.actor, nxt, k_pi)
  q_next = losses.ensemble_subset_min(_q(nets, state.target_critic, nxt, y_next), k_sub, cfg.critic_subset)
  if cfg.backup_entropy:
    q_next = q_next - jnp.exp(state.log_alpha) * logp_next
  target = jax.lax.stop_gradient(losses.td_target(batch["reward"], cfg.discount, batch["not_done"], q_next))
  q = _q(nets, critic, _obs(scaler, batch), from_env(batch["action"], low, high))
  loss = jnp.mean((q - target[None]) ** 2)
  return loss, {"critic/loss": loss, "critic/q_mean": jnp.mean(q), "critic/target_mean": jnp.mean(target)}


def actor_loss(nets: Nets, actor: Any, state: SACState, scaler: Any, batch: dict, key: jax.Array
               ) -> tuple[jax.Array, dict]:
  """E[alpha log pi(a|s) - mean_k Q_k(s, a)], a ~ pi(s) (RLPD averages the members for the actor)."""
  obs = _obs(scaler, batch)
  y, logp = _policy(nets, actor, obs, key)
  q = _q(nets, state.critic, obs, y).mean(0)
  loss = jnp.mean(jnp.exp(state.log_alpha) * logp - q)
  return loss, {"actor/loss": loss, "actor/entropy": -jnp.mean(logp), "actor/log_prob": logp}


@functools.partial(jax.jit, static_argnums=0)
def update(nets: Nets, state: SACState, scaler: Any, batches: dict, low: jax.Array, high: jax.Array,
           key: jax.Array) -> tuple[SACState, dict]:
  """G critic steps over `batches` ([G, B, ...] transitions), then one actor and one temperature step on the
  last batch. Returns the new state and the last step's metrics."""
  g = batches["reward"].shape[0]
  keys = jax.random.split(key, g + 1)

  def critic_step(st: SACState, xs):
    batch, k = xs
    (_, m), grads = jax.value_and_grad(critic_loss, argnums=1, has_aux=True)(nets, st.critic, st, scaler, batch,
                                                                            low, high, k)
    upd, opt = nets.critic_tx.update(grads, st.critic_opt, st.critic)
    critic = optax.apply_updates(st.critic, upd)
    st = st._replace(critic=critic, critic_opt=opt, target_critic=losses.polyak(st.target_critic, critic,
                                                                                nets.cfg.tau),
                     steps=st.steps + 1)
    return st, m

  state, cm = jax.lax.scan(critic_step, state, (batches, keys[:g]))
  last = jax.tree.map(lambda x: x[-1], batches)
  (_, am), grads = jax.value_and_grad(actor_loss, argnums=1, has_aux=True)(nets, state.actor, state, scaler, last,
                                                                          keys[g])
  upd, actor_opt = nets.actor_tx.update(grads, state.actor_opt, state.actor)
  actor = optax.apply_updates(state.actor, upd)
  t_loss, t_grad = jax.value_and_grad(losses.sac_temperature_loss)(state.log_alpha, am.pop("actor/log_prob"),
                                                                   target_entropy(nets))
  upd, temp_opt = nets.temp_tx.update(t_grad, state.temp_opt, state.log_alpha)
  state = state._replace(actor=actor, actor_opt=actor_opt, log_alpha=optax.apply_updates(state.log_alpha, upd),
                         temp_opt=temp_opt)
  metrics = {k: v[-1] for k, v in cm.items()}
  metrics.update(am)
  metrics.update({"temperature/loss": t_loss, "temperature/alpha": jnp.exp(state.log_alpha)})
  return state, metrics


@functools.partial(jax.jit, static_argnums=(0, 6))
def act(nets: Nets, actor: Any, scaler: Any, low: jax.Array, high: jax.Array, key: jax.Array, deterministic: bool,
        proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
  """One env action for one raw observation: tanh(mu) (deterministic) or a sample of the policy."""
  obs = tuple(model_lib.scale(scaler, k, x)[None] for k, x in
              (("proprio", proprio), ("extero", extero), ("command", command)))
  if deterministic:
    mu, _ = jax.vmap(nets.actor.apply, in_axes=(None, 0, 0, 0))({"params": actor}, *obs)
    y = jnp.tanh(mu)
  else:
    y, _ = _policy(nets, actor, obs, key)
  return to_env(y[0], low, high)


class SACController:
  """The actor as a host controller of `evaluation.run_episode`: deterministic (tanh of the mean) for evaluation,
  sampling (one key per episode, split per step) for collection. `act_fn` is the jitted policy (`act` here)."""

  act_fn = staticmethod(act)

  def __init__(self, nets: Nets, actor: Any, scaler: Any, low: Any, high: Any, deterministic: bool) -> None:
    s = nets.actor.spec
    self.nets, self.actor, self.scaler, self.deterministic = nets, actor, scaler, bool(deterministic)
    self.low = jnp.broadcast_to(jnp.asarray(low, jnp.float32), (s.action,))
    self.high = jnp.broadcast_to(jnp.asarray(high, jnp.float32), (s.action,))
    self._key = jax.random.PRNGKey(0)
    self._t = 0

  def reset(self, key: jax.Array) -> None:
    """Starts the episode's action-noise stream from `key`."""
    self._key, self._t = key, 0

  def replace_last_action(self, applied: Any) -> None:
    """The policy keeps no action history; `applied` is unused."""
    del applied

  def __call__(self, proprio: Any, extero: Any = None, command: Any = None) -> np.ndarray:
    """One env action for one raw observation (absent extero/command: empty)."""
    s = self.nets.actor.spec
    ext = jnp.zeros((s.extero,), jnp.float32) if extero is None else jnp.asarray(extero, jnp.float32).reshape(-1)
    cmd = jnp.zeros((s.command,), jnp.float32) if command is None else jnp.asarray(command, jnp.float32).reshape(-1)
    key = jax.random.fold_in(self._key, self._t)
    self._t += 1
    return np.asarray(self.act_fn(self.nets, self.actor, self.scaler, self.low, self.high, key, self.deterministic,
                                  jnp.asarray(proprio, jnp.float32), ext, cmd))


class SquashedMean(nn.Module):
  """The SAC actor seen by behaviour cloning (`bc.train`): the z-scored env action of tanh(mu), so that BC trains
  the actor's mean (parameters under "actor"; the log-std head is left at its initialization). Bounds and action
  statistics are static tuples."""

  spec: model_lib.ModelSpec
  hidden: Sequence[int]
  low: tuple[float, ...]
  high: tuple[float, ...]
  action_mean: tuple[float, ...]
  action_std: tuple[float, ...]

  @nn.compact
  def __call__(self, proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
    """`[P], [E], [C] -> [A]`: z-scored env action of tanh(mu)."""
    mu, _ = Actor(self.spec, self.hidden, name="actor")(proprio, extero, command)
    a = to_env(jnp.tanh(mu), jnp.asarray(self.low), jnp.asarray(self.high))
    return (a - jnp.asarray(self.action_mean)) / jnp.asarray(self.action_std)


def squashed_mean_head(spec: model_lib.ModelSpec, hidden: Sequence[int], low: jax.Array, high: jax.Array,
                       scaler: Any) -> SquashedMean:
  """`SquashedMean` with the bounds and the action statistics of `scaler` as static tuples."""
  a = spec.action
  tup = lambda x: tuple(float(v) for v in np.broadcast_to(np.asarray(x, np.float32), (a,)))  # noqa: E731
  return SquashedMean(spec, tuple(hidden), tup(low), tup(high), tup(scaler["action"]["mean"]),
                      tup(scaler["action"]["std"]))
