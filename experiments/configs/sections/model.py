"""Config section `model` (owned by the world-model stage). `get(task, preset, dims)` returns a ConfigDict.

Presets:
- `paper`: the official Go2 world model (digest simdist_official_code.md §2-3): latent 64, H = T = 25, dynamics
  decoder 2 x 8 heads, reward/value 1 x 4 heads, policy 4 x 8 heads, FFN 256, ~0.67M params; batch 512, Adam 2e-4
  with 10k warmup, cosine to 1e-4 at 400k; finetuning batch 32, lr 2e-4, 2000 warmup, dynamics only.
- `small`: CartPole-size model that pretrains in ~2-3 min on 2 CPU cores.
- `tiny`: unit-test size (seconds on CPU).
"""

import ml_collections

# Go2 proprio augmentation noise (raw units), per channel, official `system/go2.yaml`:
# lin vel 3 x 0.05, ang vel 3 x 0.1, gravity 3 x 0.025, joint pos 12 x 0.01, joint vel 12 x 0.75, phase 2 x 0.001.
_GO2_PROPRIO_NOISE = (0.05,) * 3 + (0.1,) * 3 + (0.025,) * 3 + (0.01,) * 12 + (0.75,) * 12 + (0.001,) * 2


def _net(num_layers: int, num_heads: int, mlp_dim: int) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_layers = num_layers  # transformer layers (post-LN)
  c.num_heads = num_heads  # attention heads (head dim = latent_dim / num_heads)
  c.mlp_dim = mlp_dim  # FFN hidden width
  return c


