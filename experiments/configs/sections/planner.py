"""Config section `planner` (owned by the planner stage). `get(task, preset, dims)` returns a ConfigDict.

Converted to the static `simdist_jax.planner.PlannerConfig` with
`PlannerConfig.from_config(config.planner, model_horizon=config.model.horizon)`; derived values (the prior sample
count, the horizon when it is 0) are computed there, never written back here.

Presets:
  paper         the official SimDist values (paper §2.8, official code config/control/mppi.yaml).
  paper_tdmpc2  the same model horizon with TD-MPC2's planner values (512 + 24 samples, 6 iterations, 64 elites,
                inverse temperature 0.5, shifted warm start with a zero tail).
  small         CPU-sized (CartPole demo): 64 + 16 samples, 2 iterations, std 0.3 around the policy head.
The suffix `_tdmpc2` also applies to `small`. `preset_style` records which style produced the values.
"""
import ml_collections

_TASK_ACTION_BOUND = {
    # CartPole: normalized force in [-1, 1].
    "cartpole": 1.0,
    # Go2: policy units (PD target = 0.25 a + default pose); the official code does not clip at all, so this
    # bound (2.5 rad offset, beyond every joint's range) only guards against blow-ups.
    "go2": 10.0,
    # UR5e peg insertion: normalized end-effector deltas.
    "peg_insertion": 1.0,
}


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `planner` section for `task` at `preset` (`small`, `paper`, optionally with `_tdmpc2`)."""
  del dims  # T comes from the model section, resolved in code (see `horizon`)
  base, _, style = preset.partition("_")
  style = style or "simdist"
  if base not in ("small", "paper") or style not in ("simdist", "tdmpc2"):
    raise ValueError(f"unknown planner preset {preset!r}; use small|paper, optionally suffixed _tdmpc2")
  manipulation = task == "peg_insertion"
  bound = _TASK_ACTION_BOUND.get(task, 1.0)
  c = ml_collections.ConfigDict()
  # Which published planner the values follow: "simdist" (official SimDist code) or "tdmpc2" (TD-MPC2).
  c.preset_style = style
  # "mppi": elites weighted by exp(beta (R - max R)); "cem": uniform weights over the elites.
  c.mode = "mppi"
  # MPPI elite weights: "absolute" exp(beta (J - max J)) (paper) or "spread" exp(beta (J - max J) / std of the
  # elites' J), which stays sharp when the predicted returns are flat.
  c.weighting = "absolute"
  # Always score the noise-free policy-head chunk as one prior candidate (the paper's prior samples all carry
  # prior_std noise, so the policy head's own chunk is never a candidate).
  c.prior_mean_candidate = False
  # Only with a dynamics ensemble (`model.dynamics_ensemble` K > 1; not in the paper): "mean_latent" scores the
  # members' mean predicted trajectory; "mean_return" scores each member's trajectory and ranks candidates by
  # mean_k R_k - ensemble_penalty * std_k R_k (K times the head evaluations).
  c.ensemble_score = "mean_latent"
  # c in mean_k R_k - c * std_k R_k of `ensemble_score = "mean_return"` (> 0 prefers candidates the members agree on).
  c.ensemble_penalty = 0.0
  # Advantage gate (not in the paper): apply the plan only if its predicted return exceeds that of the noise-free
  # policy-head chunk by >= gate_margin, else the head's chunk (the planner leaves its head only where the model
  # claims a clear gain). The predicted advantage is logged either way (`planner/predicted_advantage`).
  c.advantage_gate = False
  # The gate's threshold, in units of the predicted return (>= 0).
  c.gate_margin = 0.0
  # Gaussian samples per iteration (official `num_samples`).
  c.num_samples = 450 if style == "simdist" else 512
  # Policy-prior samples = int(num_samples * prior_share) (official `mixture_coef`; 450 * 0.05 -> 22).
  c.prior_share = 0.05 if style == "simdist" else 24 / 512
  # Refinement iterations per control step (scanned).
  c.iterations = 8 if style == "simdist" else 6
  # Top-K elites per iteration.
  c.num_elites = 64
  # beta: multiplies the returns in the elite weights (the official code calls it "temperature").
  c.inverse_temperature = (0.4 if manipulation else 0.25) if style == "simdist" else 0.5
  # Proposal std at the start of every control step, in action units (TD-MPC2: max_std).
  c.init_std = (1.0 if manipulation else 2.0) if style == "simdist" else 2.0
  # Std floor after each update.
  c.min_std = 0.05
  # Noise std on the policy-prior chunk (official `base_act_std`).
  c.prior_std = (0.1 if manipulation else 0.05) if style == "simdist" else 0.05
  # kappa: the candidates are ranked by J = R - kappa * mean_k ||a_k - pi_k||^2, a quadratic cost on the deviation
  # from the policy head's chunk pi (0 = the paper and TD-MPC2: J = R).
  c.prior_cost = 0.0
  # mean <- momentum * mean + (1 - momentum) * elite mean.
  c.momentum = 0.0
  # gamma for rewards and the value bootstrap.
  c.discount = 0.99
  # Planning horizon h in control steps, <= the model's T (`model.horizon`). 0 = T itself, resolved in code when the
  # planner is built (`PlannerConfig.from_config(config.planner, model_horizon=T)`), so overriding only
  # `model.horizon` moves it too.
  c.horizon = 0
  # Warm start of the mean: "shift" (previous plan shifted one step; fixed), "paper_code" (official bug:
  # [prev[-1], 0, ...]), "none" (zeros) or "policy" (the policy head's chunk: local refinement around it).
  c.warm_start = "shift"
  # Tail of the shifted plan: "repeat" the last step or "zero" it (TD-MPC2 zeroes it).
  c.shift_fill = "repeat" if style == "simdist" else "zero"
  # Value bootstrap weight: "T" = gamma^h (paper), "T+1" = gamma^(h+1) (official code) or "none" (no terminal value:
  # candidates are ranked by their discounted reward sum alone; the ablation `no_terminal_value`).
  c.terminal_discount = "T"
  # Lower action bound (scalar or per-dimension list); candidates and the emitted plan are clipped to it.
  c.action_low = -bound
  # Upper action bound (scalar or per-dimension list).
  c.action_high = bound
  if base == "small":
    # CPU-sized search around the policy head for the CartPole demo (64 + 16 samples, 2 iterations, std 0.3).
    # Measured with benchmarks/planner_eval.py on a residual-dynamics CartPole model (2026-11-25, sim domain,
    # seeds 1000-1002): policy head alone 136.1, std 0.05 -> 141.4, std 0.3 -> 146.1, std 0.6 -> 104.7,
    # std 1.0 with shift warm start -> 74.4: wider searches still exploit the small model's return errors.
    c.num_samples = 64
    c.prior_share = 16 / 64
    c.iterations = 2
    c.num_elites = 8
    c.inverse_temperature = 1.0
    c.warm_start = "policy"
    c.init_std = 0.3
    c.min_std = 0.01
    c.prior_mean_candidate = True
  return c
