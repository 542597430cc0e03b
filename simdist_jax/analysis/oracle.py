"""Oracle ceilings: the deployed MPPI search, with its candidates rolled out in the TRUE simulator.

The instrument that separates dynamics error, value-transfer error and search error (cartpole_science_review.md,
P1). At every control step of a closed-loop episode in a MuJoCo C twin (`RealEnv`), the twin's exact state
(qpos, qvel, the episode's domain parameters, task info) is copied into a batched MJX rollout of every candidate
action chunk (N candidates x T steps, the episode's own physics), and the candidates are scored one of four ways:

  heads  the frozen learned reward / value heads on the encoder of the TRUE future observations,
         R = sum_{k<h} g^k r_hat_k + g^h V_hat_{t+h} with z_{t+1..t+T} = E(o_{t+1..t+T}) in place of z_hat.
         In the real world this is what perfect dynamics finetuning could reach (SimDist only finetunes the
         dynamics); in the sim domain it is the ceiling of the pretrained planner.
  ve     the true rewards + the expert critic V^e at s_{t+h}, with the domain parameters in its privileged input
         replaced by the sim domain's nominal values (the critic never saw real parameters: feeding them would
         extrapolate it, cartpole_science_review.md finding 3).
  critic the true rewards + another critic (e.g. PPO trained in the real world) at s_{t+h}, its privileged input
         normalized over the ranges it was trained on (`critic_domain`).
  true   the true rewards only (no bootstrap; h steps of look-ahead).

Everything else is the deployed planner: the same `PlannerConfig`, the policy head's chunk as prior and warm start
(`mppi.optimize`), the same history/context. So
  * heads(sim) below the policy head alone -> the heads/horizon are the problem, not the dynamics;
  * heads(real) well below critic(real) -> the frozen heads do not transfer to this world;
  * heads(real) high while adaptation stalls -> dynamics learning or its data is the problem.

Dimension letters: N candidates, T model horizon, h planning horizon, A action, P/E/C obs dims, S privileged.

Command line (one run directory, one world, several scorers side by side, same seeds):
  python -m simdist_jax.analysis.oracle --workdir runs/cartpole_small --world real --scorer heads --scorer ve \
      --episodes 20
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any, Callable, Mapping, NamedTuple

from brax.envs.base import State
import jax
import jax.numpy as jnp
from mujoco import mjx
import numpy as np

from simdist_jax.envs.base import MjxEnv
from simdist_jax.envs.domain import Domain
from simdist_jax.planner import controller as ctrl_lib
from simdist_jax.planner import mppi

SCORERS = ("heads", "ve", "critic", "true")


class Rollout(NamedTuple):
  """Batched true rollouts of N candidate chunks: state obs [N, T, P+E+C], rewards [N, T] (r_t..r_{t+T-1}),
  privileged obs for the critics [N, T, S] (after each step), done [N, T]."""
  obs: jax.Array
  rewards: jax.Array
  priv: jax.Array
  done: jax.Array


def snapshot_state(env: MjxEnv, params: Mapping[str, jax.Array], qpos: jax.Array, qvel: jax.Array,
                   task_info: Mapping[str, jax.Array], rng: jax.Array) -> State:
  """An MJX env state at the given physics state and domain parameters (the twin's `get_state()`)."""
  template = env.reset(rng)  # right pytree structure (metrics, info keys); its draws are all overwritten
  model = env.model_for(params)
  data = template.pipeline_state.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32),
                                         ctrl=jnp.zeros(model.nu))
  data = mjx.forward(model, data)
  info = dict(template.info)
  info.update(domain=dict(params), task=dict(task_info))
  return template.replace(pipeline_state=data, info=info)


