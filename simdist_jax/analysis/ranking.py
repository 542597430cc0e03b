"""How well does a world model rank action chunks? Predicted vs true chunk returns in the MuJoCo C twin.

For states visited by the policy head (the world model's base policy; episodes through `run_episode`) in the twin,
`ranking_study` samples N action chunks a_{t:t+h} = policy_chunk + sigma * eps (the first one noise-free), scores
each with the model (the planner's discounted return) and with the simulator (sum_k gamma^k r_{t+k} of the true
rollout from the restored state + gamma^h V^e(s_{t+h}), V^e the expert critic: the value labels the model was
trained on), and returns per sigma the mean over probed states of:
  rho: Spearman(model return, true return); rho_reward / rho_value: the reward sum over h / V at step h alone;
  rho_reward_on_true_z / rho_value_on_true_z: the heads applied to E(o_{t+1..t+h}) of the TRUE rollout;
  z_r2: share of the action-induced variation of z_{t+h} (across the N chunks) that the prediction explains;
  regret_best: true return of the best sample minus that of the model's argmax;
  gain_vs_prior: true return of the model's argmax minus that of the noise-free policy chunk.

Dimension letters: N chunks, h planning horizon, T model horizon, Z latent, A actions.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.adapt.evaluation import run_episode
from simdist_jax.analysis.stats import spearman
from simdist_jax.planner import mppi
from simdist_jax.planner.controller import history_inputs, init_controller

METRICS = ("rho", "rho_reward", "rho_value", "rho_reward_on_true_z", "rho_value_on_true_z", "z_r2", "regret_best",
           "gain_vs_prior")


def z_r2(z_true: np.ndarray, z_pred: np.ndarray) -> float:
  """1 - SSE / SST of predicted vs true [N, Z] latents, both centred over N (the action-induced variation)."""
  zt = z_true - z_true.mean(0)
  zp = z_pred - z_pred.mean(0)
  return 1.0 - float(((zp - zt) ** 2).sum() / max(float((zt ** 2).sum()), 1e-12))


def ranking_study(env: Any, wm: Any, variables: Any, dims: dict, pcfg: mppi.PlannerConfig,
                  critic: Callable[[Any], Any], seeds: Sequence[int], episode_length: int, every: int = 10,
                  samples: int = 32, sigmas: Sequence[float] = (0.05, 0.3, 1.0), rng_seed: int = 0) -> dict:
  """Chunk-ranking metrics of `wm` along policy-head episodes in `env` (see module docstring).

  Args:
    env: a `RealEnv` with `get_state` / `set_state`.
    wm: the world model.
    variables: its variables.
    dims: the dataset dims ("proprio", "extero", "action", optional "command").
    pcfg: planner config (horizon h <= T, discount gamma).
    critic: `critic(privileged_state) -> V^e` (the expert critic, params bound).
    seeds: one policy-head episode per seed through `adapt.evaluation.run_episode` (key PRNGKey(seed): the same
      domain draw and initial state as the evaluation's episode with that seed).
    episode_length: step cap per episode.
    every: probe the state every `every` steps while t + h < episode_length.
    samples: N chunks per state and sigma.
    sigmas: exploration scales.
    rng_seed: seed of the chunk noise.

  Returns:
    {"per_sigma": {sigma: {metric: mean over probed states}}, "episode_return": summed return of the
    policy-head episodes, "probed_states": number of probed states}.
  """
  H, T = wm.spec.history, wm.spec.horizon
  h, gamma = pcfg.horizon, pcfg.discount
  encode = jax.jit(jax.vmap(lambda p, e: wm.encode(variables, p, e)))

  @jax.jit
  def model_step(variables, cstate, proprio, extero, commands, chunks, z_true):
    ph, ah = history_inputs(cstate, proprio)
    ctx = wm.context(variables, ph, ah, proprio, extero)
    prior = wm.policy_chunk(variables, ctx, commands)
    disc = gamma ** jnp.arange(h)

    def score(actions, z_true):
      full = jnp.concatenate([actions, prior[h:]], axis=0)
      z_hat = wm.predict_latents(variables, ctx, full)
      r, v = wm.predict_returns(variables, ctx, z_hat, full, commands)
      r_t, v_t = wm.predict_returns(variables, ctx, z_true, full, commands)  # heads on the TRUE latents
      return (mppi.discounted_return(pcfg, r, v), jnp.sum(disc * r[:h]), v[h - 1], jnp.sum(disc * r_t[:h]),
              v_t[h - 1], z_hat[h - 1])
    return prior, jax.vmap(score)(chunks, z_true)

  def true_return(s, chunk):
    """-> (discounted reward sum, V^e(s_h), observations o_{t+1..t+T} [T, P+E] for the true latents)."""
    env.set_state(s)
    rsum, obs, states = 0.0, None, []
    for k in range(h):
      obs, r, _, _ = env.step(chunk[k])
      rsum += gamma ** k * r
      states.append(obs["state"])
    states += [states[-1]] * (T - h)
    return rsum, float(critic(jnp.asarray(obs["privileged_state"]))), np.stack(states)

  P, E, A = int(dims["proprio"]), int(dims["extero"]), int(dims["action"])
  commands = np.zeros((T + 1, int(dims.get("command", 0))), np.float32)
  rng = np.random.default_rng(rng_seed)
  res = {s: {k: [] for k in METRICS} for s in sigmas}
  probed = 0

  def probe(cstate, proprio, extero, prior):
    """All sigmas' chunks from the env's current state (restored afterwards)."""
    s = env.get_state()
    for sigma in sigmas:
      eps = rng.standard_normal((samples, h, A)).astype(np.float32)
      chunks = np.clip(prior[None, :h] + sigma * eps, -1, 1)
      chunks[0] = prior[:h]
      outs = [true_return(s, c) for c in chunks]
      r_true = np.array([o[0] for o in outs])
      v_true = np.array([o[1] for o in outs])
      true = r_true + gamma ** h * v_true
      states = np.stack([o[2] for o in outs])  # [N, T, P+E+C]
      n_obs = states.shape[0] * states.shape[1]
      z_true = np.asarray(encode(states[..., :P].reshape(n_obs, -1),
                                 states[..., P:P + E].reshape(n_obs, -1))).reshape(len(chunks), T, -1)
      _, (pred, r_hat, v_hat, r_on_true, v_on_true, z_last) = model_step(
          variables, cstate, proprio, extero, commands, chunks, z_true)
      pred = np.asarray(pred)
      out = res[sigma]
      out["z_r2"].append(z_r2(z_true[:, h - 1], np.asarray(z_last)))
      out["rho"].append(spearman(pred, true))
      out["rho_reward"].append(spearman(np.asarray(r_hat), r_true))
      out["rho_value"].append(spearman(np.asarray(v_hat), v_true))
      out["rho_value_on_true_z"].append(spearman(np.asarray(v_on_true), v_true))
      out["rho_reward_on_true_z"].append(spearman(np.asarray(r_on_true), r_true))
      out["regret_best"].append(true.max() - true[int(np.argmax(pred))])
      out["gain_vs_prior"].append(true[int(np.argmax(pred))] - true[0])
    env.set_state(s)

  class PolicyHeadProber:
    """The policy head (first action of its chunk) as a `run_episode` controller that probes every `every` steps."""

    def reset(self, key: jax.Array) -> None:
      del key
      self.cstate, self.t = init_controller(pcfg, dims, H, jax.random.PRNGKey(0)), 0

    def replace_last_action(self, applied) -> None:
      del applied

    def __call__(self, proprio, extero, command=None) -> np.ndarray:
      nonlocal probed
      del command  # the chunks are scored with zero commands
      prior, _ = model_step(variables, self.cstate, proprio, extero, commands, np.zeros((1, h, A), np.float32),
                            np.zeros((1, T, wm.spec.latent_dim), np.float32))
      prior = np.asarray(prior)
      if self.t % every == 0 and self.t + h < episode_length:
        probed += 1
        probe(self.cstate, proprio, extero, prior)
      a = prior[0]
      ph, ah = history_inputs(self.cstate, proprio)
      self.cstate = self.cstate._replace(proprio_hist=jnp.concatenate([ph[1:], proprio[None]], 0),
                                         action_hist=jnp.concatenate([ah[1:], a[None]], 0),
                                         step=self.cstate.step + 1)
      self.t += 1
      return a

  prober = PolicyHeadProber()
  ep_return = sum(run_episode(env, prober, jax.random.PRNGKey(int(seed)), max_steps=episode_length)["return"]
                  for seed in seeds)
  return {"per_sigma": {s: {k: float(np.nanmean(v)) for k, v in res[s].items()} for s in sigmas},
          "episode_return": ep_return, "probed_states": probed}
