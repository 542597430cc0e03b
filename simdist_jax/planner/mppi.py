"""MPPI / CEM planner over a latent world model (paper §2.8, TD-MPC style).

One control step plans against a single example:
  * the caller computes the context once (`model.context(...)`), and `plan` broadcasts it to every candidate;
  * the policy-prior samples (`policy_chunk` + `prior_std` noise) are drawn once per control step (with
    `prior_mean_candidate` the first is the noise-free chunk);
  * `iterations` refinement rounds run in one `lax.scan`, and each round scores all N candidates with a single
    vmapped call of `predict_latents` + `predict_returns`;
  * each round keeps the top-K elites (`lax.top_k`) and weights them by exp(beta (J - max J)) (CEM: uniformly;
    `weighting="spread"` divides J - max J by the elites' return std),
    where J = R - kappa * mean_k ||a_k - pi_k||^2 is the predicted return R less an optional quadratic cost on
    the deviation from the policy head's chunk pi (`prior_cost` kappa; 0 = the paper: J = R);
  * after the last round the emitted plan and pi itself are scored once more; their difference is the predicted
    advantage of the plan (`planner/predicted_advantage`), and with `advantage_gate` pi is emitted instead unless
    that advantage is >= `gate_margin`.

Dimension letters: N candidates per iteration (Gaussian + prior), K elites, T model horizon (length of the
model's action chunk), h planning horizon (`cfg.horizon` <= T), A action, C command, Z latent.

`optimize` is the search itself for any scorer [N, h, A] -> [N]; `plan` scores with the world model. `plan` is pure: `cfg` and `model` are static (bind them with `functools.partial` and jit, or use
`make_plan_fn`); `variables` is a traced argument, so new (e.g. finetuned) params never recompile.
The world model is duck-typed: any object with `context`, `predict_latents`, `predict_returns` and
`policy_chunk` fields (see `simdist_jax.world_model.model.WorldModel`) works.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp

WARM_START_MODES = ("shift", "paper_code", "none", "policy")
SHIFT_FILLS = ("repeat", "zero")
TERMINAL_DISCOUNTS = ("T", "T+1", "none")
MODES = ("mppi", "cem")
WEIGHTINGS = ("absolute", "spread")
ENSEMBLE_SCORES = ("mean_latent", "mean_return")

Bound = float | tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
  """Static planner settings (hashable; a jit static argument).

  Build with `from_config(section, model_horizon=T)`; a bad field raises ValueError naming it, its value and the
  valid range.
  """

  num_samples: int = 450  # Gaussian samples per iteration.
  num_prior_samples: int = 22  # policy-prior samples per control step (reused in every iteration).
  iterations: int = 8  # refinement rounds per control step.
  num_elites: int = 64  # K, top-K candidates kept per round.
  inverse_temperature: float = 0.25  # beta in w = exp(beta (R - max R)); the official "temperature".
  init_std: float = 2.0  # std of the Gaussian proposal at the start of every control step.
  min_std: float = 0.05  # std floor after each update.
  prior_std: float = 0.05  # noise std on the policy-prior chunk.
  prior_cost: float = 0.0  # kappa: objective J = R - kappa * mean_k ||a_k - pi_k||^2 (0 = the paper, J = R).
  momentum: float = 0.0  # mean <- momentum * mean + (1 - momentum) * elite mean.
  discount: float = 0.99  # gamma.
  horizon: int = 25  # h, planning horizon; must be <= the model's T.
  warm_start: str = "shift"  # "shift" | "paper_code" | "none" | "policy".
  shift_fill: str = "repeat"  # tail of the shifted plan: "repeat" last step or "zero".
  # Value bootstrap weight: gamma^h ("T", paper), gamma^(h+1) ("T+1", code) or 0 ("none": no terminal value, the
  # reward sum alone; an ablation).
  terminal_discount: str = "T"
  mode: str = "mppi"  # "mppi" (exp-weighted elites) | "cem" (uniform elite weights).
  # MPPI elite weights: "absolute" w = exp(beta (J - max J)) (paper, TD-MPC2) or "spread"
  # w = exp(beta (J - max J) / std_K(J)), the return differences measured in units of the elites' spread, so the
  # weighting is as sharp when predicted returns are flat (small models) as when they are not.
  weighting: str = "absolute"
  # The noise-free policy-head chunk pi[:h] is always one of the prior candidates (the paper's prior samples all
  # carry `prior_std` noise, so pi itself is never scored).
  prior_mean_candidate: bool = False
  # With a dynamics ensemble (`model.dynamics_ensemble` K > 1): "mean_latent" scores the members' mean predicted
  # trajectory (one head evaluation per candidate); "mean_return" scores every member's trajectory and ranks by
  # mean_k R_k - ensemble_penalty * std_k R_k (K head evaluations). No effect with K = 1.
  ensemble_score: str = "mean_latent"
  ensemble_penalty: float = 0.0
  # Advantage gate (not in the paper): after the search, the emitted plan and the noise-free policy chunk pi[:h]
  # are scored once more; the plan is applied only if its predicted advantage R(plan) - R(pi) is >= gate_margin,
  # else pi is (the planner leaves its policy head only where the model claims a clear gain). The advantage is
  # reported in `planner/predicted_advantage` whether or not the gate is on.
  advantage_gate: bool = False
  gate_margin: float = 0.0  # in units of the predicted return R; >= 0.
  action_low: Bound = -1.0  # lower action bound (scalar or per-dimension tuple).
  action_high: Bound = 1.0  # upper action bound (scalar or per-dimension tuple).

  def __post_init__(self) -> None:
    """Checks every field; ValueError lists each bad one as `field=value: must be <range>`."""
    errors = []

    def need(ok: bool, name: str, valid: str) -> None:
      if not ok:
        errors.append(f"{name}={getattr(self, name)!r}: must be {valid}")

    need(self.num_samples >= 0, "num_samples", ">= 0")
    need(self.num_prior_samples >= 0, "num_prior_samples", ">= 0 (int(num_samples * prior_share))")
    need(1 <= self.num_elites <= self.total_samples, "num_elites",
         f"in [1, num_samples + num_prior_samples = {self.total_samples}]")
    need(self.iterations >= 1, "iterations", ">= 1")
    need(self.horizon >= 1, "horizon", ">= 1 (and <= the model's T)")
    need(0.0 < self.discount <= 1.0, "discount", "in (0, 1]")  # comparisons also reject NaN
    need(self.inverse_temperature > 0.0, "inverse_temperature", "> 0")
    for name in ("init_std", "min_std", "prior_std"):
      need(getattr(self, name) >= 0.0, name, ">= 0")
    need(self.prior_cost >= 0.0, "prior_cost", ">= 0")
    need(0.0 <= self.momentum < 1.0, "momentum", "in [0, 1)")
    need(self.warm_start in WARM_START_MODES, "warm_start", f"one of {WARM_START_MODES}")
    need(self.shift_fill in SHIFT_FILLS, "shift_fill", f"one of {SHIFT_FILLS}")
    need(self.terminal_discount in TERMINAL_DISCOUNTS, "terminal_discount", f"one of {TERMINAL_DISCOUNTS}")
    need(self.mode in MODES, "mode", f"one of {MODES}")
    need(self.weighting in WEIGHTINGS, "weighting", f"one of {WEIGHTINGS}")
    need(self.ensemble_score in ENSEMBLE_SCORES, "ensemble_score", f"one of {ENSEMBLE_SCORES}")
    need(self.ensemble_penalty >= 0.0, "ensemble_penalty", ">= 0")
    need(0.0 <= self.gate_margin < float("inf"), "gate_margin", ">= 0 and finite")
    need(not self.prior_mean_candidate or self.num_prior_samples >= 1, "prior_mean_candidate",
         "False when there are no prior samples (prior_share * num_samples < 1)")
    low, high = (tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in (self.action_low, self.action_high))
    n = max(len(low), len(high))
    pairs = zip(low * (n // len(low)), high * (n // len(high)), strict=False)  # a scalar bound broadcasts
    if {len(low), len(high)} - {1, n}:
      errors.append(f"action_low={self.action_low!r}, action_high={self.action_high!r}: must be scalars or "
                    "per-dimension sequences of one length")
    elif not all(-float("inf") < lo <= hi < float("inf") for lo, hi in pairs):
      errors.append(f"action_low={self.action_low!r}: must be finite and <= action_high={self.action_high!r} "
                    "in every dimension")
    if errors:
      raise ValueError("; ".join(errors))

  @property
  def total_samples(self) -> int:
    """N, candidates scored per iteration."""
    return self.num_samples + self.num_prior_samples

  @classmethod
  def from_config(cls, section: Mapping[str, Any], model_horizon: int | None = None) -> "PlannerConfig":
    """Builds the config from the `planner` config section (see experiments/configs/sections/planner.py).

    Args:
      section: the `planner` section.
      model_horizon: the world model's T (`model.horizon`). `horizon = 0` in the section means T; a positive
        horizon must be <= T. Needed when the section's horizon is 0.

    Raises:
      ValueError: naming each bad field as `field=value: must be <range>` (field names are the section's keys).
    """
    def bound(x: Any) -> Bound:
      return float(x) if isinstance(x, (int, float)) else tuple(float(v) for v in x)
    share, h = float(section["prior_share"]), int(section["horizon"])
    if not 0.0 <= share <= 1.0:
      raise ValueError(f"prior_share={share!r}: must be in [0, 1]")
    if model_horizon is not None:
      t = int(model_horizon)
      if not 0 <= h <= t:
        raise ValueError(f"horizon={h}: must be in [1, model.horizon T={t}], or 0 for T")
      h = h or t
    elif h == 0:
      raise ValueError("horizon=0: means the model's T, so from_config needs model_horizon=T")
    return cls(
        num_samples=int(section["num_samples"]),
        num_prior_samples=num_prior_samples(section["num_samples"], share),
        iterations=int(section["iterations"]),
        num_elites=int(section["num_elites"]),
        inverse_temperature=float(section["inverse_temperature"]),
        init_std=float(section["init_std"]),
        min_std=float(section["min_std"]),
        prior_std=float(section["prior_std"]),
        prior_cost=float(section["prior_cost"]),
        momentum=float(section["momentum"]),
        discount=float(section["discount"]),
        horizon=h,
        warm_start=str(section["warm_start"]),
        shift_fill=str(section["shift_fill"]),
        terminal_discount=str(section["terminal_discount"]),
        mode=str(section["mode"]),
        weighting=str(section["weighting"]),
        prior_mean_candidate=bool(section["prior_mean_candidate"]),
        # added later: run records written before have neither (their meaning: the defaults)
        ensemble_score=str(section.get("ensemble_score", "mean_latent")),
        ensemble_penalty=float(section.get("ensemble_penalty", 0.0)),
        advantage_gate=bool(section.get("advantage_gate", False)),
        gate_margin=float(section.get("gate_margin", 0.0)),
        action_low=bound(section["action_low"]),
        action_high=bound(section["action_high"]),
    )


def num_prior_samples(num_samples: int, prior_share: float) -> int:
  """Policy-prior sample count, as in the official code: int(num_samples * mixture_coef) (450, 0.05 -> 22)."""
  return int(int(num_samples) * float(prior_share) + 1e-6)  # + 1e-6: 192 * (16 / 192) -> 16, not 15.


@flax.struct.dataclass
class PlannerState:
  """Planner state carried between control steps.

  mean: [h, A] the last emitted plan (the next step warm-starts from it).
  std:  [h, A] the final proposal std of the last step (diagnostic; each step restarts from init_std).
  key:  PRNG key for the next step.
  """
  mean: jax.Array
  std: jax.Array
  key: jax.Array


def init_state(cfg: PlannerConfig, action_dim: int, key: jax.Array) -> PlannerState:
  """Zero plan, init_std proposal."""
  shape = (cfg.horizon, action_dim)
  return PlannerState(mean=jnp.zeros(shape, jnp.float32), std=jnp.full(shape, cfg.init_std, jnp.float32),
                      key=key)


def shift_plan(prev_mean: jax.Array, fill: str) -> jax.Array:
  """[a_1, ..., a_{h-1}, fill]: the previous plan advanced by one control step."""
  tail = prev_mean[-1:] if fill == "repeat" else jnp.zeros_like(prev_mean[-1:])
  return jnp.concatenate([prev_mean[1:], tail], axis=0)


def warm_start(cfg: PlannerConfig, prev_mean: jax.Array, prior_chunk: jax.Array | None = None) -> jax.Array:
  """Initial mean of a control step from the previous plan [h, A] (or the policy head's chunk).

  shift:      [a_1, ..., a_{h-1}, a_{h-1} or 0] (TD-MPC; the intended behaviour).
  paper_code: the official code, roll(+1) then zero everything after index 1, i.e. [a_{h-1}, 0, ..., 0].
  none:       zeros.
  policy:     the policy head's chunk for this step, prior_chunk[:h] (local refinement around the base policy;
              what a small model needs when its predicted returns are easy to exploit far from the data).
  """
  if cfg.warm_start == "policy":
    if prior_chunk is None:
      raise ValueError("warm_start='policy' needs the policy chunk")
    return prior_chunk[:prev_mean.shape[0]]
  if cfg.warm_start == "shift":
    return shift_plan(prev_mean, cfg.shift_fill)
  if cfg.warm_start == "paper_code":
    rolled = jnp.roll(prev_mean, 1, axis=0)
    return rolled.at[1:].set(0.0)
  return jnp.zeros_like(prev_mean)


def discounted_return(cfg: PlannerConfig, rewards: jax.Array, values: jax.Array | None) -> jax.Array:
  """sum_{k<h} gamma^k r_k + gamma^h V_h (or gamma^(h+1)); rewards [T] = r_t.., values [T] = V_{t+1}..;
  `values=None` or `terminal_discount="none"`: no bootstrap (the reward sum alone)."""
  h = cfg.horizon
  disc = cfg.discount ** jnp.arange(h, dtype=rewards.dtype)
  ret = jnp.sum(disc * rewards[:h])
  if values is None or cfg.terminal_discount == "none":
    return ret
  exponent = h if cfg.terminal_discount == "T" else h + 1
  return ret + cfg.discount ** exponent * values[h - 1]


def prior_deviation_cost(cfg: PlannerConfig, candidates: jax.Array, prior_chunk: jax.Array) -> jax.Array:
  """Kappa * mean over steps and action dims of (a - pi)^2: [N, h, A], [h, A] -> [N] (zeros when kappa = 0).

  A quadratic control cost around the policy head's chunk pi, in the spirit of information-theoretic MPPI's
  control cost around its nominal sequence: where the model's predicted returns are flat (differences below
  its errors), the search stays at the policy head instead of following sampling noise; where they differ by
  more than the cost, it moves.
  """
  if candidates.ndim != 3 or candidates.shape[1:] != prior_chunk.shape:
    raise ValueError(f"candidates [N, h, A] and prior chunk [h, A] disagree: {candidates.shape} vs "
                     f"{prior_chunk.shape}")
  return cfg.prior_cost * jnp.mean(jnp.square(candidates - prior_chunk), axis=(1, 2))


def elite_update(cfg: PlannerConfig, candidates: jax.Array, returns: jax.Array, mean: jax.Array
                 ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """One MPPI/CEM update from scored candidates.

  Args:
    cfg: planner config (num_elites, inverse_temperature, mode, min_std, momentum).
    candidates: [N, h, A] action sequences.
    returns: [N] predicted returns; non-finite entries are never selected with positive weight.
    mean: [h, A] current mean (for momentum).

  Returns:
    (new_mean [h, A], new_std [h, A], stats) where stats holds the normalized elite weights [K], elite indices
    [K] and elite returns [K].
  """
  finite = jnp.isfinite(returns)
  masked = jnp.where(finite, returns, -jnp.inf)
  elite_returns, elite_idx = jax.lax.top_k(masked, cfg.num_elites)
  elites = candidates[elite_idx]  # [K, h, A]
  elite_finite = jnp.isfinite(elite_returns)
  if cfg.mode == "mppi":
    best = jnp.max(elite_returns)
    logits = cfg.inverse_temperature * (elite_returns - best)
    if cfg.weighting == "spread":
      finite_r = jnp.where(elite_finite, elite_returns, 0.0)
      n_f = jnp.maximum(jnp.sum(elite_finite), 1)
      mu = jnp.sum(finite_r) / n_f
      spread = jnp.sqrt(jnp.sum(jnp.where(elite_finite, jnp.square(finite_r - mu), 0.0)) / n_f)
      logits = logits / jnp.maximum(spread, 1e-6)
    w = jnp.where(elite_finite, jnp.exp(jnp.where(elite_finite, logits, 0.0)), 0.0)
  else:
    w = elite_finite.astype(returns.dtype)
  w = w / jnp.sum(w)  # 0/0 = NaN only if no candidate is finite: the caller falls back.
  elite_mean = jnp.einsum("k,kta->ta", w, elites)
  elite_var = jnp.einsum("k,kta->ta", w, jnp.square(elites - elite_mean))
  new_std = jnp.maximum(jnp.sqrt(elite_var), cfg.min_std)
  new_mean = cfg.momentum * mean + (1.0 - cfg.momentum) * elite_mean
  return new_mean, new_std, {"weights": w, "elite_idx": elite_idx, "elite_returns": elite_returns}


def _check_context(ctx: Any, commands: jax.Array) -> None:
  """Trace-time checks before the model is called: single-example context and [T+1, C] commands."""
  z, tokens = getattr(ctx, "z", None), getattr(ctx, "tokens", None)
  if (z is not None and jnp.ndim(z) != 1) or (tokens is not None and jnp.ndim(tokens) != 2):
    raise ValueError(
        "plan expects a single-example context (z [Z], tokens [L, D]); got "
        f"z {jnp.shape(z)}, tokens {jnp.shape(tokens)}. vmap `plan` at the call site for a batch.")
  if jnp.ndim(commands) != 2:
    raise ValueError(f"commands must be [T+1, C], got {jnp.shape(commands)}")


def _check_inputs(cfg: PlannerConfig, state: PlannerState, commands: jax.Array, prior_chunk: jax.Array
                  ) -> None:
  """Trace-time shape checks with messages that print the actual shapes."""
  if prior_chunk.ndim != 2:
    raise ValueError(f"model.policy_chunk must return [T, A], got {prior_chunk.shape}")
  model_t, action_dim = prior_chunk.shape
  if cfg.horizon > model_t:
    raise ValueError(f"planner horizon {cfg.horizon} > model horizon T={model_t}")
  if commands.ndim != 2 or commands.shape[0] != model_t + 1:
    raise ValueError(f"commands must be [T+1, C] = [{model_t + 1}, C], got {commands.shape}")
  if state.mean.shape != (cfg.horizon, action_dim) or state.std.shape != state.mean.shape:
    raise ValueError(f"planner state mean/std must be [h, A] = {(cfg.horizon, action_dim)}, got "
                     f"{state.mean.shape}/{state.std.shape}")


def optimize(cfg: PlannerConfig, score: Callable[[jax.Array], jax.Array], prior_chunk: jax.Array,
             state: PlannerState) -> tuple[jax.Array, PlannerState, dict[str, jax.Array]]:
  """The MPPI/CEM search of one control step, for any scorer (the model's, or the true simulator's in
  `simdist_jax.analysis.oracle`).

  Args:
    cfg: static planner config.
    score: candidates [N, h, A] -> predicted returns [N] (traced; any N: the search calls it with
      N = cfg.total_samples, the advantage gate with N = 2).
    prior_chunk: [h, A] the policy head's chunk pi (prior samples, `warm_start="policy"`, `prior_cost`).
    state: PlannerState from the previous step (or `init_state`).

  Returns:
    (action_chunk [h, A] clipped to the bounds, new PlannerState, info) as `plan`.
  """
  h, action_dim = prior_chunk.shape
  if h != cfg.horizon:
    raise ValueError(f"prior chunk must be [h={cfg.horizon}, A], got {prior_chunk.shape}")
  n_gauss, n_prior = cfg.num_samples, cfg.num_prior_samples
  low = jnp.broadcast_to(jnp.asarray(cfg.action_low, jnp.float32), (action_dim,))
  high = jnp.broadcast_to(jnp.asarray(cfg.action_high, jnp.float32), (action_dim,))

  key_next, key_noise = jax.random.split(state.key)
  # All noise of the control step in one draw (one RNG kernel; compiles faster than a draw per iteration):
  # the first n_prior rows perturb the policy prior, the rest are the Gaussian proposals of each iteration.
  noise = jax.random.normal(key_noise, (n_prior + cfg.iterations * n_gauss, h, action_dim))
  gauss_noise = noise[n_prior:].reshape(cfg.iterations, n_gauss, h, action_dim)

  # Policy-prior samples: drawn once per control step, reused by every iteration; with `prior_mean_candidate`
  # the first one is pi itself.
  prior_noise = noise[:n_prior]
  if cfg.prior_mean_candidate:
    prior_noise = prior_noise.at[0].set(0.0)
  prior = jnp.clip(prior_chunk + cfg.prior_std * prior_noise, low, high)

  mean0 = jnp.clip(warm_start(cfg, state.mean, prior_chunk), low, high)
  std0 = jnp.full_like(mean0, cfg.init_std)

  def iteration(carry, eps):
    mean, std = carry
    gauss = mean + std * eps
    candidates = jnp.concatenate([jnp.clip(gauss, low, high), prior], axis=0)  # [N, h, A]
    returns = score(candidates)
    objective = returns - prior_deviation_cost(cfg, candidates, prior_chunk) if cfg.prior_cost else returns
    new_mean, new_std, st = elite_update(cfg, candidates, objective, mean)
    finite = jnp.isfinite(returns)
    n_finite = jnp.sum(finite)
    w = st["weights"]
    stats = {
        "planner/return_mean": jnp.sum(jnp.where(finite, returns, 0.0)) / jnp.maximum(n_finite, 1),
        "planner/return_max": jnp.max(jnp.where(finite, returns, -jnp.inf)),
        "planner/elite_return_mean": jnp.sum(w * jnp.where(finite, returns, 0.0)[st["elite_idx"]]),
        "planner/ess": jnp.nan_to_num(1.0 / jnp.sum(jnp.square(w)), nan=0.0),  # 0 if no finite candidate
        "planner/prior_elite_frac": jnp.mean((st["elite_idx"] >= n_gauss).astype(jnp.float32)),
        "planner/prior_return_max": jnp.max(jnp.where(finite, returns, -jnp.inf)[n_gauss:], initial=-jnp.inf),
        # The return of pi itself (the first prior candidate) when it is scored, else NaN.
        "planner/prior_mean_return": (returns[n_gauss] if cfg.prior_mean_candidate else jnp.float32(jnp.nan)),
        "planner/nonfinite_returns": jnp.sum(~finite).astype(jnp.int32),
    }
    return (new_mean, new_std), stats

  (mean, std), stats = jax.lax.scan(iteration, (mean0, std0), gauss_noise)

  ok = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(std))
  fallback = jnp.clip(shift_plan(state.mean, cfg.shift_fill), low, high)
  fallback = jnp.where(jnp.isfinite(fallback), fallback, 0.0)
  mean = jnp.clip(jnp.where(ok, mean, fallback), low, high)
  std = jnp.where(ok, std, std0)

  # The plan against the noise-free policy chunk, scored once more: the predicted advantage, and the gate.
  pi = jnp.clip(prior_chunk, low, high)
  pair = score(jnp.stack([mean, pi]))
  advantage = pair[0] - pair[1]
  gate_open = jnp.isfinite(advantage) & (advantage >= cfg.gate_margin)
  if cfg.advantage_gate:
    mean = jnp.where(gate_open, mean, pi)

  info = {k: v[-1] for k, v in stats.items() if k != "planner/nonfinite_returns"}
  info["planner/nonfinite_returns"] = jnp.sum(stats["planner/nonfinite_returns"])
  info["planner/nonfinite_fallback"] = (~ok).astype(jnp.int32)
  info["planner/std_mean"] = jnp.mean(std)
  info["planner/predicted_advantage"] = advantage
  info["planner/plan_return"] = pair[0]
  info["planner/policy_return"] = pair[1]
  info["planner/gate_open"] = (gate_open if cfg.advantage_gate else jnp.bool_(True)).astype(jnp.int32)
  return mean, PlannerState(mean=mean, std=std, key=key_next), info


def plan(cfg: PlannerConfig, model: Any, variables: Any, state: PlannerState, ctx: Any, commands: jax.Array
         ) -> tuple[jax.Array, PlannerState, dict[str, jax.Array]]:
  """One control step of MPPI/CEM.

  Args:
    cfg: static planner config.
    model: static world model (duck-typed `WorldModel`).
    variables: world-model variables (traced; swapping them never recompiles).
    state: PlannerState from the previous step (or `init_state`).
    ctx: the model context for this step, computed once by the caller with `model.context`.
    commands: [T+1, C] commands c_t..c_{t+T} (T = model horizon; C may be 0).

  Returns:
    (action_chunk [h, A] clipped to the bounds, new PlannerState, info) with `info` a flat dict of scalars.
    The caller applies action_chunk[0].
  """
  _check_context(ctx, commands)
  prior_chunk = model.policy_chunk(variables, ctx, commands)
  _check_inputs(cfg, state, commands, prior_chunk)
  score = model_score_fn(cfg, model, variables, ctx, commands, prior_chunk)
  # ctx, variables and commands are closed over inside the traced step: computed once, broadcast to candidates.
  return optimize(cfg, score, prior_chunk[:cfg.horizon], state)


def model_score_fn(cfg: PlannerConfig, model: Any, variables: Any, ctx: Any, commands: jax.Array,
                   prior_chunk: jax.Array) -> Callable[[jax.Array], jax.Array]:
  """The world model's scorer of one control step: candidates [N, h, A] -> predicted returns R [N].

  Candidates are planned over h steps; if h < T the model sees them padded with the policy prior's tail
  (`prior_chunk` [T, A]), and only r_0..r_{h-1} and V_h count (`discounted_return`).
  """
  h = cfg.horizon
  tail = prior_chunk[h:]

  members = int(getattr(getattr(model, "spec", None), "dynamics_ensemble", 1))
  per_member = cfg.ensemble_score == "mean_return" and members > 1

  def candidate_return(actions: jax.Array) -> jax.Array:  # [h, A] -> scalar
    full = jnp.concatenate([actions, tail], axis=0)
    if per_member:  # every member's trajectory scored by the heads: [K]
      z_members = model.predict_member_latents(variables, ctx, full)
      score = lambda z_hat: discounted_return(cfg, *model.predict_returns(variables, ctx, z_hat, full, commands))  # noqa: E731
      returns = jax.vmap(score)(z_members)
      return jnp.mean(returns) - cfg.ensemble_penalty * jnp.std(returns)
    z_hat = model.predict_latents(variables, ctx, full)
    rewards, values = model.predict_returns(variables, ctx, z_hat, full, commands)
    return discounted_return(cfg, rewards, values)

  return jax.vmap(candidate_return)


def make_plan_fn(cfg: PlannerConfig, model: Any, jit: bool = True) -> Callable[..., Any]:
  """`fn(variables, state, ctx, commands) -> (action_chunk, state, info)` with cfg and model bound."""
  fn = functools.partial(plan, cfg, model)
  return jax.jit(fn) if jit else fn
