"""PPO finetuning of the privileged expert in the real world (issue 20: "the usual sim-to-real practice; on-policy,
so it gets the same number of real steps").

Round 0 is the trained expert itself (`<workdir>/expert/`: the final ladder actor, the critic and brax's observation
normalizer, which stays frozen from then on). Each round j collects `adapt.episodes_per_round` real episodes with the
stochastic expert policy (brax's tanh-squashed Gaussian; on-policy, no extra exploration noise) on the adaptation
loop's collection seeds, then makes `num_updates_per_batch` epochs of `num_minibatches` PPO minibatch steps on those
episodes only, and evaluates the deterministic actor (tanh of its mean, the expert's own deterministic policy) on
the loop's evaluation seeds. The rounds, their files under `<workdir>/baselines/ppo/`, the paired CIs and resuming
are `online.run_rounds`'s.

Observations. Actor and critic read the twin's `privileged_state` (the noise-free state and the true domain
parameters, normalized over the sim ranges), exactly what the expert reads in its real-world evaluation
(`experts.evaluate.evaluate_policy_real`). A real robot would not have it: this baseline knows the real domain
parameters the others must infer from their observations (an advantage, stated in docs/baselines.md).

The update, per round, on the N transitions of its episodes (one lax.scan over epochs, each over minibatches):
  * GAE(lambda) once with the collecting critic (Schulman et al. 2016; as rsl_rl / CleanRL, brax recomputes it per
    minibatch): delta_t = r_t + gamma * not_done_t * V(s_{t+1}) - V(s_t) and A_t = delta_t + gamma * lambda *
    (1 - last_t) * A_{t+1}. A failure (`not_done` 0) does not bootstrap; the time limit (`last` 1, `not_done` 1)
    bootstraps from the true next state V(s_T), which the twin observes (brax, whose auto-reset loses s_T, masks
    those steps instead). Value target: A_t + V(s_t). Rewards are multiplied by the expert's `reward_scaling`
    (the critic's scale).
  * Per minibatch, brax's loss (`brax.training.agents.ppo.losses.compute_ppo_loss`): advantages normalized within
    the minibatch (brax's default), clipped surrogate min(rho A, clip(rho, 1 - eps, 1 + eps) A) with rho the
    probability ratio of the stored pre-tanh sample, value loss 0.5 * vf_coef * (V - target)^2 (clipped around
    the collecting values when `clipping_epsilon_value` > 0), entropy bonus (brax's one-sample estimate through
    the tanh), global-norm gradient clip, Adam over actor and critic together (its moments kept across rounds),
    and with ADAPTIVE_KL brax's learning-rate rule on KL(old || new).

Transitions carry the privileged states, the episode-end flag `last` and the pre-tanh sample `raw_action`
(`run_episode(on_step=...)` and `PPOController.transition_extras`), so the log-probabilities are exact even where
tanh saturates.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks

from simdist_jax import paths
from simdist_jax.baselines import online
from simdist_jax.envs.registry import make_task
from simdist_jax.experts import checkpoints as ckpt

NAME = "ppo"
# brax ppo.train's `learning_rate_schedule_min_lr` / `_max_lr` defaults: the adaptive-KL rule's bounds.
ADAPTIVE_KL_LR_BOUNDS = (1e-5, 1e-2)
# What the update reads of every real transition (beyond `online.TRANSITION_KEYS`'s reward and not_done).
EXTRA_KEYS = ("privileged_state", "next_privileged_state", "raw_action", "last")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """The `baselines.ppo` section as a typed record, plus the expert's `reward_scaling` (the critic's scale)."""

  learning_rate: float
  learning_rate_schedule: str  # NONE | ADAPTIVE_KL
  desired_kl: float
  entropy_cost: float
  discounting: float
  gae_lambda: float
  clipping_epsilon: float
  clipping_epsilon_value: float  # 0: unclipped value loss
  vf_loss_coefficient: float
  max_grad_norm: float           # 0: no clip
  num_minibatches: int
  num_updates_per_batch: int     # epochs over each round's episodes
  normalize_advantage: bool
  reward_scaling: float = 1.0

  @classmethod
  def from_config(cls, c: Any, expert_cfg: Any = None) -> "PPOConfig":
    """From `cfg.baselines.ppo` (a ConfigDict or dict) and `cfg.expert` (its `reward_scaling`; None: 1)."""
    return cls(learning_rate=float(c["learning_rate"]), learning_rate_schedule=str(c["learning_rate_schedule"]),
               desired_kl=float(c["desired_kl"]), entropy_cost=float(c["entropy_cost"]),
               discounting=float(c["discounting"]), gae_lambda=float(c["gae_lambda"]),
               clipping_epsilon=float(c["clipping_epsilon"]),
               clipping_epsilon_value=float(c["clipping_epsilon_value"]),
               vf_loss_coefficient=float(c["vf_loss_coefficient"]), max_grad_norm=float(c["max_grad_norm"]),
               num_minibatches=int(c["num_minibatches"]), num_updates_per_batch=int(c["num_updates_per_batch"]),
               normalize_advantage=bool(c["normalize_advantage"]),
               reward_scaling=1.0 if expert_cfg is None else float(expert_cfg["reward_scaling"]))


class Nets(NamedTuple):
  """The static half of the agent (hashable: a jit static argument): the expert's architecture and PPO's settings."""

  obs_size: int
  action_size: int
  policy_hidden: tuple[int, ...]
  value_hidden: tuple[int, ...]
  activation: str
  distribution_type: str
  cfg: PPOConfig

  def meta(self) -> dict:
    """The architecture part of an expert checkpoint's `meta.json` (for the checkpoint loaders' apply functions)."""
    return {"format": ckpt.FORMAT_VERSION, "obs_key": ckpt.OBS_KEY, "obs_size": self.obs_size,
            "action_size": self.action_size, "policy_hidden": list(self.policy_hidden),
            "value_hidden": list(self.value_hidden), "activation": self.activation,
            "distribution_type": self.distribution_type, "normalize_observations": True}


class PPOState(NamedTuple):
  """Everything the rounds carry (a pytree). `obs_mean` / `obs_std` are the expert's normalizer, never trained."""

  policy: Any
  value: Any
  opt: Any             # clip + Adam moments over {"policy", "value"}
  obs_mean: jax.Array  # [S]
  obs_std: jax.Array   # [S]
  lr: jax.Array        # the current learning rate (ADAPTIVE_KL changes it)
  steps: jax.Array     # minibatch steps so far


