"""Unitree Go2 locomotion (SimDist's quadruped task): our own MJCF, terrains, task and shifted worlds.

Importing this package registers the task `go2` (`simdist_jax.envs.registry.make_task` imports it on demand).
"""

from simdist_jax.envs.registry import register_task


def _go2(env_cfg):
  from simdist_jax.envs.go2.task import Go2, Go2Config  # pylint: disable=import-outside-toplevel
  return Go2(Go2Config.from_env_cfg(env_cfg))


register_task("go2", _go2)
