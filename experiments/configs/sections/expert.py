"""Config section `expert`: the privileged PPO expert and its checkpoint ladder (paper §2.2, Stage 1).

Used by `simdist_jax.experts.ppo` (training, brax PPO) and `simdist_jax.experts.evaluate` (ladder evaluation).

One PPO *iteration* = one brax `training_step`: `num_envs` envs x `unroll_length` steps of rollout, then
`num_updates_per_batch` epochs of `num_minibatches` SGD steps. Hence iteration i <-> env step
i * num_envs * unroll_length (`simdist_jax.experts.ppo.env_steps_per_iteration`), as in IsaacLab/rsl_rl.

Presets:
  paper  paper §2.2 / official code: 3x512 ELU MLPs, clip 0.2, entropy 0.01, 5 epochs, 4 minibatches, lr 1e-3
         (adaptive KL, target 0.01), gamma 0.99, lambda 0.95, grad-norm 1.0, value coef 1.0, clipped value loss,
         4096 envs x 24 steps x 5000 iterations, ladder {0,50,...,2000} + the final expert.
  small  the 2-core CPU CartPole demo: 64x64 nets, 256 envs x 32 steps, 8 minibatches x 8 epochs, ladder at the
         paper's fractions of the run.
"""
import ml_collections

# The paper's ladder (official code), as iterations of a 5000-iteration run; the expert is the final policy.
PAPER_ITERATIONS = 5000
PAPER_CHECKPOINTS = (0, 50, 100, 150, 200, 250, 300, 400, 500, 1000, 2000)
SMALL_ITERATIONS = 600


def scaled_checkpoints(num_iterations: int) -> tuple[int, ...]:
  """The paper's ladder at the same fractions of a `num_iterations` run (rounded, deduplicated, sorted)."""
  return tuple(sorted({int(round(k * num_iterations / PAPER_ITERATIONS)) for k in PAPER_CHECKPOINTS}))


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `expert` section for `task` at `preset` (`small` or `paper`)."""
  del task, dims
  if preset not in ("small", "paper"):
    raise ValueError(f"unknown expert preset {preset!r}; use small|paper")
  paper = preset == "paper"
  c = ml_collections.ConfigDict()
  # --- networks (brax ppo_networks.make_ppo_networks; actor and critic both read `privileged_state`) ---
  # Hidden layer sizes of the actor MLP (paper: 3 x 512).
  c.policy_hidden = (512, 512, 512) if paper else (64, 64)
  # Hidden layer sizes of the critic MLP (paper: 3 x 512).
  c.value_hidden = (512, 512, 512) if paper else (64, 64)
  # Hidden activation: one of elu|swish|relu|tanh (paper: ELU).
  c.activation = "elu"
  # Action distribution: brax's tanh-squashed Gaussian; the deterministic policy is tanh(mean).
  c.distribution_type = "tanh_normal"
  # Running mean/std normalization of observations (kept with every checkpoint, applied inside the loaders).
  c.normalize_observations = True
  # Curriculum: every PPO auto-reset passes the ended episode to the task, which may move the env along a
  # curriculum (Go2's tile grid: one difficulty level up after walking half a tile, down after covering less
  # than half the commanded distance, as legged_gym / IsaacLab); tasks without one ignore it. Data generation
  # never uses it (levels uniform, as the official code).
  c.curriculum = paper
  # --- PPO (brax ppo.train arguments) ---
  # Parallel environments (paper 4096).
  c.num_envs = 4096 if paper else 256
  # Rollout steps per env per iteration (paper 24).
  c.unroll_length = 24 if paper else 32
  # PPO iterations in the run (paper 5000). Total env steps = num_iterations * num_envs * unroll_length.
  c.num_iterations = PAPER_ITERATIONS if paper else SMALL_ITERATIONS
  # Minibatches per epoch (paper 4); num_envs must be divisible by it (minibatch = num_envs / this trajectories).
  c.num_minibatches = 4 if paper else 8
  # Epochs over each batch, brax `num_updates_per_batch` (paper 5).
  c.num_updates_per_batch = 5 if paper else 8
  # Adam learning rate (paper 1e-3).
  c.learning_rate = 1e-3
  # Learning-rate schedule: NONE or ADAPTIVE_KL (paper: adaptive KL with target `desired_kl`).
  c.learning_rate_schedule = "ADAPTIVE_KL" if paper else "NONE"
  # Target KL of the adaptive schedule (paper 0.01; unused with NONE).
  c.desired_kl = 0.01
  # Entropy bonus coefficient (paper 0.01).
  c.entropy_cost = 0.01
  # Discount gamma (paper 0.99).
  c.discounting = 0.99
  # GAE lambda (paper 0.95).
  c.gae_lambda = 0.95
  # PPO ratio clip (paper 0.2).
  c.clipping_epsilon = 0.2
  # Value-loss clip; 0 disables it (paper: clipped value loss with 0.2).
  c.clipping_epsilon_value = 0.2 if paper else 0.0
  # Value-loss coefficient (paper 1.0).
  c.vf_loss_coefficient = 1.0 if paper else 0.5
  # Global gradient-norm clip; 0 disables it (paper 1.0).
  c.max_grad_norm = 1.0
  # Reward multiplier inside PPO (1: the critic predicts returns in reward units, as V^e labels need).
  c.reward_scaling = 1.0
  # --- checkpoint ladder ---
  # Iterations at which the actor (+ normalizer) is saved; the final expert (num_iterations) is always added.
  # paper: the official ladder; small: the same fractions of the small run.
  c.checkpoint_iterations = PAPER_CHECKPOINTS if paper else scaled_checkpoints(SMALL_ITERATIONS)
  # Resume state (actor, critic, normalizer) is saved at least this often [iterations]; 0: only at ladder points.
  c.resume_every_iterations = 50 if paper else 30
  # --- evaluation ---
  # Deterministic sim episodes (MJX, parallel) evaluated at each ladder checkpoint during training; 0 disables.
  c.train_eval_episodes = 256 if paper else 64
  # Sim-domain episodes per checkpoint in `expert-eval` (MJX, all in parallel).
  c.eval_sim_episodes = 1024 if paper else 128
  # Real-domain episodes per checkpoint in `expert-eval` (MuJoCo C twin, seeds eval_seed .. eval_seed + n - 1).
  c.eval_real_episodes = 10 if paper else 3
  # First seed of the fixed real-domain evaluation episodes (and of the sim evaluation key).
  c.eval_seed = 1000
  return c