def _lr(peak: float, warmup: int, decay_steps: int, end: float) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.peak = peak  # peak learning rate after linear warmup from 0
  c.warmup_steps = warmup  # linear warmup steps
  c.decay_steps = decay_steps  # step at which the cosine reaches `end` (optax warmup_cosine_decay_schedule)
  c.end = end  # final learning rate
  return c


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `model` section for `task` at `preset` (`small`, `paper` or `tiny`)."""
  if preset not in ("small", "paper", "tiny"):
    raise ValueError(f"unknown model preset {preset!r}; expected 'small', 'paper' or 'tiny'")
  paper, tiny = preset == "paper", preset == "tiny"
  c = ml_collections.ConfigDict()

  # --- Architecture (checked against checkpoints; changing any of these needs a fresh pretraining run). ---
  # Latent size Z; also the token width D of every attention module.
  c.latent_dim = 64 if paper else (16 if tiny else 32)
  # H: past proprio/action steps in the context (context has 2H + 1 tokens).
  c.history = 25 if paper else (4 if tiny else 10)
  # T: planning / prediction horizon (future actions in, T latents out).
  c.horizon = 25 if paper else (4 if tiny else 10)
  # Return heads: "sequence" (transformers over the predicted trajectory, paper) or "mlp" (per-step MLPs, Table I).
  c.heads = "sequence"
  # Dynamics: "chunked" (one-pass causal transformer decoder, paper) or "autoregressive_mlp" (ablation, lax.scan).
  c.dynamics = "chunked"
  # Self-attention mask of the reward/value transformers: "bidirectional" (paper/official) or "causal".
  c.return_mask = "bidirectional"
  # Chunked dynamics only: predict z_hat_{t+k} = z_t + (zero-initialised read-out of the decoder), i.e. learn the
  # change from z_t (False = the paper's decoder, which emits z_hat directly). On for `small`: with CPU-sized data
  # and steps the direct decoder predicts one step ahead 10x worse than copying z_t and the planner cannot rank
  # action chunks (docs/results.md, "CartPole world model").
  c.dynamics_residual = preset == "small"
  # K independently initialised dynamics decoders trained side by side on the same batches, each on its own latent
  # loss; the planner scores the members' mean prediction (not in the paper: 1 = the paper's single decoder).
  # Averages out the instance-specific error of one trained model (docs/results.md, "A dynamics ensemble").
  c.dynamics_ensemble = 1
  # Reward/value heads read the predicted latents under stop-gradient, so their losses do not shape the dynamics:
  # the dynamics learns only to predict encoder latents (the one objective finetuning keeps). The paper lets the
  # gradients through (False). The encoder still learns from the reward loss through z_t and from BC.
  c.heads_stop_gradient = False
  c.encoder = ml_collections.ConfigDict()
  # Proprio MLP hidden widths (P -> ... -> Z); shared with the history's proprio tokens.
  c.encoder.proprio_hidden = (128, 128) if paper else ((32,) if tiny else (64, 64))
  # Fusion MLP hidden widths ([proprio feat, height-map feat] -> ... -> Z).
  c.encoder.latent_hidden = (128, 128) if paper else ((32,) if tiny else (64, 64))
  # Height-map CNN channels (3x3, stride 2, SAME); only used when dims["extero"] > 0.
  c.encoder.hm_channels = (8, 16, 32)
  # Height-map MLP hidden widths (flattened CNN features -> ... -> Z).
  c.encoder.hm_hidden = (192, 128) if paper else (64,)
  # Dynamics decoder f (the only module finetuned by default).
  c.dynamics_net = _net(2, 8, 256) if paper else (_net(1, 2, 32) if tiny else _net(2, 4, 128))
  # Reward transformer R.
  c.reward_net = _net(1, 4, 256) if paper else (_net(1, 2, 32) if tiny else _net(1, 4, 128))
  # Value transformer V.
  c.value_net = _net(1, 4, 256) if paper else (_net(1, 2, 32) if tiny else _net(1, 4, 128))
  # Base-policy decoder pi (MPPI warm start).
  c.policy_net = _net(4, 8, 256) if paper else (_net(1, 2, 32) if tiny else _net(2, 4, 128))
  # Hidden widths of the per-step reward/value MLPs (only for heads == "mlp").
  c.mlp_head_hidden = (256, 256) if paper else (64, 64)
  # Hidden widths of the autoregressive dynamics MLP (only for dynamics == "autoregressive_mlp").
  c.ar_hidden = (256, 256) if paper else (64, 64)
  # Dropout on attention weights (official 0.05).
  c.dropout_attn = 0.05 if paper else 0.0
  # Dropout inside transformer FFNs. The official `dropout.mlp = 0.2` never fires (digest §2.5), so 0.0 here.
  c.dropout_mlp = 0.0
  # Dtype the networks compute in: "float32" or "bfloat16" (mixed precision: params, optimizer state, losses and
  # every public input/output stay float32; not in the paper). Not an architecture key: a checkpoint trained in
  # one dtype loads in the other. bfloat16 is for accelerators; on a CPU it is slower (docs/world_model.md).
  c.compute_dtype = "float32"

  # --- Pretraining (Eq. 2). ---
  # Optimizer steps.
  c.num_steps = 400_000 if paper else (600 if tiny else 3000)
  # Windows per step.
  c.batch_size = 512 if paper else (32 if tiny else 128)
  # Adam learning-rate schedule: warmup then cosine.
  c.lr = _lr(2e-4, 10_000, 400_000, 1e-4) if paper else (_lr(2e-3, 20, 600, 2e-4) if tiny else _lr(1e-3, 200, 3000, 1e-4))
  # Global-norm gradient clip (0 = off; the official run uses none).
  c.grad_clip = 0.0 if paper else 10.0
  # Loss weights of Eq. 2 on z-scored targets (official: 1, 1, 1, 4).
  c.loss_weights = ml_collections.ConfigDict()
  c.loss_weights.latent = 1.0  # latent consistency ||z_hat - sg(E(o))||^2
  c.loss_weights.reward = 1.0  # reward MSE
  c.loss_weights.value = 1.0  # expert-value MSE
  c.loss_weights.action = 4.0  # BC MSE masked by cumprod(expert_flag)
  # Zero-mean Gaussian input noise (raw units) on the context proprio (per channel) and the height map.
  c.aug_noise = ml_collections.ConfigDict()
  if task == "go2" and dims.get("proprio") == len(_GO2_PROPRIO_NOISE):
    c.aug_noise.proprio = _GO2_PROPRIO_NOISE  # per-channel std, length P
  else:
    c.aug_noise.proprio = (0.0 if tiny else 0.01,) * int(dims.get("proprio", 0))  # small default, length P
  c.aug_noise.extero = 0.02 if dims.get("extero", 0) else 0.0  # std for every height cell
  # Log train metrics every N steps.
  c.log_every = 1000 if paper else (50 if tiny else 100)
  # Evaluate on held-out episodes every N steps (and at the end).
  c.eval_every = 10_000 if paper else (300 if tiny else 500)
  # Eval batches (of `batch_size`) per evaluation.
  c.eval_batches = 4 if paper else 2
  # Save a checkpoint every N steps (and at the end).
  c.checkpoint_every = 10_000 if paper else (300 if tiny else 1000)
  # Checkpoints kept on disk.
  c.keep_checkpoints = 3

  # --- Dynamics-only finetuning (Eq. 3). ---
  c.finetune = ml_collections.ConfigDict()
  # What is trained: "dynamics" (paper), "dynamics+encoder" or "all" (Fig. 10 ablations).
  c.finetune.train = "dynamics"
  # Windows per step (official 32).
  c.finetune.batch_size = 32
  # Default finetuning steps per adaptation round (callers may override).
  c.finetune.num_steps = 20_000 if paper else (50 if tiny else 1000)
  # Fresh Adam schedule (official: peak 2e-4, 2000 warmup, cosine to 1e-4 at 400k).
  c.finetune.lr = _lr(2e-4, 2000, 400_000, 1e-4) if paper else (_lr(1e-3, 10, 1000, 3e-4) if tiny else _lr(5e-4, 100, 5000, 1e-4))
  # Keep dropout active during finetuning (official: yes).
  c.finetune.dropout = True
  # Keep input-noise augmentation during finetuning (official: yes).
  c.finetune.augment = True
  # Weight lambda of the frozen-heads consistency term added to Eq. 3 (world_model/losses.py
  # `make_finetune_loss`): the reward/value heads on z_hat against the same heads on E(o). 0 = the paper.
  c.finetune.head_consistency = 0.0
  return c
