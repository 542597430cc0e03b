"""CartPole expert end to end (slow: MJX compilation takes minutes on 2 cores): train, load, evaluate sim and real."""

import jax
import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax.experts import checkpoints as ckpt
from simdist_jax.experts import evaluate
from simdist_jax.experts import ppo


@pytest.mark.slow
def test_short_cartpole_run_improves_over_the_initial_policy(tmp_path):
  # Measured on the full small run: deterministic sim return 30.1 at iteration 0, 45.1 at 40 (64 episodes).
  cfg = config_lib.load_config("experiments/configs/cartpole.py:small", [
      "expert.num_iterations=40", "expert.checkpoint_iterations=(0,)", "expert.resume_every_iterations=0",
      "expert.train_eval_episodes=0", "expert.eval_real_episodes=2"])
  ppo.run_stage(cfg, tmp_path)
  assert ppo.is_complete(cfg, tmp_path) and ckpt.list_ladder(tmp_path / "expert") == [0, 40]
  ladder = ckpt.load_ladder(tmp_path / "expert", cfg)
  sim_eval = evaluate.make_sim_evaluator(cfg, lambda p, o: ladder.apply_fn(p[0], p[1], o), 128)
  key = jax.random.key(0)
  first, last = (float(np.mean(sim_eval((ladder.params, k), key))) for k in (0, 1))
  assert last >= first + 8.0, (first, last)
  params, apply_fn = ckpt.load_policy(tmp_path / "expert", -1, cfg)
  act = jax.jit(apply_fn)
  real = evaluate.evaluate_policy_real(cfg, lambda o: act(params, o["privileged_state"]), [1000, 1001])
  assert len(real["returns"]) == 2 and 0.0 <= real["mean"] <= cfg.env.episode_length
