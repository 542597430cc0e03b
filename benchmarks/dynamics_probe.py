"""Does the world model's dynamics use the actions? Latent prediction error on held-out sim windows.

For each horizon step k, the mean squared latent error ||z_hat_{t+k} - E(o_{t+k})||^2 / Z with (a) the recorded
future actions, (b) the actions of another window (shuffled), (c) zero actions, and (d) the persistence baseline
z_hat_{t+k} = z_t. A model that uses the actions is clearly better with (a) than with (b)/(c), and beats (d).

The probe is `simdist_jax.analysis.probes.action_probe`; this script loads a run, calls it and prints.

  python benchmarks/dynamics_probe.py --workdir runs/cartpole_small [--windows 512]
"""

from __future__ import annotations

import argparse
import pathlib

import jax

from simdist_jax import config as config_lib
from simdist_jax import paths
from simdist_jax.analysis import probes
from simdist_jax.data import windows
from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib


def main() -> None:
  """Parses the command line, runs the probe on held-out windows and prints the table."""
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="run directory (config.json, data/, world_model/)")
  ap.add_argument("--model", default=None, help="world-model checkpoint dir (default: <workdir>/world_model)")
  ap.add_argument("--windows", type=int, default=512, help="held-out windows to average over")
  args = ap.parse_args()
  cfg = config_lib.from_json((pathlib.Path(args.workdir) / "config.json").read_text())
  variables, _, dims = ckpt_lib.load(args.model or str(paths.model_dir(args.workdir)))
  wm = model_lib.make_world_model(cfg.model, dims)
  H, T = wm.spec.history, wm.spec.horizon
  batch = windows.load_from_config(cfg, args.workdir).sample_eval(jax.random.PRNGKey(0), args.windows)
  res = probes.action_probe(wm, variables, batch, H, T)
  print(f"model {args.model or paths.model_dir(args.workdir)}: latent MSE per step on {args.windows} held-out windows")
  print("step k  true actions  shuffled  zero actions  persistence (z_t)")
  for k in range(T):
    print(f"{k + 1:6d}  {res['true'][k]:12.4f}  {res['shuffled'][k]:8.4f}  {res['zero'][k]:12.4f}  "
          f"{res['persistence'][k]:17.4f}")


if __name__ == "__main__":
  main()
