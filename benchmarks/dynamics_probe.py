"""Does the world model's dynamics use the actions? Latent prediction error on held-out sim windows.

For each horizon step k, the mean squared latent error ||z_hat_{t+k} - E(o_{t+k})||^2 / Z with (a) the recorded
future actions, (b) the actions of another window (shuffled), (c) zero actions, and (d) the persistence baseline
z_hat_{t+k} = z_t. A model that uses the actions is clearly better with (a) than with (b)/(c), and beats (d).

  python benchmarks/dynamics_probe.py --workdir runs/cartpole_small [--windows 512]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from simdist_jax import config as config_lib  # noqa: E402
from simdist_jax import paths  # noqa: E402
from simdist_jax.data import windows  # noqa: E402
from simdist_jax.world_model import checkpoint as ckpt_lib  # noqa: E402
from simdist_jax.world_model import model as model_lib  # noqa: E402
from simdist_jax.world_model.losses import split_window  # noqa: E402


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="run directory (config.json, data/, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default: <workdir>/world_model)")
  ap.add_argument("--windows", type=int, default=512, help="held-out windows to average over")
  args = ap.parse_args()
  cfg = config_lib.from_json((pathlib.Path(args.workdir) / "config.json").read_text())
  variables, _, dims = ckpt_lib.load(args.model or str(paths.model_dir(args.workdir)))
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  ds = windows.load_from_config(cfg, args.workdir)
  batch = ds.sample_eval(jax.random.PRNGKey(0), args.windows)

  def one(win, actions):
    w = split_window(win, H, T)
    ctx = wm.context(variables, w.proprio_hist, w.action_hist, w.proprio_t, w.extero_t)
    z_hat = wm.predict_latents(variables, ctx, actions)
    z_true = jax.vmap(lambda p, e: wm.encode(variables, p, e))(w.proprio_next, w.extero_next)
    return jnp.mean((z_hat - z_true) ** 2, -1), jnp.mean((ctx.z[None] - z_true) ** 2, -1)

  f = jax.jit(jax.vmap(one))
  actions = batch["action"][:, H:H + T]
  err, persist = f(batch, actions)
  shuffled, _ = f(batch, actions[np.random.default_rng(0).permutation(actions.shape[0])])
  zero, _ = f(batch, jnp.zeros_like(actions))
  print(f"model {args.model or paths.model_dir(args.workdir)}: latent MSE per step on {args.windows} held-out windows")
  print("step k  true actions  shuffled  zero actions  persistence (z_t)")
  for k in range(T):
    print(f"{k + 1:6d}  {float(err[:, k].mean()):12.4f}  {float(shuffled[:, k].mean()):8.4f}  "
          f"{float(zero[:, k].mean()):12.4f}  {float(persist[:, k].mean()):17.4f}")


if __name__ == "__main__":
  main()
