"""Training wrappers: vmap, episode bookkeeping and an auto-reset that draws a NEW domain per episode.

brax's `AutoResetWrapper` restores the episode's cached first state and keeps `info`, so domain parameters
would be drawn once per env for the whole run. `DomainAutoResetWrapper` instead runs a full `reset` with a
fresh key for every env that is done (computed for the whole batch, selected with `where`), replacing the
physics state, the observation and the env-owned `info` entries (`domain`, `task`, `rng`).
With `curriculum=True` (PPO experts) that reset also gets how the env's episode ended
(`previous = {"task": last task_info, "qpos": last qpos}`, see `Task.initial_state`), so a task can move the
env along a curriculum (Go2's tile grid: a difficulty level up or down); data generation keeps it off.
"""

from __future__ import annotations

from brax.envs.base import Env, State, Wrapper
from brax.envs.wrappers.training import EpisodeWrapper, VmapWrapper
import jax
import jax.numpy as jnp

# info entries owned by wrappers (kept across auto-resets); everything else is env-owned and replaced.
_WRAPPER_INFO = frozenset({"steps", "truncation", "episode_done", "episode_metrics", "eval_metrics",
                           "first_pipeline_state", "first_obs", "reset_rng"})


class DomainAutoResetWrapper(Wrapper):
  """Batched auto-reset with a fresh key (hence a fresh domain and initial state) per finished episode.
  `curriculum`: pass each ended episode to the reset (module docstring)."""

  def __init__(self, env: Env, curriculum: bool = False):
    super().__init__(env)
    self.curriculum = bool(curriculum)

  def reset(self, rng: jax.Array) -> State:
    """Batched reset; also stores a per-env key stream (`info["reset_rng"]`) for the later auto-resets."""
    state = self.env.reset(rng)
    # A per-env key stream for future resets, independent of the key used for this reset.
    reset_rng = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(rng)
    return state.replace(info={**state.info, "reset_rng": reset_rng})

  def step(self, state: State, action: jax.Array) -> State:
    """Batched step; every env that ended this step is reset with a fresh key (wrapper-owned `info` kept)."""
    info = dict(state.info)
    if "steps" in info:
      info["steps"] = jnp.where(state.done, jnp.zeros_like(info["steps"]), info["steps"])
    state = state.replace(done=jnp.zeros_like(state.done), info=info)
    state = self.env.step(state, action)
    keys = jax.vmap(jax.random.split)(state.info["reset_rng"])
    next_rng, reset_keys = keys[:, 0], keys[:, 1]

    def reset_done(state: State) -> State:
      if self.curriculum:   # the unwrapped env's reset, vmapped, with each env's ended episode
        previous = {"task": state.info["task"], "qpos": state.pipeline_state.qpos}
        fresh = jax.vmap(self.env.unwrapped.reset)(reset_keys, previous)
      else:
        fresh = self.env.reset(reset_keys)
      done = state.done

      def where_done(new, old):
        d = jnp.reshape(done, done.shape + (1,) * (old.ndim - done.ndim))
        return jnp.where(d, new, old)

      info = dict(state.info)
      for k, v in fresh.info.items():
        if k not in _WRAPPER_INFO:
          info[k] = jax.tree.map(where_done, v, state.info[k])
      return state.replace(
          pipeline_state=jax.tree.map(where_done, fresh.pipeline_state, state.pipeline_state),
          obs=jax.tree.map(where_done, fresh.obs, state.obs),
          info=info)

    # The batched reset is only computed on steps where some episode ended (one `cond` for the whole batch;
    # episodes that truncate together, as in PPO, reset on 1 step in episode_length).
    state = jax.lax.cond(jnp.any(state.done > 0), reset_done, lambda s: s, state)
    return state.replace(info={**state.info, "reset_rng": next_rng})


def wrap_for_training(env: Env, episode_length: int = 1000, action_repeat: int = 1,
                      randomization_fn=None, curriculum: bool = False) -> Wrapper:
  """`wrap_env_fn` for `brax.training.agents.ppo.train`: Vmap -> Episode -> DomainAutoReset(curriculum).

  Domain randomization is the env's own (per episode), so `randomization_fn` must be None.
  """
  if randomization_fn is not None:
    raise ValueError("simdist_jax envs randomize their domain per episode; randomization_fn must be None")
  env = VmapWrapper(env)
  env = EpisodeWrapper(env, episode_length, action_repeat)
  return DomainAutoResetWrapper(env, curriculum=curriculum)