def make_nets(expert_cfg: Any, obs_size: int, action_size: int, cfg: PPOConfig) -> Nets:
  """`Nets` of the expert architecture in `expert_cfg` for S = `obs_size`, A = `action_size`."""
  return Nets(int(obs_size), int(action_size), tuple(int(h) for h in expert_cfg["policy_hidden"]),
              tuple(int(h) for h in expert_cfg["value_hidden"]), str(expert_cfg["activation"]),
              str(expert_cfg["distribution_type"]), cfg)


@functools.lru_cache(maxsize=None)
def brax_networks(nets: Nets) -> ppo_networks.PPONetworks:
  """The brax PPO networks on a flat [S] observation, as the checkpoint loaders build them."""
  return ckpt.make_networks(nets.obs_size, nets.action_size, nets.policy_hidden, nets.value_hidden, nets.activation,
                            nets.distribution_type)


def _tx(cfg: PPOConfig) -> optax.GradientTransformation:
  """Adam's direction (brax: optax.adam, after a global-norm clip); the learning rate is applied by the caller."""
  clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
  return optax.chain(*clip, optax.scale_by_adam())


def init_state(nets: Nets, policy: Any, value: Any, obs_mean: Any, obs_std: Any) -> PPOState:
  """A state from actor and critic parameters and the (frozen) normalizer; fresh Adam moments."""
  params = {"policy": policy, "value": value}
  return PPOState(policy, value, _tx(nets.cfg).init(params), jnp.asarray(obs_mean, jnp.float32),
                  jnp.asarray(obs_std, jnp.float32), jnp.asarray(nets.cfg.learning_rate, jnp.float32),
                  jnp.zeros((), jnp.int32))


