"""IQL offline-to-online (Kostrikov et al. 2021) under the adaptation loop's real-data budget.

As the paper runs it (§5): SimDist's encoders with an MLP policy, the actor's mean initialized by single-step BC of
the clean expert, then IQL's value pretrained in sim: `offline_steps` IQL updates on the sim dataset (round 0 is
that policy; its sim return against the expert's is IQL's sanity check). Each round then collects real episodes with
the exploring policy and makes `utd` IQL updates per new real transition on batches that draw `sim_share` from the
sim data and the rest from the real replay (the rounds are `online.run_rounds`'s).

One IQL update (every step of the `lax.scan`; the three losses from the same parameters, one gradient of their sum,
where the official code updates V, then pi, then Q in sequence):
  V:  min over V of E[L2^tau(min_k Q'_k(s, a) - V(s))]          (`losses.expectile_loss`, expectile tau)
  pi: max E[exp(beta (min_k Q'_k(s, a) - V(s))) log pi(a | s)]  (`losses.awr_weights`, clipped at 100)
  Q:  min E[(Q_k(s, a) - r - gamma (1 - d) V(s'))^2]             (both members), then Q' <- Polyak(Q', Q, tau)
The policy is IQL's Gaussian with a tanh on its mean (not a squashed sample), so the log-likelihood of the
dataset's actions, which sit on the bounds when the expert saturates, stays finite; it acts with the mean
(evaluation) or a clipped sample (collection). Log-probabilities are in the normalized action box [-1, 1]^A.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from simdist_jax.baselines import bc
from simdist_jax.baselines import losses
from simdist_jax.baselines import networks
from simdist_jax.baselines import online
from simdist_jax.baselines import sac
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import modules

NAME = "iql"


@dataclasses.dataclass(frozen=True)
class IQLConfig:
  """The `baselines.iql` section as a typed record."""

  hidden: tuple[int, ...]
  discount: float
  tau: float
  expectile: float
  temperature: float
  lr: float
  offline_steps: int
  utd: int
  batch_size: int
  sim_share: float
  update_chunk: int
  bc_init: bool

  @classmethod
  def from_config(cls, c: Any) -> "IQLConfig":
    """From `cfg.baselines.iql`."""
    return cls(hidden=tuple(int(w) for w in c.hidden), discount=float(c.discount), tau=float(c.tau),
               expectile=float(c.expectile), temperature=float(c.temperature), lr=float(c.lr),
               offline_steps=int(c.offline_steps), utd=int(c.utd), batch_size=int(c.batch_size),
               sim_share=float(c.sim_share), update_chunk=int(c.update_chunk), bc_init=bool(c.bc_init))


class Value(nn.Module):
  """V(o, c): `Features` + GELU MLP. `[P], [E], [C] -> []`."""

  spec: model_lib.ModelSpec
  hidden: tuple[int, ...]

  @nn.compact
  def __call__(self, proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
    """`[P], [E], [C] -> []`."""
    f = networks.Features(self.spec, name="features")(proprio, extero, command)
    return modules.MLP(self.hidden, 1, name="mlp")(f)[0]


class Nets(NamedTuple):
  """The static half of the agent (a jit static argument)."""

  actor: sac.Actor
  critic: sac.Critic
  value: Value
  tx: optax.GradientTransformation
  cfg: IQLConfig


class IQLState(NamedTuple):
  """Everything that changes during training (a pytree)."""

  actor: Any
  critic: Any
  target_critic: Any
  value: Any
  actor_opt: Any
  critic_opt: Any
  value_opt: Any
  steps: jax.Array


def make_nets(spec: model_lib.ModelSpec, cfg: IQLConfig) -> Nets:
  """Actor, 2 critics, value; one Adam (IQL: 3e-4 for all three) applied to each separately."""
  return Nets(sac.Actor(spec, cfg.hidden), sac.Critic(spec, cfg.hidden, 2), Value(spec, cfg.hidden),
              optax.adam(cfg.lr), cfg)


def init_state(nets: Nets, key: jax.Array, actor_params: Any = None) -> IQLState:
  """Fresh networks (or the given actor); the target critic starts equal to the critic."""
  s = nets.actor.spec
  p, e, c, y = jnp.zeros(s.proprio), jnp.zeros(s.extero), jnp.zeros(s.command), jnp.zeros(s.action)
  k_a, k_c, k_v = jax.random.split(key, 3)
  actor = nets.actor.init(k_a, p, e, c)["params"] if actor_params is None else actor_params
  critic = nets.critic.init(k_c, p, e, c, y)["params"]
  value = nets.value.init(k_v, p, e, c)["params"]
  return IQLState(actor, critic, critic, value, nets.tx.init(actor), nets.tx.init(critic), nets.tx.init(value),
                  jnp.zeros((), jnp.int32))


def gaussian_log_prob(y: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """The Gaussian log-density log N(y; mean, diag(exp(log_std)^2)), summed over the last axis."""
  return jnp.sum(-0.5 * ((y - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def _vmapped(module: nn.Module, params: Any, *xs: jax.Array) -> Any:
  return jax.vmap(module.apply, in_axes=(None,) + (0,) * len(xs))({"params": params}, *xs)


def iql_losses(nets: Nets, params: tuple, state: IQLState, scaler: Any, batch: dict, low, high
               ) -> tuple[jax.Array, dict]:
  """Sum of the value, actor and critic losses of one batch (their parameters are disjoint, so one gradient of the
  sum gives each its own; targets are stop-gradient), and their metrics."""
  cfg = nets.cfg
  actor, critic, value = params
  obs = tuple(model_lib.scale(scaler, k, batch[k]) for k in ("proprio", "extero", "command"))
  nxt = tuple(model_lib.scale(scaler, k, batch["next_" + k]) for k in ("proprio", "extero", "command"))
  y = sac.from_env(batch["action"], low, high)
  q_t = jax.lax.stop_gradient(
      jax.vmap(nets.critic.apply, in_axes=(None, 0, 0, 0, 0), out_axes=1)({"params": state.target_critic}, *obs, y)
      .min(0))
  v = _vmapped(nets.value, value, *obs)
  v_loss = jnp.mean(losses.expectile_loss(q_t - v, cfg.expectile))
  adv = q_t - jax.lax.stop_gradient(v)
  w = losses.awr_weights(adv, cfg.temperature)
  mu, log_std = _vmapped(nets.actor, actor, *obs)
  a_loss = -jnp.mean(w * gaussian_log_prob(y, jnp.tanh(mu), log_std))
  v_next = jax.lax.stop_gradient(_vmapped(nets.value, state.value, *nxt))
  target = losses.td_target(batch["reward"], cfg.discount, batch["not_done"], v_next)
  q = jax.vmap(nets.critic.apply, in_axes=(None, 0, 0, 0, 0), out_axes=1)({"params": critic}, *obs, y)
  q_loss = jnp.mean((q - target[None]) ** 2)
  return v_loss + a_loss + q_loss, {"value/loss": v_loss, "value/mean": jnp.mean(v), "actor/loss": a_loss,
                                     "actor/awr_weight_mean": jnp.mean(w), "critic/loss": q_loss,
                                     "critic/q_mean": jnp.mean(q)}


@functools.partial(jax.jit, static_argnums=0)
def update(nets: Nets, state: IQLState, scaler: Any, batches: dict, low: jax.Array, high: jax.Array
           ) -> tuple[IQLState, dict]:
  """One IQL update per batch of the stacked [G, B, ...] transitions (`lax.scan`); the last step's metrics."""
  def step(st: IQLState, batch):
    (_, m), (g_a, g_c, g_v) = jax.value_and_grad(iql_losses, argnums=1, has_aux=True)(
        nets, (st.actor, st.critic, st.value), st, scaler, batch, low, high)
    u_a, o_a = nets.tx.update(g_a, st.actor_opt, st.actor)
    u_c, o_c = nets.tx.update(g_c, st.critic_opt, st.critic)
    u_v, o_v = nets.tx.update(g_v, st.value_opt, st.value)
    critic = optax.apply_updates(st.critic, u_c)
    st = IQLState(optax.apply_updates(st.actor, u_a), critic, losses.polyak(st.target_critic, critic, nets.cfg.tau),
                  optax.apply_updates(st.value, u_v), o_a, o_c, o_v, st.steps + 1)
    return st, m
  state, m = jax.lax.scan(step, state, batches)
  return state, {k: v[-1] for k, v in m.items()}


