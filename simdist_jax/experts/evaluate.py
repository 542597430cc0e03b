"""Evaluate the expert's checkpoint ladder in the sim domain (MJX) and the shifted real domain (MuJoCo C twin).

`simdist-jax expert-eval` -> `run_stage(cfg, workdir)`: for every ladder checkpoint k, the mean/std return of
  sim:  `cfg.expert.eval_sim_episodes` episodes on `make_env(cfg, "sim")` (fresh DR domain per episode), all in
        parallel in one jitted scan (compiled once; checkpoints only change the params argument);
  real: `cfg.expert.eval_real_episodes` episodes on `make_real_env(cfg)` with the fixed seeds
        eval_seed .. eval_seed + n - 1 (the same seeds for every checkpoint).
Writes `<workdir>/expert/expert_eval.json` and `expert_ladder.png` (return vs checkpoint, both domains).

Shapes: N episodes, S privileged obs, A actions. Returns are undiscounted sums of the per-step reward over
`cfg.env.episode_length` steps (an early termination stops the sum).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.adapt import evaluation
from simdist_jax.envs.registry import make_env, make_real_env, make_task
from simdist_jax.experts import checkpoints as ckpt


def default_actor_apply_fn(cfg: Any) -> Callable:
  """The loader `apply_fn(params, obs[S]) -> action[A]` for `cfg`'s expert architecture."""
  dims = make_task(cfg).dims
  return ckpt.actor_apply_fn(ckpt.network_meta(cfg.expert, dims["privileged"], dims["action"]))


def make_sim_evaluator(cfg: Any, apply_fn: Callable | None, num_episodes: int, which: str = "sim",
                       env: Any = None) -> Callable[[Any, jax.Array], jax.Array]:
  """Jitted `f(params, key) -> returns[N]`: N parallel deterministic episodes on the MJX env `which`.

  `apply_fn(params, privileged_obs[S]) -> action[A]` (default: the config's expert actor). New params of the same
  structure reuse the compiled function. `env`: an unwrapped brax env to use instead of `make_env(cfg, which)`.
  """
  env = env or make_env(cfg, which)
  apply_fn = apply_fn or default_actor_apply_fn(cfg)
  length = int(cfg.env.episode_length)
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")

  @jax.jit
  def run(params: Any, key: jax.Array) -> jax.Array:
    states = jax.vmap(env.reset)(jax.random.split(key, num_episodes))

    def step(carry, _):
      st, ret, alive = carry
      action = jax.vmap(apply_fn, in_axes=(None, 0))(params, st.obs["privileged_state"])
      st = jax.vmap(env.step)(st, action)
      ret = ret + alive * st.reward
      alive = alive * (1.0 - st.done)
      return (st, ret, alive), None

    zeros = jnp.zeros((num_episodes,))
    (_, ret, _), _ = jax.lax.scan(step, (states, zeros, jnp.ones((num_episodes,))), None, length=length)
    return ret

  return run


def evaluate_policy_sim(cfg: Any, params: Any, apply_fn: Callable | None, num_episodes: int,
                        key: jax.Array, env: Any = None) -> dict:
  """Mean/std return of `apply_fn(params, .)` over `num_episodes` parallel sim episodes: {mean, std, returns}.

  For repeated calls (a ladder) build the jitted function once with `make_sim_evaluator`.
  """
  rets = np.asarray(make_sim_evaluator(cfg, apply_fn, num_episodes, env=env)(params, key))
  return {"mean": float(rets.mean()), "std": float(rets.std()), "returns": rets.tolist()}


class ObsPolicyController:
  """`policy_fn(obs) -> action` on the twin's whole obs dict as a stateless host controller for
  `adapt.evaluation.run_episode(..., full_obs=True)` (the privileged expert reads `obs["privileged_state"]`)."""

  def __init__(self, policy_fn: Callable[[dict], Any]) -> None:
    self.policy_fn = policy_fn

  def reset(self, key: jax.Array) -> None:
    """Stateless: nothing to reset."""
    del key

  def replace_last_action(self, applied: Any) -> None:
    """No action history to correct."""
    del applied

  def __call__(self, obs: dict) -> np.ndarray:
    """The policy's action on the whole obs dict, as float32."""
    return np.asarray(self.policy_fn(obs), np.float32)