def random_state(nets: Nets, key: jax.Array) -> PPOState:
  """Freshly initialized networks and an identity normalizer (tests; the structure saved states are read into)."""
  bn = brax_networks(nets)
  k_p, k_v = jax.random.split(key)
  return init_state(nets, bn.policy_network.init(k_p), bn.value_network.init(k_v), jnp.zeros(nets.obs_size),
                    jnp.ones(nets.obs_size))


def _stats(state: PPOState) -> running_statistics.NestedMeanStd:
  return running_statistics.NestedMeanStd(mean=state.obs_mean, std=state.obs_std)


def gae(reward: jax.Array, value: jax.Array, next_value: jax.Array, not_done: jax.Array, last: jax.Array,
        discount: float, lam: float) -> tuple[jax.Array, jax.Array]:
  """GAE(lambda) over [N] transitions of consecutive episodes -> (advantages [N], value targets [N]).

  delta_t = r_t + gamma not_done_t V(s_{t+1}) - V(s_t); A_t = delta_t + gamma lambda (1 - last_t) A_{t+1}: a
  failure (not_done 0) stops the bootstrap, the end of an episode (last 1, a failure or the time limit) stops the
  recursion, so a truncated episode bootstraps from V of its true last state. Targets A_t + V(s_t)."""
  delta = reward + discount * not_done * next_value - value

  def back(acc, xs):
    d, cont = xs
    acc = d + discount * lam * cont * acc
    return acc, acc

  _, adv = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, 1.0 - last), reverse=True)
  return adv, adv + value


