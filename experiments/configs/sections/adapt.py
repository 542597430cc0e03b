"""Config section `adapt`: the real-world adaptation loop (SimDist Algorithm 1). `get(task, preset, dims)`."""
import ml_collections


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `adapt` section for `task` at `preset` (`small` or `paper`)."""
  del dims
  paper = preset == "paper"
  c = ml_collections.ConfigDict()
  # J: adaptation rounds after round 0 (the pretrained model). Paper: manipulation every 20 episodes up to
  # 60-80 episodes; quadruped data checkpoints at ~16, ~27, ~36 minutes (3 rounds).
  c.rounds = 3
  # M: real episodes collected with the current planner per round.
  c.episodes_per_round = 20 if paper else 4
  # Episodes (fixed seeds, randomized initial states) of the task-metric evaluation after every round; the same
  # seeds every round, so the change against round 0 has a paired CI.
  c.eval_episodes = 20
  # Episodes (the first evaluation seeds) of the oracle at round 0: MPPI with candidates rolled out in the true
  # real-world simulator, scored by the frozen reward/value heads on the encoder of the true future observations
  # (simdist_jax/analysis/oracle.py): what perfect dynamics finetuning could reach, the ceiling of "gap closed".
  # About 10-30x the cost of a planner episode (N x T MJX steps per control step); 0 disables it.
  c.oracle_episodes = 20 if paper else 6
  # Counterfactual latent loss: chunks from every held-out episode's restored states, actions perturbed by
  # N(0, sigma^2) (clipped), `counterfactual_points` evenly spaced states per episode; 0 points disables it.
  c.counterfactual_sigma = 0.3
  c.counterfactual_points = 20
  # Perturbed chunks per restored state: with >= 3 the round also reports how well the planner's returns on
  # predicted latents rank them against the frozen heads on the true futures (Spearman, mean over states).
  c.counterfactual_chunks = 4
  # Episodes (fixed seeds, the first `eval_episodes` shared with the real evaluation) of the pretrained planner in
  # the sim domain at round 0: the reference the real return is compared with. More than `eval_episodes`, because
  # every sim episode draws a new domain (return std ~30 on CartPole, against ~3 in the fixed real world).
  c.sim_eval_episodes = 30 if paper else 16
  # Held-out real episodes (recorded once with the pretrained planner) for the prediction loss per horizon step.
  c.heldout_episodes = 5 if paper else 4
  # Finetuning gradient steps per round (Eq. 3, dynamics only; batch size and LR in model.finetune).
  c.finetune_steps = 20_000 if paper else 600
  # "pretrained": each round finetunes the pretrained model on all real data so far (j x finetune_steps);
  # "latest": each round continues from the previous round's model for finetune_steps.
  c.finetune_from = "latest"
  # Exploration noise on the collection episodes only (never on held-out or evaluation episodes): Gaussian noise
  # of std `explore_sigma` (action units) in noisy intervals of `explore_noisy_len` steps alternating with clean
  # intervals of `explore_clean_len` steps (inclusive ranges), like the sim data's corruption schedule. Not in the
  # paper, whose wide MPPI search (std 2.0) varies the actions by itself; 0 disables it.
  c.explore_sigma = 0.0 if paper else 0.5
  c.explore_noisy_len = (5, 20)
  c.explore_clean_len = (5, 40)
  # Share of every finetuning batch drawn from the sim dataset (windows of `<workdir>/data`), the rest from the real
  # episodes; still dynamics-only, latent loss only. 0 = the paper (real data only).
  c.sim_mix = 0.0
  # With `planner.advantage_gate` on: True keeps the gate only for the model that has not been finetuned on real
  # data (round 0's evaluation, round 1's collection and the held-out episodes) and plans ungated from round 1's
  # evaluation on, where the finetuned model's advice is what the loop is for; oracle (a), the ceiling, is then
  # the ungated planner. False: the gate as configured in every round. No effect with the gate off.
  c.gate_until_finetuned = False
  del task
  return c
