"""Expert training on a cheap env: ladder schedule, resume after an interruption, loaders, selection, improvement.

One module fixture trains a tiny PPO expert on `PointEnv` (compiles in seconds): it is interrupted at iteration 20
by raising from the checkpoint hook, then the same call is repeated and resumes. Every test reads that run.
"""

import json
import os

from brax.training.agents.ppo import networks as ppo_networks
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simdist_jax import config as config_lib
from simdist_jax.experts import checkpoints as ckpt
from simdist_jax.experts import evaluate
from simdist_jax.experts import ppo
from tests.experts.point_env import PointEnv, oracle_action

CFG = "experiments/configs/cartpole.py:small"
LADDER = [0, 5, 10, 20, 40]
OVERRIDES = ["env.episode_length=10", "expert.num_envs=64", "expert.unroll_length=10", "expert.num_minibatches=4",
             "expert.num_updates_per_batch=4", "expert.num_iterations=40", "expert.checkpoint_iterations=(0,5,10,20)",
             "expert.resume_every_iterations=5", "expert.train_eval_episodes=32", "expert.learning_rate=0.003",
             # gamma 0.99 lets the critic drift on this 10-step task whose obs carry no time (v_loss grew to 1e6);
             # with 0.9 it fits (v_loss ~0.003) and PPO reaches ~8.4 of the oracle's 8.8 in 30 iterations.
             "expert.discounting=0.9"]


class Interrupt(Exception):
  pass


def _cfg(*extra):
  return config_lib.load_config(CFG, OVERRIDES + list(extra))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  cfg = _cfg()
  workdir = tmp_path_factory.mktemp("expert_run")
  ed = workdir / "expert"
  seen = []

  def stop_at_20(it):
    seen.append(it)
    if it == 20:
      raise Interrupt

  with pytest.raises(Interrupt):
    ppo.train(cfg, workdir, on_checkpoint=stop_at_20, env=PointEnv())
  before = {i: (ckpt.ladder_path(ed, i) / "meta.json").stat().st_mtime_ns for i in ckpt.list_ladder(ed)}
  resume_meta = json.loads((ed / "resume" / "meta.json").read_text())
  assert not ppo.is_complete(cfg, workdir)
  resumed = []
  ppo.train(cfg, workdir, on_checkpoint=resumed.append, env=PointEnv())
  return {"cfg": cfg, "workdir": workdir, "ed": ed, "seen": seen, "resumed": resumed, "before": before,
          "resume_meta": resume_meta}


def test_schedule_maps_iterations_to_epochs():
  paper = config_lib.load_config("experiments/configs/cartpole.py:paper")
  sched = ppo.Schedule.from_config(paper.expert)
  assert sched.ladder == (0, 50, 100, 150, 200, 250, 300, 400, 500, 1000, 2000, 5000)
  assert sched.steps_per_iteration == 4096 * 24
  assert sched.segment(0) == (50, 101)  # 100 epochs of 50 iterations
  assert sched.segment(1000) == (50, 81)
  small = ppo.Schedule.from_config(config_lib.load_config(CFG).expert)
  assert small.ladder == (0, 6, 12, 18, 24, 30, 36, 48, 60, 120, 240, 600)  # the paper's fractions of 600
  assert small.segment(0) == (6, 101)  # gcd(6, resume_every_iterations=30) = 6
  odd = ppo.Schedule.from_config(_cfg("expert.checkpoint_iterations=(0,6,9)", "expert.resume_every_iterations=0").expert)
  assert odd.segment(0) == (1, 41) and odd.segment(9) == (31, 2)
  with pytest.raises(config_lib.ConfigError, match=r"\[50\] lie outside \[0, num_iterations=40\]"):
    ppo.Schedule.from_config(_cfg("expert.checkpoint_iterations=(0,50)").expert)


def test_ladder_files_are_exactly_the_requested_iterations(run):
  ed = run["ed"]
  assert ckpt.list_ladder(ed) == LADDER
  assert sorted(p.name for p in (ed / "ladder").iterdir()) == [f"iter_{i:06d}" for i in LADDER]  # no tmp dirs
  assert not [p for p in ed.iterdir() if p.name.startswith(".")]
  for i in LADDER:
    meta = ckpt.read_meta(ckpt.ladder_path(ed, i))
    assert (meta["kind"], meta["iteration"], meta["env_steps"]) == ("actor", i, i * 64 * 10)
  assert ckpt.read_meta(ed / "critic")["iteration"] == 40
  assert ppo.is_complete(run["cfg"], run["workdir"])
  lines = [json.loads(l) for l in (ed / "metrics.jsonl").read_text().splitlines()]
  eval_steps = sorted({l["step"] for l in lines if "expert/eval/episode_reward" in l})
  assert eval_steps == [i * 640 for i in LADDER]
  assert any("expert/train/episode_reward" in l and "expert/train/sps" in l for l in lines)
  assert list(ed.glob("events.out.tfevents.*"))


