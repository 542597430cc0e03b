"""The config is validated once, at load: every bad value stops there, naming the key, the value and the range."""

import dataclasses
import re

import ml_collections
import pytest

from simdist_jax import cli
from simdist_jax import config as config_lib
from simdist_jax.experts import ppo
from simdist_jax.planner import mppi
from tests.conftest import CARTPOLE, ROOT

GO2 = str(ROOT / "experiments" / "configs" / "go2.py")


def _load(*overrides):
  return config_lib.load_config(f"{CARTPOLE}:small", [f"--config.{o}" for o in overrides])


# (override, what the message must say). Defaults of cartpole:small: model T = 10, latent 32 with 4 heads, data
# 1000 steps in shards of 250, 256 PPO envs in 8 minibatches over 600 iterations, 64 + 16 planner samples.
BAD = [
    ("model.batch_size=0", r"model\.batch_size=0: must be an integer >= 1"),
    ("model.num_steps=0", r"model\.num_steps=0: must be an integer >= 1"),
    ("planner.discount=5", r"planner\.discount=5\.0: must be in \(0, 1\]"),
    ("planner.inverse_temperature=-1", r"planner\.inverse_temperature=-1\.0: must be > 0"),
    ("planner.action_low=2.0", r"planner\.action_low=2\.0: must be finite and <= action_high=1\.0"),
    ("planner.horizon=11", r"planner\.horizon=11: must be in \[1, model\.horizon T=10\]"),
    ("planner.num_elites=100", r"planner\.num_elites=100: must be in \[1, num_samples \+ num_prior_samples = 80\]"),
    ("planner.prior_share=-0.1", r"planner\.prior_share=-0\.1: must be in \[0, 1\]"),
    ("planner.init_std=-0.5", r"planner\.init_std=-0\.5: must be >= 0"),
    ("model.latent_dim=30", r"model\.dynamics_net\.num_heads=4: must be a divisor of model\.latent_dim=30"),
    ("model.policy_net.num_heads=3", r"model\.policy_net\.num_heads=3: must be a divisor of model\.latent_dim=32"),
    ("model.lr.warmup_steps=5000", r"model\.lr\.warmup_steps=5000: must be <= model\.lr\.decay_steps=3000"),
    ("model.finetune.lr.peak=0.0", r"model\.finetune\.lr\.peak=0\.0: must be > 0"),
    ("model.compute_dtype=float16", r"model\.compute_dtype='float16': must be one of \['float32', 'bfloat16'\]"),
    ("model.heads=bogus", r"invalid config: model\.heads must be 'sequence' or 'mlp', got 'bogus'"),  # make_spec's own
    ("model.finetune.train=everything", r"model\.finetune\.train='everything': must be one of \['dynamics', "
                                        r"'dynamics\+encoder', 'all'\]"),
    ("model.aug_noise.proprio=(0.01,)", r"model\.aug_noise\.proprio=\(0\.01,\): .*one per proprio channel "
                                        r"\(the task's P=5\)"),
    ("data.num_steps=1001", r"data\.num_steps \(1001\) must be a multiple of data\.shard_steps \(250\)"),  # GenConfig
    ("data.num_envs=0", r"data\.num_envs=0: must be an integer >= 1"),
    ("data.p_expert=1.5", r"data\.p_expert must be in \[0, 1\], got 1\.5"),
    ("data.sigma_min=2.0", r"data\.sigma_max=1\.0: must be >= data\.sigma_min=2\.0"),
    ("data.noisy_len=(5,1)", r"data\.noisy_len must be an inclusive range 1 <= lo <= hi, got \(5, 1\)"),
    ("data.eval_fraction=0.0", r"data\.eval_fraction=0\.0: must be in \(0, 1\)"),
    # Schedule's own checks
    ("expert.num_minibatches=7", r"expert\.num_envs \(256\) must be divisible by expert\.num_minibatches \(7\)"),
    ("expert.checkpoint_iterations=(0,700)", r"expert\.checkpoint_iterations \[700\] lie outside "
                                             r"\[0, num_iterations=600\]"),
    ("expert.num_iterations=-5", r"expert\.num_iterations must be >= 1, got -5"),
    ("expert.num_minibatches=0", r"expert\.num_minibatches=0: must be an integer >= 1"),
    ("expert.discounting=0.0", r"expert\.discounting=0\.0: must be in \(0, 1\]"),
    ("expert.activation=gelu", r"expert\.activation='gelu': must be one of \['elu', 'relu', 'swish', 'tanh'\]"),
    ("expert.eval_real_episodes=0", r"expert\.eval_real_episodes=0: must be an integer >= 1"),
    ("domain.sim.pole_mass=(0.2,0.1)", r"domain\.sim\.pole_mass=\(0\.2, 0\.1\): domain 'sim': parameter 'pole_mass' "
                                       r"has low 0\.2 > high 0\.1"),  # Domain's own
    ("domain.real.hinge_friction=0.0", r"domain\.real\.hinge_friction=0\.0: domain 'real': hinge_friction must be "
                                       r"> 0"),  # CartPole.validate_domain's own
    ("env.ctrl_dt=0.015", r"env\.ctrl_dt=0\.015: must be a positive multiple of the physics timestep 0\.01 s"),
    ("env.episode_length=0", r"env\.episode_length=0: must be an integer >= 1"),
    ("adapt.eval_episodes=0", r"adapt\.eval_episodes=0: must be an integer >= 1"),
    ("adapt.episodes_per_round=0", r"adapt\.episodes_per_round=0: must be an integer >= 1"),
    ("adapt.sim_mix=1.0", r"adapt\.sim_mix=1\.0: must be in \[0, 1\)"),
    ("adapt.explore_clean_len=(0,5)", r"adapt\.explore_clean_len=\(0, 5\): must be an inclusive integer range"),
    ("data.loading=disk", r"data\.loading='disk': must be one of \['memory', 'stream'\]"),
    ("run.log_every_s=0.0", r"run\.log_every_s=0\.0: must be > 0"),
    ("run.mesh=-2", r"run\.mesh=-2: must be an integer >= -1 \(0 or 1: one device, -1: every device"),
    ("run.mesh=100000", r"run\.mesh=100000: must be <= jax\.device_count\(\)=\d+"),  # divisibility: test_mesh.py
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_stops_at_load_naming_key_value_and_range(override, message):
  with pytest.raises(config_lib.ConfigError, match=message) as err:
    _load(override)
  # one bad value -> one problem, no cascade (a latent size no head count divides: all four transformers)
  problems = 4 if override == "model.latent_dim=30" else 1
  lines = str(err.value).splitlines()
  assert len(lines) == (1 if problems == 1 else problems + 1), str(err.value)


def test_every_problem_is_listed_at_once():
  with pytest.raises(config_lib.ConfigError) as err:
    _load("planner.discount=5", "model.batch_size=0", "data.p_expert=-1.0")
  msg = str(err.value)
  assert msg.startswith("3 invalid config values:")
  for key in ("planner.discount=5.0", "model.batch_size=0", "data.p_expert must be in [0, 1], got -1.0"):
    assert key in msg


@pytest.mark.parametrize("spec", [f"{CARTPOLE}:small", f"{CARTPOLE}:paper", f"{GO2}:small", f"{GO2}:paper"])
def test_shipped_presets_validate(spec):
  cfg = config_lib.load_config(spec)
  assert cfg.planner.horizon == 0  # derived in code, never copied from the model section
  pcfg = mppi.PlannerConfig.from_config(cfg.planner, model_horizon=cfg.model.horizon)
  assert pcfg.horizon == cfg.model.horizon == (10 if spec.endswith("small") else 25)


def test_go2_checks_use_the_go2_task():
  with pytest.raises(config_lib.ConfigError, match=r"domain\.sim\.joint_friction=\(0\.0, 0\.05\): .*joint_friction "
                                                   r"must be > 0"):
    config_lib.load_config(f"{GO2}:small", ["domain.sim.joint_friction=(0.0, 0.05)"])
  # per-dimension bounds (a config file may set them; a float key takes no sequence override) need A numbers
  plain = config_lib.load_config(f"{GO2}:small").to_dict()
  plain["planner"]["action_low"] = (-1.0, -1.0)
  with pytest.raises(config_lib.ConfigError, match=r"planner\.action_low=\(-1\.0, -1\.0\): must be a number or 12 "
                                                   r"numbers \(the task's action size A=12\)"):
    config_lib.validate(ml_collections.ConfigDict(plain))
  plain["planner"]["action_low"] = (-1.0,) * 12
  config_lib.validate(ml_collections.ConfigDict(plain))
  with pytest.raises(config_lib.ConfigError, match=r"env\.cmd_vx=\(1\.5, -0\.5\): must be an inclusive range"):
    config_lib.load_config(f"{GO2}:small", ["env.cmd_vx=(1.5, -0.5)"])


def test_planner_horizon_follows_a_model_horizon_override():
  default = _load()
  assert mppi.PlannerConfig.from_config(default.planner, model_horizon=default.model.horizon).horizon == 10
  cfg = _load("model.horizon=6")
  assert cfg.planner.horizon == 0
  assert mppi.PlannerConfig.from_config(cfg.planner, model_horizon=cfg.model.horizon).horizon == 6
  explicit = _load("model.horizon=6", "planner.horizon=4")
  assert mppi.PlannerConfig.from_config(explicit.planner, model_horizon=explicit.model.horizon).horizon == 4
  with pytest.raises(config_lib.ConfigError, match=r"planner\.horizon=8: must be in \[1, model\.horizon T=6\]"):
    _load("model.horizon=6", "planner.horizon=8")


@pytest.mark.parametrize("text", ["'(0,)'", "(0,)", "[0]", "0,", "0", " ( 0 , ) "])
def test_one_element_tuple_overrides(text):
  cfg = _load(f"expert.checkpoint_iterations={text}")
  assert cfg.expert.checkpoint_iterations == (0,)
  assert type(cfg.expert.checkpoint_iterations[0]) is int  # pylint: disable=unidiomatic-typecheck
  assert ppo.Schedule.from_config(cfg.expert).ladder == (0, 600)


def test_sequence_overrides_keep_element_types():
  assert _load("expert.checkpoint_iterations=()").expert.checkpoint_iterations == ()
  assert ppo.Schedule.from_config(_load("expert.checkpoint_iterations=()").expert).ladder == (600,)
  assert _load("expert.checkpoint_iterations=[0, 5, 300]").expert.checkpoint_iterations == (0, 5, 300)
  mass = _load("domain.sim.pole_mass=(0.1, 1)").domain.sim.pole_mass
  assert mass == (0.1, 1.0) and all(type(m) is float for m in mass)  # pylint: disable=unidiomatic-typecheck
  for text, message in [("(0.5,)", r"element 0\.5 is a float, expected int"),
                        ("('a',)", r"element 'a' is a str, expected int"),
                        ("(True,)", r"element True is a bool, expected int"),
                        ("(0, 5", r"not a sequence literal")]:
    with pytest.raises(config_lib.ConfigError, match=r"expert\.checkpoint_iterations=.*cannot parse as tuple: "
                       + message):
      _load(f"expert.checkpoint_iterations={text}")


def test_planner_config_rejects_bad_values_directly():
  ok = mppi.PlannerConfig()
  for change, message in [({"discount": 5.0}, r"discount=5\.0: must be in \(0, 1\]"),
                          ({"inverse_temperature": -1.0}, r"inverse_temperature=-1\.0: must be > 0"),
                          ({"action_low": 1.0, "action_high": -1.0}, r"action_low=1\.0: must be finite and <= "
                                                                      r"action_high=-1\.0")]:
    with pytest.raises(ValueError, match=message):
      dataclasses.replace(ok, **change)


def test_cli_bad_value_exits_2_before_any_stage_or_file(tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(ppo, "run_stage", lambda cfg, workdir: calls.append(workdir))
  wd = tmp_path / "wd"
  # a planner value that used to surface only in the adapt stage, hours later, stops the expert stage at load
  rc = cli.main(["expert", f"--config={CARTPOLE}:small", "--config.planner.discount=5", f"--workdir={wd}"])
  err = capsys.readouterr().err
  assert rc == 2 and re.search(r"planner\.discount=5\.0: must be in \(0, 1\]", err), err
  assert calls == [] and not wd.exists() and list(tmp_path.iterdir()) == []
  # control: the same call with a good value reaches the (patched) stage
  rc = cli.main(["expert", f"--config={CARTPOLE}:small", "--config.planner.discount=0.9", f"--workdir={wd}"])
  assert rc == 0 and calls == [wd.absolute()]