@functools.partial(jax.jit, static_argnums=(0, 6))
def act(nets: Nets, actor: Any, scaler: Any, low: jax.Array, high: jax.Array, key: jax.Array, deterministic: bool,
        proprio: jax.Array, extero: jax.Array, command: jax.Array) -> jax.Array:
  """One env action: the policy's mean tanh(mu), or a sample of N(tanh(mu), sigma^2) clipped into the box."""
  mu, log_std = nets.actor.apply({"params": actor}, model_lib.scale(scaler, "proprio", proprio),
                                 model_lib.scale(scaler, "extero", extero), model_lib.scale(scaler, "command", command))
  y = jnp.tanh(mu)
  if not deterministic:
    y = jnp.clip(y + jnp.exp(log_std) * jax.random.normal(key, y.shape), -1.0, 1.0)
  return sac.to_env(y, low, high)


class IQLController(sac.SACController):
  """`SACController` with IQL's policy (`act` above)."""

  act_fn = staticmethod(act)


def train_updates(nets: Nets, state: IQLState, scaler: Any, replay: online.Replay | None, dataset: Any,
                  low: jax.Array, high: jax.Array, num_updates: int, seed: int, sim_share: float,
                  log: Callable[[str], None] = print, label: str = "") -> tuple[IQLState, dict]:
  """`num_updates` IQL updates in jitted chunks of `update_chunk` (replay None: sim batches only). Raises
  FloatingPointError when a loss becomes non-finite."""
  cfg = nets.cfg
  rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)

  def apply(st: IQLState, start: int, n: int) -> tuple[IQLState, dict]:
    batches = online.draw_batches(cfg.batch_size, sim_share, replay, dataset, rng, jax.random.fold_in(key, start), n)
    return update(nets, st, scaler, batches, low, high)

  def describe(m: dict) -> str:
    return (f"value {m['value/loss']:.4f} | critic {m['critic/loss']:.4f} | actor {m['actor/loss']:.3f} | q "
            f"{m['critic/q_mean']:.1f}")

  return online.chunked_updates(state, num_updates, cfg.update_chunk, apply, describe, log, label)