def rollout(env: MjxEnv, start: State, actions: jax.Array, priv_params: Mapping[str, jax.Array] | None = None,
            priv_reference: Domain | None = None) -> Rollout:
  """Steps one env state through `actions` [T, A] (lax.scan); vmap it over candidates at the call site.

  `priv_params` / `priv_reference`: the domain parameters and the normalization ranges written into the
  privileged observation the critics read (default: the episode's own parameters over the env's sim ranges,
  i.e. what the env itself observes).
  """
  task = env.task

  def step(state, a):
    nxt = env.step(state, a)
    if priv_params is None and priv_reference is None:
      priv = nxt.obs["privileged_state"]
    else:
      phys = task.physics(nxt.pipeline_state)
      params = priv_params if priv_params is not None else nxt.info["domain"]
      ref = priv_reference if priv_reference is not None else env.sim_domain
      priv = task.observe(phys, params, nxt.info["task"], jax.random.PRNGKey(0), ref)["privileged_state"]
    return nxt, (nxt.obs["state"], nxt.reward, priv, nxt.done)

  _, (obs, rew, priv, done) = jax.lax.scan(step, start, actions)
  return Rollout(obs, rew, priv, done)


def _discount(cfg: mppi.PlannerConfig, rewards: jax.Array, value_h: jax.Array | None) -> jax.Array:
  """The planner's discounting (`mppi.discounted_return`) with a scalar terminal value V_h (or none)."""
  values = None if value_h is None else jnp.broadcast_to(value_h, (cfg.horizon,))
  return mppi.discounted_return(cfg, rewards.astype(jnp.float32), values)


def _check_scorer(scorer: str, critic_apply: Any) -> None:
  """ValueError for an unknown scorer, or a critic scorer without its critic."""
  if scorer not in SCORERS:
    raise ValueError(f"scorer {scorer!r} not in {SCORERS}")
  if scorer in ("ve", "critic") and critic_apply is None:
    raise ValueError(f"scorer {scorer!r} needs critic_apply")


def true_score_fn(cfg: mppi.PlannerConfig, wm: Any, env: MjxEnv, scorer: str, variables: Any, ctx: Any,
                  commands: jax.Array, prior_chunk: jax.Array, start: State,
                  critic_apply: Callable[[Any, jax.Array], jax.Array] | None = None, critic_params: Any = None,
                  priv_params: Mapping[str, jax.Array] | None = None, priv_reference: Domain | None = None
                  ) -> Callable[[jax.Array], jax.Array]:
  """Candidates [N, h, A] -> returns [N], each candidate rolled out in the TRUE simulator from `start` (padded
  with the policy chunk's tail to T steps) and scored by `scorer` (module docstring: heads, critic/ve, true).
  `priv_params` / `priv_reference`: what the critic's privileged input holds (see `rollout`)."""
  _check_scorer(scorer, critic_apply)
  p_dim, e_dim = int(env.task.dims["proprio"]), int(env.task.dims["extero"])
  h = cfg.horizon
  tail = prior_chunk[h:]

  def score_one(actions):  # [h, A] -> scalar
    full = jnp.concatenate([actions, tail], axis=0)
    roll = rollout(env, start, full, priv_params, priv_reference)
    if scorer == "heads":
      p_fut, e_fut = roll.obs[:, :p_dim], roll.obs[:, p_dim:p_dim + e_dim]
      z_true = jax.vmap(lambda p, e: wm.encode(variables, p, e))(p_fut, e_fut)  # [T, Z]
      r_hat, v_hat = wm.predict_returns(variables, ctx, z_true, full, commands)
      return mppi.discounted_return(cfg, r_hat, v_hat)
    if scorer == "true":
      return _discount(cfg, roll.rewards, None)
    return _discount(cfg, roll.rewards, critic_apply(critic_params, roll.priv[h - 1]))

  return jax.vmap(score_one)


