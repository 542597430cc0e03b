"""Config section `refine`: sim on-policy refinement of the dynamics before deployment (simdist_jax/adapt/refine.py).

Not in the paper: its planner is deployed on the pretrained model. `rounds = 0` (every preset) makes the stage a
no-op, and `adapt` plans with `world_model/` itself.
"""
import ml_collections


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `refine` section for `task` at `preset` (`small` or `paper`: both off)."""
  del task, preset, dims
  c = ml_collections.ConfigDict()
  # R: rounds of (collect planner episodes in sim, finetune the pretrained dynamics on all of them); 0 = off.
  c.rounds = 0
  # M: sim planner episodes per round (every episode a new DR domain and initial state); at most 100.
  c.episodes_per_round = 10
  # Eq. 3 steps per round: round j finetunes the PRETRAINED model for j x finetune_steps steps on all sim planner
  # episodes so far (batch size, learning rate and the trained subtree: model.finetune).
  c.finetune_steps = 600
  # Share of every finetuning batch drawn from the sim dataset (`<workdir>/data`), the rest from the sim planner
  # episodes: keeps the expert's and the ladder's states in the loss.
  c.sim_mix = 0.5
  # Exploration noise on the collection episodes, as `adapt.explore_*` (std in action units, then the inclusive
  # lengths of the noisy and the clean intervals); 0 disables it.
  c.explore_sigma = 1.0
  c.explore_noisy_len = (5, 20)
  c.explore_clean_len = (5, 40)
  # Counterfactual branches (simdist_jax/adapt/branches.py): at `branch_points` steps of every collection episode the
  # twin's state is saved and `branches_per_point` open-loop rollouts of the emitted plan + N(0, branch_sigma^2)
  # (T + 1 steps) are recorded as short episodes after the trunk's last H steps, then the state is restored; the
  # finetuning uses them next to the trunk episodes. 0 = no branches (the refinement of docs/results.md).
  c.branch_points = 0
  c.branches_per_point = 2
  c.branch_sigma = 0.3
  # Sim episodes (fixed seeds, new domains) on which the policy head, the pretrained planner and the refined planner
  # are evaluated after the last round, with paired CIs (refine_results.json); 0 skips the evaluation.
  c.eval_episodes = 20
  return c
