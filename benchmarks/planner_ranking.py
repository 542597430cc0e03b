"""How well does a world model rank action chunks? Predicted vs true chunk returns in the MuJoCo C twin.

For states visited by the policy head (world model's base policy) in the C twin, sample N action chunks
a_{t:t+h} = policy_chunk + sigma * eps, score each with the model (the planner's discounted return) and with the
simulator (sum_k gamma^k r_{t+k} from the true rollout + gamma^h V^e(s_{t+h}), V^e the expert critic: the value
labels the model was trained on). Prints, per sigma, the mean Spearman rank correlation over states and the
true-return regret of the model's argmax vs the best sample and vs the noise-free policy chunk.

  python benchmarks/planner_ranking.py --workdir runs/cartpole_small [--model DIR] [--domain sim|real]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from simdist_jax import config as config_lib  # noqa: E402
from simdist_jax import paths  # noqa: E402
from simdist_jax.envs.registry import make_real_env, make_task  # noqa: E402
from simdist_jax.experts.checkpoints import load_critic  # noqa: E402
from simdist_jax.planner import mppi  # noqa: E402
from simdist_jax.planner.controller import history_inputs, init_controller  # noqa: E402
from simdist_jax.world_model import checkpoint as ckpt_lib  # noqa: E402
from simdist_jax.world_model import model as model_lib  # noqa: E402


def _rank(x: np.ndarray) -> np.ndarray:
  r = np.empty(len(x))
  r[np.argsort(x)] = np.arange(len(x))
  return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  ra, rb = _rank(a), _rank(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
  return float((ra * rb).sum() / den) if den > 0 else 0.0


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="run directory (config.json, expert/, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default: <workdir>/world_model)")
  ap.add_argument("--domain", default="sim", choices=("sim", "real"))
  ap.add_argument("--seeds", default="1000", help="comma-separated episode seeds")
  ap.add_argument("--every", type=int, default=10, help="probe every k-th step of the episode")
  ap.add_argument("--samples", type=int, default=32)
  ap.add_argument("--sigmas", default="0.05,0.3,1.0")
  ap.add_argument("--horizon", type=int, default=None, help="planning horizon h <= T (default: the config's)")
  args = ap.parse_args()

  workdir = pathlib.Path(args.workdir)
  cfg = config_lib.from_json((workdir / "config.json").read_text())
  dims = make_task(cfg).dims
  mdir = args.model or str(paths.model_dir(workdir))
  variables, _, dims = ckpt_lib.load(mdir)
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  planner_section = cfg.planner.to_dict()
  if args.horizon is not None:
    planner_section["horizon"] = args.horizon
  pcfg = mppi.PlannerConfig.from_config(planner_section, model_horizon=T)
  h, gamma = pcfg.horizon, pcfg.discount
  critic_params, critic_fn = load_critic(paths.expert_dir(workdir))
  critic = jax.jit(critic_fn)
  env = make_real_env(cfg, args.domain)
  sigmas = [float(s) for s in args.sigmas.split(",")]

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

  snapshot, restore = env.get_state, env.set_state

  def true_return(s, chunk):
    """-> (discounted reward sum, V^e(s_h), observations o_{t+1..t+T} [T, P+E] for the true latents)."""
    restore(s)
    rsum, obs, states = 0.0, None, []
    for k in range(h):
      obs, r, done, info = env.step(chunk[k])
      rsum += gamma ** k * r
      states.append(obs["state"])
    states += [states[-1]] * (T - h)
    return rsum, float(critic(critic_params, jnp.asarray(obs["privileged_state"]))), np.stack(states)

  C = int(dims.get("command", 0))
  commands = np.zeros((T + 1, C), np.float32)
  rng = np.random.default_rng(0)
  keys = ("rho", "rho_reward", "rho_value", "rho_reward_on_true_z", "rho_value_on_true_z", "z_r2", "regret_best",
          "gain_vs_prior")
  res = {s: {k: [] for k in keys} for s in sigmas}
  ep_return = 0.0
  for seed in [int(x) for x in args.seeds.split(",")]:
    # The same episode as `adapt.loop.run_episode` / benchmarks/planner_eval.py with this seed: the environment
    # resets with the first half of split(PRNGKey(seed)), so both scripts see the same domain draw.
    key_env, _ = jax.random.split(jax.random.PRNGKey(seed))
    obs = env.reset(key_env)
    cstate = init_controller(pcfg, dims, H, jax.random.PRNGKey(0))
    for t in range(cfg.env.episode_length):
      proprio, extero, _ = (np.asarray(x) for x in env.task.split_state(obs["state"]))
      dummy = np.zeros((1, h, dims["action"]), np.float32)
      prior, _ = model_step(variables, cstate, proprio, extero, commands, dummy,
                            np.zeros((1, T, wm.spec.latent_dim), np.float32))
      prior = np.asarray(prior)
      if t % args.every == 0 and t + h < cfg.env.episode_length:
        s = snapshot()
        for sigma in sigmas:
          eps = rng.standard_normal((args.samples, h, dims["action"])).astype(np.float32)
          chunks = np.clip(prior[None, :h] + sigma * eps, -1, 1)
          chunks[0] = prior[:h]
          outs = [true_return(s, c) for c in chunks]
          r_true = np.array([o[0] for o in outs])
          v_true = np.array([o[1] for o in outs])
          true = r_true + gamma ** h * v_true
          states = np.stack([o[2] for o in outs])  # [N, T, P+E+C]
          p_true, e_true = states[..., :dims["proprio"]], states[..., dims["proprio"]:dims["proprio"] + dims["extero"]]
          n_obs = p_true.shape[0] * p_true.shape[1]
          z_true = np.asarray(encode(p_true.reshape(n_obs, -1), e_true.reshape(n_obs, -1)))
          z_true = z_true.reshape(len(chunks), T, -1)
          _, (pred, r_hat, v_hat, r_on_true, v_on_true, z_last) = model_step(variables, cstate, proprio, extero, commands,
                                                                      chunks, z_true)
          pred = np.asarray(pred)
          # share of the action-induced variation of z_{t+h} (across the N chunks) that the prediction explains
          zt = z_true[:, h - 1] - z_true[:, h - 1].mean(0)
          zp = np.asarray(z_last) - np.asarray(z_last).mean(0)
          res[sigma]["z_r2"].append(1.0 - float(((zp - zt) ** 2).sum() / max(float((zt ** 2).sum()), 1e-12)))
          res[sigma]["rho"].append(spearman(pred, true))
          res[sigma]["rho_reward"].append(spearman(np.asarray(r_hat), r_true))
          res[sigma]["rho_value"].append(spearman(np.asarray(v_hat), v_true))
          res[sigma]["rho_value_on_true_z"].append(spearman(np.asarray(v_on_true), v_true))
          res[sigma]["rho_reward_on_true_z"].append(spearman(np.asarray(r_on_true), r_true))
          res[sigma]["regret_best"].append(true.max() - true[int(np.argmax(pred))])
          res[sigma]["gain_vs_prior"].append(true[int(np.argmax(pred))] - true[0])
        restore(s)
      a = prior[0]
      ph, ah = history_inputs(cstate, proprio)
      cstate = cstate._replace(proprio_hist=jnp.concatenate([ph[1:], proprio[None]], 0),
                               action_hist=jnp.concatenate([ah[1:], a[None]], 0), step=cstate.step + 1)
      obs, r, done, _ = env.step(a)
      ep_return += r
      if done:
        break
  print(f"model {mdir}, domain {args.domain}, policy-head episode return {ep_return:.1f}, h={h}")
  print("Spearman rank correlations with the simulator (mean over probed states); reward = discounted reward sum"
        " over h, value = V at step h; 'on true z' = the heads applied to E(o_{t+1..t+h}) of the TRUE rollout;"
        " regret / gain in true-return units")
  print("sigma  return  reward  value  reward(true z)  value(true z)  z_h R2  regret(argmax vs best)  "
        "gain(argmax vs prior)")
  out = {}
  for sigma in sigmas:
    r = res[sigma]
    o = out[sigma] = {k: float(np.mean(v)) for k, v in r.items()}
    print(f"{sigma:5.2f}  {o['rho']:6.3f}  {o['rho_reward']:6.3f}  {o['rho_value']:5.3f}  "
          f"{o['rho_reward_on_true_z']:14.3f}  {o['rho_value_on_true_z']:13.3f}  {o['z_r2']:6.3f}  "
          f"{o['regret_best']:22.3f}  "
          f"{o['gain_vs_prior']:21.3f}")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