def clipped_surrogate(ratio: jax.Array, advantage: jax.Array, epsilon: float) -> jax.Array:
  """PPO's per-sample objective (to maximize): min(rho A, clip(rho, 1 - eps, 1 + eps) A)."""
  return jnp.minimum(ratio * advantage, jnp.clip(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantage)


def adaptive_kl_lr(lr: jax.Array, kl: jax.Array, desired_kl: float) -> jax.Array:
  """The ADAPTIVE_KL rule of brax (`ppo.optimizer.adaptive_kl_learning_rate`): / 1.5 above 2 x the target KL, x 1.5
  below half of it (KL > 0), within `ADAPTIVE_KL_LR_BOUNDS`."""
  lo, hi = ADAPTIVE_KL_LR_BOUNDS
  lr = jnp.where(kl > 2.0 * desired_kl, jnp.maximum(lo, lr / 1.5), lr)
  return jnp.where((kl < desired_kl / 2.0) & (kl > 0.0), jnp.minimum(hi, lr * 1.5), lr)


@functools.partial(jax.jit, static_argnums=0)
def prepare(nets: Nets, state: PPOState, data: dict) -> dict:
  """The round's transitions ({"privileged_state", "next_privileged_state", "raw_action", "reward", "not_done",
  "last"}, [N, ...]) -> the update's batch: the collecting policy's log-probabilities and distribution parameters,
  its critic's values, GAE advantages and value targets."""
  bn, cfg, stats = brax_networks(nets), nets.cfg, _stats(state)
  dist = bn.parametric_action_distribution
  logits = bn.policy_network.apply(stats, state.policy, data["privileged_state"])
  value = bn.value_network.apply(stats, state.value, data["privileged_state"])
  next_value = bn.value_network.apply(stats, state.value, data["next_privileged_state"])
  adv, target = gae(data["reward"] * cfg.reward_scaling, value, next_value, data["not_done"], data["last"],
                    cfg.discounting, cfg.gae_lambda)
  return {"obs": data["privileged_state"], "raw_action": data["raw_action"],
          "old_log_prob": dist.log_prob(logits, data["raw_action"]), "old_logits": logits, "old_value": value,
          "advantage": adv, "target": target}


def ppo_loss(nets: Nets, params: dict, state: PPOState, mb: dict, key: jax.Array) -> tuple[jax.Array, dict]:
  """The brax PPO loss on one minibatch of `prepare`'s batch (module doc); (loss, metrics)."""
  bn, cfg, stats = brax_networks(nets), nets.cfg, _stats(state)
  dist = bn.parametric_action_distribution
  logits = bn.policy_network.apply(stats, params["policy"], mb["obs"])
  ratio = jnp.exp(dist.log_prob(logits, mb["raw_action"]) - mb["old_log_prob"])
  adv = mb["advantage"]
  if cfg.normalize_advantage:
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  policy_loss = -jnp.mean(clipped_surrogate(ratio, adv, cfg.clipping_epsilon))
  v = bn.value_network.apply(stats, params["value"], mb["obs"])
  v_err = (mb["target"] - v) ** 2
  if cfg.clipping_epsilon_value > 0:
    c = cfg.clipping_epsilon_value
    v_clipped = mb["old_value"] + jnp.clip(v - mb["old_value"], -c, c)
    v_err = jnp.maximum(v_err, (mb["target"] - v_clipped) ** 2)
  value_loss = 0.5 * cfg.vf_loss_coefficient * jnp.mean(v_err)
  entropy = jnp.mean(dist.entropy(logits, key))
  loss = policy_loss + value_loss - cfg.entropy_cost * entropy
  kl = jnp.mean(dist.create_dist(logits).kl_divergence(dist.create_dist(mb["old_logits"])))  # KL(old || new)
  return loss, {"ppo/loss": loss, "ppo/policy_loss": policy_loss, "ppo/value_loss": value_loss,
                "ppo/entropy": entropy, "ppo/kl": kl,
                "ppo/clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > cfg.clipping_epsilon).astype(jnp.float32))}


@functools.partial(jax.jit, static_argnums=0)
def train_epochs(nets: Nets, state: PPOState, batch: dict, key: jax.Array) -> tuple[PPOState, dict]:
  """`num_updates_per_batch` epochs, each a fresh permutation of the N transitions cut into `num_minibatches`
  minibatches of N // num_minibatches (the remainder sits out that epoch). Returns the state and the metrics
  averaged over every minibatch step (`ppo/lr` the last learning rate)."""
  cfg = nets.cfg
  n = batch["advantage"].shape[0]
  m = cfg.num_minibatches
  b = n // m
  if b < 1:
    raise ValueError(f"{n} transitions cannot fill baselines.ppo.num_minibatches={m} minibatches")
  tx = _tx(cfg)

  def minibatch(carry, xs):
    params, opt, lr = carry
    idx, k = xs
    mb = jax.tree.map(lambda x: x[idx], batch)
    (_, met), grads = jax.value_and_grad(ppo_loss, argnums=1, has_aux=True)(nets, params, state, mb, k)
    if cfg.learning_rate_schedule == "ADAPTIVE_KL":
      lr = adaptive_kl_lr(lr, met["ppo/kl"], cfg.desired_kl)
    upd, opt = tx.update(grads, opt, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, upd)
    return (params, opt, lr), met

  def epoch(carry, k):
    k_perm, k_mb = jax.random.split(k)
    idx = jax.random.permutation(k_perm, n)[:m * b].reshape(m, b)
    return jax.lax.scan(minibatch, carry, (idx, jax.random.split(k_mb, m)))

  init = ({"policy": state.policy, "value": state.value}, state.opt, state.lr)
  (params, opt, lr), met = jax.lax.scan(epoch, init, jax.random.split(key, cfg.num_updates_per_batch))
  metrics = {k: jnp.mean(v) for k, v in met.items()}
  metrics["ppo/lr"] = lr
  state = state._replace(policy=params["policy"], value=params["value"], opt=opt, lr=lr,
                         steps=state.steps + cfg.num_updates_per_batch * m)
  return state, metrics


def update(nets: Nets, state: PPOState, data: dict, key: jax.Array) -> tuple[PPOState, dict]:
  """One round's PPO update on its transitions (`prepare`, then `train_epochs`). Metrics as floats, with the
  advantage statistics before normalization."""
  batch = prepare(nets, state, {k: jnp.asarray(v, jnp.float32) for k, v in data.items()})
  state, m = train_epochs(nets, state, batch, key)
  out = {k: float(v) for k, v in m.items()}
  out.update({"ppo/advantage_mean": float(jnp.mean(batch["advantage"])),
              "ppo/advantage_std": float(jnp.std(batch["advantage"])),
              "ppo/value_target_mean": float(jnp.mean(batch["target"]))})
  return state, out


@functools.partial(jax.jit, static_argnums=0)
def sample_action(nets: Nets, policy: Any, obs_mean: jax.Array, obs_std: jax.Array, obs: jax.Array,
                  key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(action [A], pre-squash sample [A]) of the stochastic policy at one privileged observation [S]."""
  bn = brax_networks(nets)
  dist = bn.parametric_action_distribution
  logits = bn.policy_network.apply(running_statistics.NestedMeanStd(mean=obs_mean, std=obs_std), policy, obs[None])
  raw = dist.sample_no_postprocessing(logits, key)
  return dist.postprocess(raw)[0], raw[0]


@functools.lru_cache(maxsize=None)
def deterministic_actor(nets: Nets) -> Callable[[dict, jax.Array], jax.Array]:
  """The expert loader's jitted deterministic actor (`checkpoints.actor_apply_fn`: the mode, tanh of the mean, on
  the normalized observation) for params {"obs_mean", "obs_std", "policy"}."""
  return jax.jit(ckpt.actor_apply_fn(nets.meta()))


class PPOController:
  """The actor on the twin's whole obs dict (`run_episode(..., full_obs=True)`): the deterministic expert policy
  (evaluation) or samples of it (collection: one key per episode, folded with the step; `transition_extras` hands
  the pre-squash sample to the transition)."""

  def __init__(self, nets: Nets, state: PPOState, deterministic: bool) -> None:
    self.nets, self.deterministic = nets, bool(deterministic)
    self.params = {"obs_mean": state.obs_mean, "obs_std": state.obs_std, "policy": state.policy}
    self._act = deterministic_actor(nets)
    self._key, self._t, self._raw = jax.random.PRNGKey(0), 0, None

  def reset(self, key: jax.Array) -> None:
    """Starts the episode's sampling stream from `key`."""
    self._key, self._t, self._raw = key, 0, None

  def replace_last_action(self, applied: Any) -> None:
    """The policy keeps no action history; `applied` is unused."""
    del applied

  def __call__(self, obs: dict) -> np.ndarray:
    """One action for the twin's obs dict (reads `privileged_state`)."""
    priv = jnp.asarray(obs["privileged_state"], jnp.float32)
    if self.deterministic:
      return np.asarray(self._act(self.params, priv), np.float32)
    key = jax.random.fold_in(self._key, self._t)
    self._t += 1
    a, raw = sample_action(self.nets, self.params["policy"], self.params["obs_mean"], self.params["obs_std"], priv,
                           key)
    self._raw = np.asarray(raw, np.float32)
    return np.asarray(a, np.float32)

  def transition_extras(self) -> dict:
    """{"raw_action": the last pre-squash sample} while sampling; {} for the deterministic policy."""
    return {} if self.deterministic or self._raw is None else {"raw_action": self._raw}


def load_expert(nets: Nets, cfg: Any, expert_dir: Any) -> tuple[PPOState, int]:
  """The final expert's actor, critic and normalizer as a fresh `PPOState`, and its PPO iteration. Raises
  CheckpointError when the checkpoints do not fit `cfg` or their normalizers differ."""
  actor, _ = ckpt.load_policy(expert_dir, -1, cfg)
  critic, _ = ckpt.load_critic(expert_dir, cfg)
  for k in ("obs_mean", "obs_std"):
    if not np.array_equal(np.asarray(actor[k]), np.asarray(critic[k])):
      raise ckpt.CheckpointError(f"the expert actor and critic in '{expert_dir}' have different observation "
                                 f"normalizers ({k}); they must come from the same PPO iteration")
  return (init_state(nets, actor["policy"], critic["value"], actor["obs_mean"], actor["obs_std"]),
          int(ckpt.list_ladder(expert_dir)[-1]))


class PPOAgent:
  """PPO finetuning of the expert as `online.run_rounds` drives it."""

  name = NAME
  full_obs = True
  extra_keys = EXTRA_KEYS

  def __init__(self, cfg: Any, workdir: Any) -> None:
    self.cfg, self.expert_dir = cfg, paths.expert_dir(workdir)
    dims = make_task(cfg).dims
    self.nets = make_nets(cfg.expert, dims["privileged"], dims["action"],
                          PPOConfig.from_config(cfg.baselines.ppo, cfg.expert))

  def template(self, key: jax.Array) -> PPOState:
    """A state of the right structure (saved states are read into it)."""
    return random_state(self.nets, key)

  def init(self, key: jax.Array, log: Callable[[str], None]) -> tuple[PPOState, dict]:
    """The trained expert: actor, critic, frozen normalizer; fresh Adam moments."""
    del key
    state, it = load_expert(self.nets, self.cfg, self.expert_dir)
    log(f"expert of PPO iteration {it} loaded from '{self.expert_dir}' (actor, critic, frozen observation "
        f"normalizer)")
    return state, {"ppo/expert_iteration": it}

  def controller(self, state: PPOState, deterministic: bool) -> PPOController:
    """The actor: the mode (evaluation) or samples (collection)."""
    return PPOController(self.nets, state, deterministic)

  def update(self, state: PPOState, replay: online.Replay, num_new: int, seed: int, log: Callable[[str], None],
             label: str) -> tuple[PPOState, dict]:
    """PPO on the round's `num_new` transitions only (the newest of the replay): on-policy."""
    arr = replay.arrays()
    data = {k: arr[k][-num_new:] for k in ("privileged_state", "next_privileged_state", "raw_action", "reward",
                                           "not_done", "last")}
    c = self.nets.cfg
    state, m = update(self.nets, state, data, jax.random.PRNGKey(seed))
    bad = [k for k, v in m.items() if not np.isfinite(v)]
    if bad:
      raise FloatingPointError(f"{label}: non-finite {bad} after the PPO update")
    log(f"{label}: {c.num_updates_per_batch} epochs x {c.num_minibatches} minibatches of "
        f"{num_new // c.num_minibatches} on {num_new} transitions | policy loss {m['ppo/policy_loss']:.3f} | value "
        f"loss {m['ppo/value_loss']:.3f} | kl {m['ppo/kl']:.4f} | clipped {m['ppo/clip_frac']:.2f} | lr "
        f"{m['ppo/lr']:.2g}")
    return state, m


def is_complete(cfg: Any, workdir: Any) -> bool:
  """results.json exists and says complete."""
  del cfg
  return online.results_complete(workdir, NAME)


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Runs (or resumes) the expert's PPO finetuning rounds; writes `<workdir>/baselines/ppo/results.json`."""
  key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.run.seed)), 0x9909)
  return online.run_rounds(cfg, workdir, PPOAgent(cfg, workdir), key)
