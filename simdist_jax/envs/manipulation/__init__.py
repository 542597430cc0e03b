"""Manipulation tasks (SimDist's UR5e assembly tasks): our own MJCF of a Cartesian end-effector stage holding a peg
over a hole fixture (model.py), the Peg Insertion task (peg.py), its shifted worlds (worlds.py) and the Narrow /
Wide grids of initial conditions (grids.py). See docs/manipulation.md.

Importing this package registers the task `peg_insertion` (`simdist_jax.envs.registry.make_task` imports it on
demand).
"""

from simdist_jax.envs.registry import register_task


def _peg_insertion(env_cfg):
  from simdist_jax.envs.manipulation.peg import PegConfig, PegInsertion  # pylint: disable=import-outside-toplevel
  return PegInsertion(PegConfig.from_env_cfg(env_cfg))


register_task("peg_insertion", _peg_insertion)