def make_oracle_act(cfg: mppi.PlannerConfig, wm: Any, env: MjxEnv, scorer: str,
                    critic_apply: Callable[[Any, jax.Array], jax.Array] | None = None,
                    critic_domain: Domain | None = None, jit: bool = True) -> Callable[..., Any]:
  """`fn(variables, critic_params, ctrl_state, proprio_t, extero_t, commands, sim) -> (action, ctrl_state, info)`.

  `sim` = {"params", "qpos", "qvel", "task_info", "rng"} from `RealEnv.get_state()` (the twin's exact state).
  The history and context are the deployed controller's (`controller.history_inputs`), the search is
  `mppi.optimize` with the policy head's chunk as prior; only the scorer differs (module docstring).
  """
  _check_scorer(scorer, critic_apply)
  h = cfg.horizon
  if scorer == "ve":
    priv_params, priv_ref = env.sim_domain.nominal(), env.sim_domain
  elif scorer == "critic":
    priv_params, priv_ref = None, critic_domain
  else:
    priv_params, priv_ref = None, None

  def fn(variables, critic_params, state: ctrl_lib.ControllerState, proprio_t, extero_t, commands, sim):
    proprio_t = jnp.asarray(proprio_t, jnp.float32)
    extero_t = jnp.asarray(extero_t, jnp.float32)
    proprio_hist, action_hist = ctrl_lib.history_inputs(state, proprio_t)
    ctx = wm.context(variables, proprio_hist, action_hist, proprio_t, extero_t)
    prior_chunk = wm.policy_chunk(variables, ctx, commands)  # [T, A]
    start = snapshot_state(env, sim["params"], sim["qpos"], sim["qvel"], sim["task_info"], sim["rng"])
    score = true_score_fn(cfg, wm, env, scorer, variables, ctx, commands, prior_chunk, start, critic_apply,
                          critic_params, priv_params, priv_ref)
    chunk, planner_state, info = mppi.optimize(cfg, score, prior_chunk[:h], state.planner)
    action = chunk[0]
    new_state = ctrl_lib.ControllerState(
        proprio_hist=jnp.concatenate([proprio_hist[1:], proprio_t[None]], axis=0),
        action_hist=jnp.concatenate([action_hist[1:], action[None]], axis=0),
        planner=planner_state, step=state.step + 1)
    return action, new_state, info

  return jax.jit(fn) if jit else fn


class OracleController:
  """Drop-in for `planner.controller.Controller` in `adapt.loop.run_episode`: reads the twin's exact state at
  every call (so it must be bound to the `RealEnv` the episode runs in)."""

  def __init__(self, cfg: mppi.PlannerConfig, wm: Any, variables: Any, real_env: Any, mjx_env: MjxEnv,
               scorer: str, key: jax.Array, critic: tuple[Any, Callable] | None = None,
               critic_domain: Domain | None = None) -> None:
    self.cfg, self.wm, self.variables, self.real_env = cfg, wm, variables, real_env
    self.dims = dict(real_env.task.dims)
    critic_params, critic_apply = critic if critic is not None else (None, None)
    self.critic_params = critic_params
    self._act = make_oracle_act(cfg, wm, mjx_env, scorer, critic_apply, critic_domain)
    self.latencies_s: list[float] = []
    self.reset(key)

  def reset(self, key: jax.Array) -> None:
    """New episode: empty history (front padding on the first call), zero plan."""
    self.state = ctrl_lib.init_controller(self.cfg, self.dims, self.wm.spec.history, key)

  def replace_last_action(self, applied: Any) -> None:
    """Overwrites the newest history action with the applied one (e.g. after exploration noise)."""
    applied = jnp.asarray(applied, jnp.float32).reshape(self.state.action_hist.shape[1:])
    self.state = self.state._replace(action_hist=self.state.action_hist.at[-1].set(applied))

  def __call__(self, proprio_t: Any, extero_t: Any = None, command: Any = None) -> np.ndarray:
    """The oracle's action for this step, planned from the bound twin's current exact state."""
    if extero_t is None:
      extero_t = np.zeros((int(self.dims.get("extero", 0)),), np.float32)
    commands = ctrl_lib.command_chunk(self.dims, self.wm.spec.horizon, command)
    snap = self.real_env.get_state()
    sim = {"params": snap["params"], "qpos": snap["qpos"], "qvel": snap["qvel"], "task_info": snap["task_info"],
           "rng": snap["rng"]}
    t0 = time.perf_counter()
    action, self.state, _ = self._act(self.variables, self.critic_params, self.state, proprio_t, extero_t,
                                      commands, sim)
    action = np.asarray(jax.block_until_ready(action))
    self.latencies_s.append(time.perf_counter() - t0)
    return action


