"""Single-step BC: it recovers a linear expert from a dataset where half the actions are noise (masked by the
expert flag), it deploys in raw units within the action bounds, and the `baseline --algo=bc` CLI names its stage."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from simdist_jax import cli
from simdist_jax import config as config_lib
from simdist_jax import stages
from simdist_jax.baselines import bc
from simdist_jax.data import scaler as scaler_lib
from simdist_jax.data import windows
from simdist_jax.world_model import model as model_lib
from tests.conftest import CARTPOLE
from tests.world_model import tiny_config

DIMS = {"proprio": 3, "extero": 0, "extero_shape": (), "action": 2, "command": 1}
W = np.array([[1.5, -2.0, 0.5], [0.0, 1.0, -1.0]], np.float32)  # the expert: a = W p + [2, -1] c
V = np.array([2.0, -1.0], np.float32)


def _dataset(num_episodes=60, length=40, seed=0):
  rng = np.random.default_rng(seed)
  m = num_episodes * length
  proprio = rng.normal(size=(m, 3)).astype(np.float32)
  command = rng.uniform(-1, 1, size=(m, 1)).astype(np.float32)
  expert = proprio @ W.T + command * V
  flag = (rng.uniform(size=m) < 0.5).astype(np.uint8)
  noise = rng.normal(scale=3.0, size=(m, 2)).astype(np.float32)  # corrupted steps: unrelated to the state
  action = np.where(flag[:, None] > 0, expert, noise).astype(np.float32)
  arrays = {"proprio": proprio, "extero": np.zeros((m, 0), np.float32), "action": action, "command": command,
            "reward": np.zeros(m, np.float32), "value": np.zeros(m, np.float32), "expert_flag": flag,
            "mask": np.ones(m, np.uint8)}
  ids = np.repeat(np.arange(num_episodes, dtype=np.int32), length)
  stats = scaler_lib.compute_stats(arrays, 1e-4)
  ds = windows.WindowDataset(arrays, ids, 0, 1, stats, DIMS, 0.2, jax.random.PRNGKey(seed), 0, 0)
  return ds, arrays, expert, flag


def _bc_config(**kw):
  c = ml_collections.ConfigDict(dict(hidden=(64, 64), num_steps=1500, batch_size=128, chunk_steps=500,
                                     eval_batches=8, grad_clip=1.0,
                                     lr=dict(peak=3e-3, warmup_steps=50, decay_steps=1500, end=1e-4)))
  c.update(kw)
  return bc.BCConfig.from_config(c)


@pytest.fixture(scope="module")
def trained():
  ds, arrays, expert, flag = _dataset()
  spec = model_lib.make_spec(tiny_config(DIMS).model, DIMS)
  bcfg = _bc_config()
  actor = bc.make_actor(spec, bcfg)
  scaler = model_lib.make_scaler(ds.stats)
  params, summary = bc.train(actor, bcfg, ds, scaler, jax.random.PRNGKey(1), log=lambda s: None)
  return ds, arrays, expert, flag, actor, params, scaler, summary


def test_bc_recovers_the_expert_and_ignores_the_noised_steps(trained):
  ds, arrays, expert, flag, actor, params, scaler, summary = trained
  assert summary["bc/steps"] == 1500
  held = bc.heldout_metrics(actor, params, scaler, ds, jax.random.PRNGKey(2), 256, 8)
  # the expert is linear in the inputs: BC must get far below the best constant action on held-out episodes
  assert held["bc/heldout_mse_over_constant"] < 0.05, held
  # on the corrupted steps it predicts the expert's law, not the noise it was never trained on
  batch = {k: jnp.asarray(v[:, None]) for k, v in arrays.items()}
  pred = np.asarray(model_lib.unscale(scaler, "action", bc.predict(actor, params, scaler, batch)))
  noised = flag == 0
  err_vs_expert = np.mean((pred[noised] - expert[noised]) ** 2)
  err_vs_label = np.mean((pred[noised] - arrays["action"][noised]) ** 2)
  assert err_vs_expert < 0.05 * err_vs_label, (err_vs_expert, err_vs_label)


def test_without_the_mask_bc_fits_worse(trained):
  ds, arrays, expert, flag, actor, params, scaler, _ = trained
  arrays2 = dict(arrays, expert_flag=np.ones_like(arrays["expert_flag"]))  # every step counted as expert
  ids = np.repeat(np.arange(60, dtype=np.int32), 40)
  ds2 = windows.WindowDataset(arrays2, ids, 0, 1, ds.stats, DIMS, 0.2, jax.random.PRNGKey(0), 0, 0)
  params2, _ = bc.train(actor, _bc_config(num_steps=500, chunk_steps=500), ds2, scaler, jax.random.PRNGKey(1),
                        log=lambda s: None)
  batch = {k: jnp.asarray(v[:, None]) for k, v in arrays.items()}
  keep = flag > 0
  def err(p):
    pred = np.asarray(model_lib.unscale(scaler, "action", bc.predict(actor, p, scaler, batch)))
    return np.mean((pred[keep] - expert[keep]) ** 2)
  assert err(params) < 0.25 * err(params2), (err(params), err(params2))


def test_controller_acts_in_raw_units_within_the_bounds(trained):
  _, arrays, expert, _, actor, params, scaler, _ = trained
  ctl = bc.PolicyController(actor, params, scaler, low=-1.0, high=(1.0, 0.5))
  wide = bc.PolicyController(actor, params, scaler, low=-100.0, high=100.0)
  for i in range(5):
    p, c = arrays["proprio"][i], arrays["command"][i]
    a = ctl(p, None, c)
    assert a.shape == (2,) and a[0] <= 1.0 and a[1] <= 0.5 and (a >= -1.0).all()
    np.testing.assert_allclose(wide(p, None, c), expert[i], atol=0.5)  # raw units: the expert's own action
    np.testing.assert_allclose(a, np.clip(wide(p, None, c), -1.0, [1.0, 0.5]), atol=1e-6)


def test_baseline_cli_names_the_stage_and_refuses_unknown_algorithms(capsys):
  args = cli._parser().parse_args(["baseline", "--algo", "bc", "--config", "x.py:small"])
  assert args.algo == "bc" and "bc" in stages.BASELINES and "baseline-bc" in stages.STAGES
  with pytest.raises(SystemExit):
    cli._parser().parse_args(["baseline", "--algo", "nope", "--config", "x.py:small"])
  assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_bc_config_is_validated_at_load():
  with pytest.raises(config_lib.ConfigError, match=r"baselines\.bc\.num_steps=0: must be an integer >= 1"):
    config_lib.load_config(CARTPOLE + ":small", ["baselines.bc.num_steps=0"])
  with pytest.raises(config_lib.ConfigError, match=r"baselines\.bc\.lr\.warmup_steps=5000"):
    config_lib.load_config(CARTPOLE + ":small", ["baselines.bc.lr.warmup_steps=5000"])


def test_bc_stage_depends_on_the_data_and_the_shared_protocol():
  assert stages.covers("baseline-bc", "baselines.bc.hidden")
  assert stages.covers("baseline-bc", "data.num_steps")          # through generate
  assert stages.covers("baseline-bc", "adapt.eval_episodes")     # the shared evaluation protocol
  assert stages.covers("baseline-bc", "domain.real")
  assert not stages.covers("baseline-bc", "model.num_steps")     # the world model's training is not its input
  assert not stages.covers("baseline-bc", "adapt.finetune_steps")
