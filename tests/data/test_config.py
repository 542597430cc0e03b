"""The `data` config section and its conversion to GenConfig."""

import pytest

from experiments.configs.sections import data as data_section
from simdist_jax.config import load_config
from simdist_jax.data.generate import GenConfig


def test_cartpole_config_converts():
  cfg = load_config("experiments/configs/cartpole.py:small")
  g = GenConfig.from_config(cfg)
  assert g.noisy_len == (5, 30) and g.clean_len == (5, 40) and g.p_expert == 0.5
  assert (g.sigma_min, g.sigma_max) == (0.2, 1.0)
  assert g.never_noised_frac == 0.025 and g.episode_length == 250 and g.num_shards == 4
  assert g.obs_dtypes == {"proprio": "float16", "extero": "float16", "command": "float16"}


def test_task_presets_follow_the_paper():
  go2 = data_section.get("go2", "paper", {})
  assert (go2.num_envs, go2.num_steps) == (4096, 25_000)
  assert tuple(go2.noisy_len) == (1, 50) and tuple(go2.clean_len) == (25, 500)
  assert (go2.sigma_min, go2.sigma_max) == (0.05, 2.5)
  manip = data_section.get("ur5e", "small", {})
  assert tuple(manip.noisy_len) == (1, 5) and tuple(manip.clean_len) == (5, 10)


def test_invalid_settings_name_the_field():
  with pytest.raises(ValueError, match=r"num_steps \(1000\) must be a multiple of data.shard_steps \(300\)"):
    GenConfig(num_envs=4, num_steps=1000, shard_steps=300, episode_length=100)
  with pytest.raises(ValueError, match=r"data.noisy_len must be an inclusive range 1 <= lo <= hi, got \(0, 5\)"):
    GenConfig(num_envs=4, num_steps=100, shard_steps=50, episode_length=100, noisy_len=(0, 5))
