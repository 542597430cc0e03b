"""A cheap brax env with the project's observation layout, so expert tests compile in seconds instead of minutes.

1-D point: x_{t+1} = clip(x_t + 0.2 a_t, -2, 2), a in [-1, 1]; reward r = 1 - min(|x_{t+1} - g|, 1). The goal g is
the episode's "domain" (uniform in [-1, 1], drawn at every reset), visible only in `privileged_state` = [x, g];
`state` = [x]. The oracle `a = clip((g - x) / 0.2, -1, 1)` is optimal (it closes the gap as fast as possible).
"""

from brax.envs.base import Env, State
import jax
import jax.numpy as jnp

STEP = 0.2


class PointEnv(Env):
  """See module docstring."""

  @property
  def observation_size(self):
    return {"state": (1,), "privileged_state": (2,)}

  @property
  def action_size(self) -> int:
    return 1

  @property
  def backend(self) -> str:
    return "jax"

  def _obs(self, x, g):
    return {"state": x[None], "privileged_state": jnp.stack([x, g])}

  def reset(self, rng: jax.Array) -> State:
    k_x, k_g, k_rng = jax.random.split(rng, 3)
    x = jax.random.uniform(k_x, (), minval=-1.0, maxval=1.0)
    g = jax.random.uniform(k_g, (), minval=-1.0, maxval=1.0)
    return State(pipeline_state=x, obs=self._obs(x, g), reward=jnp.zeros(()), done=jnp.zeros(()),
                 metrics={"dist": jnp.abs(x - g)}, info={"domain": {"goal": g}, "rng": k_rng})

  def step(self, state: State, action: jax.Array) -> State:
    g = state.info["domain"]["goal"]
    x = jnp.clip(state.pipeline_state + STEP * jnp.clip(action[0], -1.0, 1.0), -2.0, 2.0)
    dist = jnp.abs(x - g)
    return state.replace(pipeline_state=x, obs=self._obs(x, g), reward=1.0 - jnp.minimum(dist, 1.0),
                         metrics={"dist": dist})


def oracle_action(privileged_obs: jax.Array) -> jax.Array:
  """The optimal action [1] from privileged obs [x, g]."""
  return jnp.clip((privileged_obs[..., 1:2] - privileged_obs[..., 0:1]) / STEP, -1.0, 1.0)
