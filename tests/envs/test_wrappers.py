"""Training wrappers: what the auto-reset hands to `reset` with and without a curriculum (a pure-jnp env)."""

from typing import NamedTuple

from brax.envs.base import Env, State
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax.envs.wrappers import wrap_for_training


class _Pipeline(NamedTuple):
  qpos: jax.Array


class _CountingEnv(Env):
  """A one-coordinate pure-jnp env (no physics, compiles in a second) whose task_info counts episodes and
  keeps the previous episode's last position, to test what the auto-reset hands to `reset`."""

  def reset(self, rng, previous=None):
    x = 0.01 * jax.random.normal(rng, (1,))
    if previous is None:
      task = {"episodes": jnp.zeros((), jnp.int32), "last_x": jnp.zeros(())}
    else:
      task = {"episodes": previous["task"]["episodes"] + 1, "last_x": previous["qpos"][0]}
    return State(pipeline_state=_Pipeline(x), obs=x, reward=jnp.zeros(()), done=jnp.zeros(()), metrics={},
                 info={"task": task, "domain": {}, "rng": rng})

  def step(self, state, action):
    x = state.pipeline_state.qpos + action
    return state.replace(pipeline_state=_Pipeline(x), obs=x)

  @property
  def observation_size(self):
    return 1

  @property
  def action_size(self):
    return 1

  @property
  def backend(self):
    return "none"


@pytest.mark.parametrize("curriculum", [True, False])
def test_curriculum_auto_reset_passes_the_ended_episode_to_the_task(curriculum):
  w = wrap_for_training(_CountingEnv(), episode_length=3, curriculum=curriculum)
  s = jax.jit(w.reset)(jax.random.split(jax.random.PRNGKey(0), 4))
  x0 = np.asarray(s.pipeline_state.qpos[:, 0])
  wstep = jax.jit(w.step)
  a = jnp.array([[0.5], [-1.0], [2.0], [0.25]])
  for _ in range(3):
    s = wstep(s, a)
  assert np.all(np.asarray(s.done) == 1)                    # the third step ends every episode
  episodes, last_x = np.asarray(s.info["task"]["episodes"]), np.asarray(s.info["task"]["last_x"])
  assert np.abs(np.asarray(s.pipeline_state.qpos[:, 0])).max() < 0.1   # a fresh start
  if curriculum:   # the reset saw each env's own end state: x0 + 3 a
    np.testing.assert_array_equal(episodes, 1)
    np.testing.assert_allclose(last_x, x0 + 3 * np.asarray(a[:, 0]), atol=1e-6)
  else:
    np.testing.assert_array_equal(episodes, 0)
    np.testing.assert_array_equal(last_x, 0.0)
