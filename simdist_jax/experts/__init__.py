"""Stage 1: the privileged PPO expert, its critic and its checkpoint ladder (paper §2.2)."""