def evaluate_policy_real(cfg: Any, policy_fn: Callable[[dict], Any], seeds: Sequence[int],
                         env: Any = None) -> dict:
  """Mean/std return over one real-domain episode (MuJoCo C twin) per seed: {mean, std, returns, seeds}.

  Args:
    cfg: config (domain `real`, episode length).
    policy_fn: `policy_fn(obs) -> action[A]` with `obs` the twin's numpy dict {"state", "privileged_state"}.
    seeds: one episode per seed; episode key `jax.random.key(seed)` (domain draw + initial state).
    env: optional prebuilt `RealEnv` (default `make_real_env(cfg)`).
  """
  env = env or make_real_env(cfg)
  controller = ObsPolicyController(policy_fn)
  rets = np.asarray([evaluation.run_episode(env, controller, key, full_obs=True, reset_key=key)["return"]
                     for key in (jax.random.key(int(seed)) for seed in seeds)])
  return {"mean": float(rets.mean()), "std": float(rets.std()), "returns": rets.tolist(),
          "seeds": [int(s) for s in seeds]}


def evaluate_ladder(cfg: Any, expert_dir: Any, sim_episodes: int, real_seeds: Sequence[int],
                    log: Callable[[str], None] = print) -> dict:
  """Sim and real returns of every ladder checkpoint in `expert_dir` (see module docstring)."""
  ladder = ckpt.load_ladder(expert_dir, cfg)
  actor = default_actor_apply_fn(cfg)
  sim_eval = make_sim_evaluator(cfg, actor, sim_episodes)
  jit_actor = jax.jit(actor)
  real_env = make_real_env(cfg)
  key = jax.random.key(int(cfg.expert.eval_seed))
  rows = []
  for k, it in enumerate(ladder.iterations):
    t0 = time.time()
    params = jax.tree.map(lambda x, k=k: x[k], ladder.params)
    sim = np.asarray(sim_eval(params, key))
    real = evaluate_policy_real(cfg, lambda o, params=params: jit_actor(params, o["privileged_state"]),
                                real_seeds, env=real_env) if len(real_seeds) else None
    row = {"index": k, "iteration": int(it), "expert": k == ladder.expert_id,
           "sim": {"mean": float(sim.mean()), "std": float(sim.std()), "episodes": int(sim.size)},
           "real": None if real is None else {"mean": real["mean"], "std": real["std"], "returns": real["returns"]}}
    rows.append(row)
    log(f"[expert-eval] checkpoint {k} (iter {it}): sim {row['sim']['mean']:.1f} ± {row['sim']['std']:.1f}"
        + (f" | real {real['mean']:.1f} ± {real['std']:.1f}" if real else "") + f" ({time.time() - t0:.1f}s)")
  return {"task": cfg.task, "episode_length": int(cfg.env.episode_length), "sim_episodes": int(sim_episodes),
          "real_seeds": [int(s) for s in real_seeds], "real_domain": dict(cfg.domain.real),
          "checkpoints": rows}


def plot_ladder(result: dict, path: Any) -> None:
  """Return vs checkpoint iteration (mean ± std), sim and real."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  rows = result["checkpoints"]
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(7, 4))
  for dom, color in (("sim", "tab:blue"), ("real", "tab:red")):
    if rows[0][dom] is None:
      continue
    m = np.array([r[dom]["mean"] for r in rows])
    s = np.array([r[dom]["std"] for r in rows])
    ax.plot(x, m, "o-", color=color, label=dom)
    ax.fill_between(x, m - s, m + s, color=color, alpha=0.2)
  ax.set_xticks(x, [str(r["iteration"]) for r in rows], rotation=45)
  ax.set_xlabel("checkpoint (PPO iteration; last = expert)")
  ax.set_ylabel(f"episode return ({result['episode_length']} steps)")
  ax.set_title(f"{result['task']}: expert checkpoint ladder")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _eval_seeds(cfg: Any) -> list[int]:
  e = cfg.expert
  return list(range(int(e.eval_seed), int(e.eval_seed) + int(e.eval_real_episodes)))


def is_complete(cfg: Any, workdir: Any) -> bool:
  """True when `expert_eval.json` exists and was made for this real domain, episode count and seeds (a changed
  `domain.real` keeps the expert but reruns its evaluation)."""
  path = paths.expert_dir(workdir) / "expert_eval.json"
  if not path.exists():
    return False
  old = json.loads(path.read_text())
  return (old.get("real_domain") == json.loads(json.dumps(dict(cfg.domain.real)))
          and old.get("sim_episodes") == int(cfg.expert.eval_sim_episodes)
          and old.get("real_seeds") == _eval_seeds(cfg))


def run_stage(cfg: Any, workdir: Any) -> dict:
  """`simdist-jax expert-eval`: writes expert_eval.json and expert_ladder.png in `<workdir>/expert/`."""
  ed = paths.expert_dir(workdir)
  result = evaluate_ladder(cfg, ed, int(cfg.expert.eval_sim_episodes), _eval_seeds(cfg))
  config_lib.atomic_write_text(ed / "expert_eval.json", json.dumps(result, indent=2))
  plot_ladder(result, ed / "expert_ladder.png")
  print(f"[expert-eval] wrote {ed / 'expert_eval.json'} and {ed / 'expert_ladder.png'}", flush=True)
  return result