class IQLAgent:
  """IQL as `online.run_rounds` drives it."""

  name = NAME

  def __init__(self, cfg: Any, setup: online.Setup) -> None:
    self.cfg, self.setup = cfg, setup
    self.icfg = IQLConfig.from_config(cfg.baselines.iql)
    self.nets = make_nets(setup.spec, self.icfg)

  def template(self, key: jax.Array) -> IQLState:
    """A fresh state (the structure saved states are read into)."""
    return init_state(self.nets, jax.random.split(key)[1])

  def init(self, key: jax.Array, log: Callable[[str], None]) -> tuple[IQLState, dict]:
    """BC-initialized actor mean, then `offline_steps` IQL updates on the sim data only."""
    su, icfg, row = self.setup, self.icfg, {}
    key_bc, key_init = jax.random.split(key)
    actor = None
    if icfg.bc_init:
      bcfg = bc.BCConfig.from_config(self.cfg.baselines.bc)
      head = sac.squashed_mean_head(su.spec, icfg.hidden, su.low, su.high, su.scaler)
      params, summary = bc.train(head, bcfg, su.dataset, su.scaler, key_bc, log=lambda m: log(f"BC init: {m}"),
                                 log_every_s=float(self.cfg.run.log_every_s))
      row.update(summary)
      actor = params["actor"]
    state = init_state(self.nets, key_init, actor_params=actor)
    state, m = train_updates(self.nets, state, su.scaler, None, su.dataset, su.low, su.high, icfg.offline_steps,
                             seed=su.seed * 7919, sim_share=1.0, log=log, label="offline (sim data)")
    row.update({f"offline/{k}": v for k, v in m.items()})
    return state, row

  def controller(self, state: IQLState, deterministic: bool) -> IQLController:
    """The policy's mean (evaluation) or its clipped samples (collection)."""
    su = self.setup
    return IQLController(self.nets, state.actor, su.scaler, su.low, su.high, deterministic=deterministic)

  def update(self, state: IQLState, replay: online.Replay, num_new: int, seed: int, log: Callable[[str], None],
             label: str) -> tuple[IQLState, dict]:
    """`utd` IQL updates per new real transition on sim/real batches (`sim_share` from the sim data)."""
    su, icfg = self.setup, self.icfg
    log(f"{label}: {icfg.utd * num_new} updates ({icfg.sim_share:.0%} sim per batch)")
    return train_updates(self.nets, state, su.scaler, replay, su.dataset, su.low, su.high, icfg.utd * num_new,
                         seed=seed, sim_share=icfg.sim_share, log=log, label=label)


def is_complete(cfg: Any, workdir: Any) -> bool:
  """results.json exists and says complete."""
  del cfg
  return online.results_complete(workdir, NAME)


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Runs (or resumes) IQL's offline phase and rounds; writes `<workdir>/baselines/iql/results.json`."""
  setup = online.make_setup(cfg, workdir)
  key = jax.random.fold_in(jax.random.PRNGKey(setup.seed), 0x191)
  return online.run_rounds(cfg, workdir, IQLAgent(cfg, setup), key)