# ---- command line ------------------------------------------------------------------------------------------
def _mean_ci(x: list[float]) -> dict:
  a = np.asarray(x, np.float64)
  half = 1.96 * a.std(ddof=1) / np.sqrt(a.size) if a.size > 1 else float("nan")
  return {"mean": float(a.mean()), "ci95": float(half), "n": int(a.size)}


def main(argv: list[str] | None = None) -> int:
  """`python -m simdist_jax.analysis.oracle`: several scorers side by side on the same seeds (module docstring)."""
  # pylint: disable=import-outside-toplevel
  from simdist_jax import config as config_lib
  from simdist_jax import paths
  from simdist_jax.adapt import evaluation
  from simdist_jax.envs.registry import make_domain, make_real_env, make_task
  from simdist_jax.experts import checkpoints as expert_ckpt
  from simdist_jax.world_model import checkpoint as ckpt_lib
  from simdist_jax.world_model import model as model_lib

  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="run directory (config.json, expert/, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default <workdir>/world_model)")
  ap.add_argument("--world", default="real", choices=("sim", "real"))
  ap.add_argument("--scorer", action="append", default=[], choices=SCORERS + ("policy", "planner"),
                  help="repeatable; 'policy' = the policy head alone, 'planner' = the deployed model planner")
  ap.add_argument("--critic-dir", default=None, help="expert dir of the critic for --scorer critic")
  ap.add_argument("--episodes", type=int, default=20)
  ap.add_argument("--seed-base", type=int, default=70_000, help="episode seeds seed-base + i")
  ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
  ap.add_argument("--out", default=None, help="JSON output (default <workdir>/oracle/<world>.json)")
  args = ap.parse_args(argv)

  workdir = pathlib.Path(args.workdir)
  cfg = config_lib.apply_overrides(config_lib.from_json((workdir / "config.json").read_text()), args.set)
  task = make_task(cfg)
  variables, _, dims = ckpt_lib.load(args.model or str(paths.model_dir(workdir)))
  wm = model_lib.make_world_model(cfg.model, dims)
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=wm.spec.horizon)
  real_env = make_real_env(cfg, args.world)
  mjx_env = MjxEnv(task, make_domain(cfg, args.world, task), sim_domain=make_domain(cfg, "sim", task))
  seeds = [args.seed_base + i for i in range(args.episodes)]
  out_path = pathlib.Path(args.out) if args.out else workdir / "oracle" / f"{args.world}.json"
  results = json.loads(out_path.read_text()) if out_path.exists() else {}
  for scorer in args.scorer or ["heads"]:
    t0 = time.perf_counter()
    if scorer in ("policy", "planner"):
      ctrl = evaluation.model_controller(pcfg, wm, variables, dims, policy_only=scorer == "policy",
                                         key=jax.random.PRNGKey(0))
    else:
      critic, critic_domain = None, None
      if scorer == "ve":
        critic = expert_ckpt.load_critic(paths.expert_dir(workdir))
      elif scorer == "critic":
        if not args.critic_dir:
          raise SystemExit("--scorer critic needs --critic-dir (an expert dir trained in the target world)")
        critic_cfg = config_lib.from_json((pathlib.Path(args.critic_dir) / "config.json").read_text())
        critic = expert_ckpt.load_critic(args.critic_dir)
        critic_domain = make_domain(critic_cfg, "sim", task)
      ctrl = OracleController(pcfg, wm, variables, real_env, mjx_env, scorer, jax.random.PRNGKey(0), critic,
                              critic_domain)
    ev = evaluation.evaluate_episodes(real_env, ctrl, seeds, evaluation.eval_grid(cfg))
    name = scorer if scorer in ("policy", "planner") else f"oracle_{scorer}"
    results[name] = {"return": _mean_ci(ev["returns"]), "success": _mean_ci(ev["success"]),
                     "returns": ev["returns"], "success_per_episode": ev["success"], "seeds": seeds,
                     "wall_s": time.perf_counter() - t0}
    print(f"[oracle] {args.world} {name:14s} return {results[name]['return']['mean']:6.1f} "
          f"+- {results[name]['return']['ci95']:.1f} (95% CI, {len(seeds)} eps)  success "
          f"{results[name]['success']['mean']:.2f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    config_lib.atomic_write_text(out_path, json.dumps(results, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