def test_resume_keeps_ladder_complete_without_rewriting(run):
  # Interrupted at 20 (after saving ladder 0..20 and the resume state at 20); the rerun restarts from 20.
  assert run["seen"] == [5, 10, 15, 20]
  assert run["resume_meta"]["iteration"] == 20
  assert run["resumed"] == [25, 30, 35, 40]
  assert sorted(run["before"]) == [0, 5, 10, 20]
  for i, mtime in run["before"].items():  # checkpoints before the interruption were not rewritten
    assert (ckpt.ladder_path(run["ed"], i) / "meta.json").stat().st_mtime_ns == mtime
  assert ckpt.read_meta(run["ed"] / "resume")["iteration"] == 40
  assert ppo.run_stage(run["cfg"], run["workdir"]) is None  # complete -> skipped, nothing rewritten
  assert (ckpt.ladder_path(run["ed"], 0) / "meta.json").stat().st_mtime_ns == run["before"][0]


def test_training_reaches_the_oracle_and_the_ladder_spans_weak_to_strong(run):
  env, cfg, key = PointEnv(), run["cfg"], jax.random.key(7)
  oracle = evaluate.evaluate_policy_sim(cfg, None, lambda p, o: oracle_action(o), 512, key, env=env)["mean"]
  assert 8.6 < oracle < 9.1  # oracle 8.84 measured (512 episodes); zero action would give ~4.2 (1 - E min(|x-g|, 1))
  ladder = ckpt.load_ladder(run["ed"])
  sim_eval = evaluate.make_sim_evaluator(cfg, lambda p, o: ladder.apply_fn(p[0], p[1], o), 512, env=env)
  rets = [float(np.mean(sim_eval((ladder.params, jnp.int32(k)), key))) for k in range(len(LADDER))]
  assert rets[-1] >= 0.9 * oracle, (rets, oracle)
  assert rets[0] <= rets[-1] - 1.5, rets  # the initial policy is clearly weaker than the expert


def test_loaders_match_brax_inference(run):
  ed, cfg = run["ed"], run["cfg"]
  dims = ppo.env_dims(PointEnv())
  it, brax_params = ppo.load_resume(ed, cfg, dims)
  assert it == 40
  nets = ckpt.make_networks(dims["obs"], 1, cfg.expert.policy_hidden, cfg.expert.value_hidden,
                            cfg.expert.activation)
  brax_policy = ppo_networks.make_inference_fn(nets)(brax_params, deterministic=True)
  obs = jax.vmap(PointEnv().reset)(jax.random.split(jax.random.key(3), 16)).obs
  want, _ = brax_policy(obs, jax.random.key(0))
  params, apply_fn = ckpt.load_policy(ed, -1)
  got = jax.jit(jax.vmap(apply_fn, in_axes=(None, 0)))(params, obs["privileged_state"])
  np.testing.assert_allclose(got, want, atol=1e-6)
  assert got.shape == (16, 1) and float(jnp.abs(got).max()) <= 1.0
  np.testing.assert_allclose(apply_fn(params, obs["privileged_state"][0]), want[0], atol=1e-6)  # un-batched
  v_params, v_apply = ckpt.load_critic(ed)
  want_v = nets.value_network.apply(brax_params[0], brax_params[2], obs)
  got_v = jax.vmap(v_apply, in_axes=(None, 0))(v_params, obs["privileged_state"])
  assert got_v.shape == (16,) and v_apply(v_params, obs["privileged_state"][0]).shape == ()
  np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5)


def test_stacked_selection_equals_individual_loading(run):
  ladder = ckpt.load_ladder(run["ed"])
  assert ladder.iterations == tuple(LADDER) and ladder.expert_id == len(LADDER) - 1
  assert all(x.shape[0] == len(LADDER) for x in jax.tree.leaves(ladder.params))
  obs = jax.random.uniform(jax.random.key(1), (40, 2), minval=-1.0, maxval=1.0)
  ids = jnp.arange(40, dtype=jnp.int32) % len(LADDER)  # per-env policy ids
  got = jax.jit(jax.vmap(ladder.apply_fn, in_axes=(None, 0, 0)))(ladder.params, ids, obs)
  for k in range(len(LADDER)):
    params, apply_fn = ckpt.load_policy(run["ed"], k)
    selected = jax.tree.map(lambda x: x[k], ladder.params)  # noqa: B023
    assert jax.tree.structure(selected) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(selected), jax.tree.leaves(params), strict=False):
      np.testing.assert_array_equal(a, b)  # selection is bit-identical to loading checkpoint k alone
    want = jax.vmap(apply_fn, in_axes=(None, 0))(params, obs[ids == k])
    np.testing.assert_allclose(got[ids == k], want, rtol=0, atol=1e-6)  # float reassociation under jit only
  assert not np.allclose(got[ids == 0], got[ids == ladder.expert_id])


