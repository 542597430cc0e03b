"""Config section `baselines`: the model-free baselines (issue 20), one sub-section per algorithm.
`get(task, preset, dims)`.

Every baseline shares the sim dataset (`data`), the encoder architecture (`model.encoder`, `model.latent_dim`), the
action bounds (`planner.action_low/high`) and the evaluation protocol of the adaptation loop (`adapt.eval_episodes`,
`adapt.sim_eval_episodes`, the same seeds) with SimDist.
"""
import ml_collections

from experiments.configs.sections import expert as expert_section


def _lr(peak: float, warmup: int, decay_steps: int, end: float) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.peak = peak  # peak learning rate after linear warmup from 0
  c.warmup_steps = warmup  # linear warmup steps
  c.decay_steps = decay_steps  # step at which the cosine reaches `end`
  c.end = end  # final learning rate
  return c


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `baselines` section for `task` at `preset` (`small` or `paper`)."""
  paper = preset == "paper"
  e = expert_section.get(task, preset, dims)  # the expert's own PPO settings at this preset (baselines.ppo)
  del task, dims
  c = ml_collections.ConfigDict()
  # Single-step BC of the clean expert actions (expert_flag) in the sim dataset; paper §5 gives no sizes
  # [unknown]: an MLP head on SimDist's encoder, Adam with warmup + cosine (as the world model).
  c.bc = ml_collections.ConfigDict()
  c.bc.hidden = (256, 256) if paper else (128, 128)  # MLP head widths after the encoder
  c.bc.num_steps = 50_000 if paper else 3000          # gradient steps
  c.bc.batch_size = 512 if paper else 256             # transitions per step
  c.bc.lr = _lr(3e-4, 500 if paper else 100, 50_000 if paper else 3000, 1e-5)
  c.bc.grad_clip = 1.0                                # global-norm clip (0 = off)
  c.bc.chunk_steps = 250                              # gradient steps per jit call (one lax.scan)
  c.bc.eval_batches = 20                              # held-out batches of the imitation-error check
  # RLPD (Ball et al. 2023; its defaults from the paper's Table and ikostrikov/rlpd configs): SAC with an ensemble
  # of 10 LayerNorm critics, targets from the min over a random 2 of them, UTD 20, symmetric 50/50 sim/real
  # batches, Adam 3e-4, gamma 0.99, tau 0.005, initial temperature 1, target entropy -A/2 (None), the entropy
  # term in the backup. The actor starts from single-step BC (baselines.bc's schedule; paper §5). `small`: UTD 5
  # and (128, 128) (CPU; each deviation is a budget, not a tuning).
  c.rlpd = ml_collections.ConfigDict()
  c.rlpd.hidden = (256, 256) if paper else (128, 128)
  c.rlpd.num_critics = 10
  c.rlpd.critic_subset = 2
  c.rlpd.discount = 0.99
  c.rlpd.tau = 0.005
  c.rlpd.actor_lr = 3e-4
  c.rlpd.critic_lr = 3e-4
  c.rlpd.temperature_lr = 3e-4
  c.rlpd.init_temperature = 1.0
  c.rlpd.target_entropy = ml_collections.config_dict.placeholder(float)  # None: -A / 2
  c.rlpd.backup_entropy = True
  c.rlpd.utd = 20 if paper else 5         # critic updates per new real transition
  c.rlpd.batch_size = 256
  c.rlpd.sim_share = 0.5                  # share of every batch drawn from the sim dataset (RLPD: 0.5)
  c.rlpd.bc_init = True                   # initialize the actor's mean by single-step BC (paper §5)
  c.rlpd.update_chunk = 1000              # critic updates per host batch draw
  # IQL offline-to-online (Kostrikov et al. 2021; its locomotion settings): expectile 0.7, AWR temperature 3,
  # Adam 3e-4, gamma 0.99, tau 0.005, (256, 256); the actor's mean from single-step BC, then `offline_steps` IQL
  # updates on the sim data ("IQL's value pretrained in sim", paper §5; IQL: 1M offline steps, `small`: 20k, a CPU
  # budget), then `utd` updates per new real transition on batches `sim_share` sim / rest real.
  c.iql = ml_collections.ConfigDict()
  c.iql.hidden = (256, 256) if paper else (128, 128)
  c.iql.discount = 0.99
  c.iql.tau = 0.005
  c.iql.expectile = 0.7
  c.iql.temperature = 3.0
  c.iql.lr = 3e-4
  c.iql.offline_steps = 1_000_000 if paper else 20_000
  c.iql.utd = 1
  c.iql.batch_size = 256
  c.iql.sim_share = 0.5
  c.iql.bc_init = True
  c.iql.update_chunk = 1000
  # SGFT-SAC (Yin et al. 2025; our reading, the paper gives no values [approximate]): RLPD's agent and budget
  # (baselines.rlpd) with rewards shaped by V_sim (the expert values of the sim data distilled onto observations:
  # `value_steps` Adam steps at `value_lr`). `discount` is the learner's and the shaping's (one value, as SGFT's
  # code shapes with its agent's own discount: r + agent.discount V(o') - V(o)); shaping with the learner's discount
  # leaves its optimum unchanged (Ng et al. 1999), so this is the horizon the learner optimizes: RLPD's 0.99 (the
  # former 0.9 made it the ~10-step problem, which cannot learn CartPole's swing-up; docs/baselines.md).
  c.sgft = ml_collections.ConfigDict()
  c.sgft.discount = c.rlpd.discount
  c.sgft.value_steps = 20_000 if paper else 5000
  c.sgft.value_lr = 3e-4
  # PPO finetuning of the privileged expert in the real world (issue 20; the usual sim-to-real practice): the final
  # expert's actor and critic (its observation normalizer frozen), the stochastic expert collecting each round's
  # episodes, then PPO on those episodes only. Every value is the expert's own PPO setting at this preset
  # (`expert.<same key>`, copied here when the config is built: an `--config.expert.*` override does not carry
  # over). The critic's reward scale is `expert.reward_scaling` itself (not a setting of the finetuning).
  c.ppo = ml_collections.ConfigDict()
  c.ppo.learning_rate = e.learning_rate                    # expert.learning_rate (paper §2.2: 1e-3)
  c.ppo.learning_rate_schedule = e.learning_rate_schedule  # expert.learning_rate_schedule (paper: ADAPTIVE_KL)
  c.ppo.desired_kl = e.desired_kl                          # expert.desired_kl (paper 0.01; ADAPTIVE_KL only)
  c.ppo.entropy_cost = e.entropy_cost                      # expert.entropy_cost (paper 0.01)
  c.ppo.discounting = e.discounting                        # expert.discounting (paper 0.99)
  c.ppo.gae_lambda = e.gae_lambda                          # expert.gae_lambda (paper 0.95)
  c.ppo.clipping_epsilon = e.clipping_epsilon              # expert.clipping_epsilon (paper 0.2)
  c.ppo.clipping_epsilon_value = e.clipping_epsilon_value  # expert.clipping_epsilon_value (paper 0.2; 0 = off)
  c.ppo.vf_loss_coefficient = e.vf_loss_coefficient        # expert.vf_loss_coefficient (paper 1.0, small 0.5)
  c.ppo.max_grad_norm = e.max_grad_norm                    # expert.max_grad_norm (paper 1.0; 0 = off)
  # Minibatches per epoch and epochs per round: the expert's per-batch counts (paper 4 x 5, small 8 x 8), applied
  # to one round's episodes (adapt.episodes_per_round x env.episode_length transitions) instead of its
  # num_envs x unroll_length batch.
  c.ppo.num_minibatches = e.num_minibatches
  c.ppo.num_updates_per_batch = e.num_updates_per_batch
  c.ppo.normalize_advantage = True                         # brax ppo.train's default (the expert trained with it)
  return c