def test_bad_inputs_raise_clear_errors(run, tmp_path):
  import shutil
  ed = run["ed"]
  with pytest.raises(ckpt.CheckpointError, match="does not exist"):
    ckpt.load_policy(tmp_path / "nope", 0)
  with pytest.raises(ckpt.CheckpointError, match=r"ladder index 5 does not exist.*K=5.*\[0, 5, 10, 20, 40\]"):
    ckpt.load_policy(ed, 5)
  with pytest.raises(ckpt.CheckpointError, match="ladder index -6"):
    ckpt.load_policy(ed, -6)
  # The CartPole config (S=12) against PointEnv checkpoints (S=2).
  cartpole = config_lib.load_config(CFG, [o for o in OVERRIDES if "episode_length" not in o])
  with pytest.raises(ckpt.CheckpointError, match=r"(?s)iter_000000.*obs_size: checkpoint has 2, config \(task "
                     r"'cartpole'\) has 12"):
    ckpt.load_policy(ed, 0, cfg=cartpole)
  with pytest.raises(ckpt.CheckpointError, match="(?s)critic.*obs_size"):
    ckpt.load_critic(ed, cfg=cartpole)
  copy = tmp_path / "expert"
  shutil.copytree(ed, copy)
  os.remove(ckpt.ladder_path(copy, 40) / "meta.json")  # a half-written checkpoint is not listed
  assert ckpt.list_ladder(copy) == [0, 5, 10, 20]
  with pytest.raises(ckpt.CheckpointError, match=r"iter_000040.*incomplete or corrupt.*meta.json"):
    ckpt.load_actor_at(ckpt.ladder_path(copy, 40))
  (copy / "critic" / "meta.json").write_text("{not json")
  with pytest.raises(ckpt.CheckpointError, match=r"critic/meta.json' is not valid JSON"):
    ckpt.load_critic(copy)
  shutil.rmtree(ckpt.ladder_path(copy, 5) / "params")
  with pytest.raises(ckpt.CheckpointError, match=r"cannot restore expert checkpoint '.*iter_000005/params'"):
    ckpt.load_policy(copy, 1)
  # A different expert config refuses the directory; a different real domain does not.
  with pytest.raises(config_lib.ConfigError, match=r"expert.*different config.*expert"):
    ppo.prepare_expert_dir(_cfg("expert.entropy_cost=0.5"), run["workdir"])
  ppo.prepare_expert_dir(_cfg("domain.real.motor_gain=5.0"), run["workdir"])


def test_expert_eval_is_stale_after_a_real_domain_change(tmp_path):
  import json as _json
  from simdist_jax import paths as _paths
  cfg = config_lib.load_config("experiments/configs/cartpole.py:small")
  assert not evaluate.is_complete(cfg, tmp_path)
  ed = _paths.expert_dir(tmp_path)
  ed.mkdir(parents=True)
  seeds = list(range(cfg.expert.eval_seed, cfg.expert.eval_seed + cfg.expert.eval_real_episodes))
  (ed / "expert_eval.json").write_text(_json.dumps(
      {"real_domain": dict(cfg.domain.real), "sim_episodes": cfg.expert.eval_sim_episodes, "real_seeds": seeds}))
  assert evaluate.is_complete(cfg, tmp_path)
  moved = config_lib.load_config("experiments/configs/cartpole.py:small", ["domain.real.motor_gain=7.0"])
  assert not evaluate.is_complete(moved, tmp_path)  # the expert is kept, its real evaluation is redone
  fewer = config_lib.load_config("experiments/configs/cartpole.py:small", ["expert.eval_real_episodes=2"])
  assert not evaluate.is_complete(fewer, tmp_path)


DEAD_PID = 2 ** 22 + 4242  # above the default pid_max: no such process


def _killed_copy(run, tmp_path):
  import shutil
  wd = tmp_path / "wd"
  shutil.copytree(run["workdir"], wd)
  return wd, wd / "expert"


def test_killed_expert_save_resumes_from_its_last_resume_point(run, tmp_path, capsys):
  # A kill inside the final iteration's saves: ladder iter 40 and the critic not yet written, the resume state
  # (iteration 40) caught between the two renames of `save` (moved aside, the new copy still incomplete), and
  # ladder iter 20 caught the same way (moved aside, no new copy). Nothing is under the final names.
  import shutil
  wd, ed = _killed_copy(run, tmp_path)
  shutil.rmtree(ckpt.ladder_path(ed, 40))
  shutil.rmtree(ed / "critic")
  os.replace(ed / "resume", ed / f".resume.old-{DEAD_PID}-0a")
  (ed / f".resume.tmp-{DEAD_PID}-0b" / "params").mkdir(parents=True)  # killed before its meta.json
  os.replace(ckpt.ladder_path(ed, 20), ed / "ladder" / f".iter_000020.old-{DEAD_PID}-0c")
  assert not ppo.is_complete(run["cfg"], wd)

  def never(it):  # a silent restart from iteration 0 would reach the hook at iteration 5
    raise AssertionError(f"PPO trained again (hook at iteration {it})")

  ppo.train(run["cfg"], wd, on_checkpoint=never, env=PointEnv())
  out = capsys.readouterr().out
  assert "resuming from iteration 40" in out and "recovered: restored" in out
  assert ckpt.list_ladder(ed) == LADDER and ppo.is_complete(run["cfg"], wd)
  assert ckpt.read_meta(ed / "resume")["iteration"] == 40
  assert not [p for p in ed.iterdir() if p.name.startswith(".")]
  assert not [p for p in (ed / "ladder").iterdir() if p.name.startswith(".")]
  for a, b in zip(jax.tree.leaves(ckpt.load_policy(ed, -1)[0]), jax.tree.leaves(ckpt.load_policy(run["ed"], -1)[0]), strict=False):
    np.testing.assert_array_equal(a, b)  # the final actor re-exported from the recovered resume state


def test_recovery_prefers_the_complete_new_copy(run, tmp_path):
  # Killed between the renames with the new copy complete: the new state (not the moved-aside old one) wins.
  import shutil
  _, ed = _killed_copy(run, tmp_path)
  shutil.copytree(ed / "resume", ed / f".resume.old-{DEAD_PID}-1a")
  old_meta = json.loads((ed / f".resume.old-{DEAD_PID}-1a" / "meta.json").read_text())
  (ed / f".resume.old-{DEAD_PID}-1a" / "meta.json").write_text(json.dumps({**old_meta, "iteration": 20}))
  os.replace(ed / "resume", ed / f".resume.tmp-{DEAD_PID}-1b")
  it, _ = ppo.load_resume(ed, run["cfg"], ppo.env_dims(PointEnv()))
  assert it == 40 and sorted(p.name for p in ed.iterdir() if "resume" in p.name) == ["resume"]


def test_nonfinite_params_are_never_saved_and_stop_ppo(run, tmp_path, monkeypatch):
  import shutil
  wd, ed = _killed_copy(run, tmp_path)
  dims = ppo.env_dims(PointEnv())
  sched = ppo.Schedule.from_config(run["cfg"].expert)
  it, (norm, policy, value) = ppo.load_resume(ed, run["cfg"], dims)
  bad = jax.tree.map(lambda x: np.full_like(np.asarray(x), np.nan), policy)
  with pytest.raises(ckpt.NonFiniteParamsError, match=r"refusing to save the resume checkpoint .*resume' at PPO "
                     r"iteration 40: non-finite parameters \(\['policy'\]"):
    ppo.save_resume(ed, run["cfg"], dims, sched, it, (norm, bad, value))
  assert ckpt.read_meta(ed / "resume")["iteration"] == 40 and not [p for p in ed.iterdir() if p.name[0] == "."]
  # A diverged resume state on disk (written before this guard existed): PPO stops instead of saving NaN actors.
  with monkeypatch.context() as m:
    m.setattr(ckpt, "nonfinite_leaves", lambda tree, limit=8: [])
    ppo.save_resume(ed, run["cfg"], dims, sched, it, (norm, bad, value))
  shutil.rmtree(ckpt.ladder_path(ed, 40))
  with pytest.raises(ckpt.NonFiniteParamsError, match=r"actor checkpoint .*iter_000040"):
    ppo.train(run["cfg"], wd, env=PointEnv())
  assert 40 not in ckpt.list_ladder(ed) and not (ed / "ladder" / "iter_000040").exists()
