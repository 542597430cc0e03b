"""The whole config checked once, at load (`simdist_jax.config.load_config` -> `config.validate` -> `validate`).

`validate(cfg)` builds every typed object the stages build later, with their own constructors (the task
`registry.make_task`, both domains `registry.make_domain` with the task's `validate_domain`, the expert
`ppo.Schedule`, the data `generate.GenConfig`, the world-model `model.make_spec`, the planner
`mppi.PlannerConfig.from_config(..., model_horizon=T)`), and adds the checks no constructor makes: sizes >= 1,
ranges lo <= hi, ratios in [0, 1], learning rates > 0 and warmup <= decay, `latent_dim % num_heads == 0` for
every transformer in use, per-dimension action bounds of the task's action size, the augmentation noise of the
task's proprio size, the control period a multiple of the physics step, `run.mesh` at most
`jax.device_count()` devices that divide `model.batch_size`, `model.finetune.batch_size` and `data.num_envs` (JAX is
asked for its devices only for a mesh of >= 2), the multi-host keys `run.coordinator` / `run.num_processes` /
`run.process_id` with their environment variables (`simdist_jax.distributed.settings`). Every problem is reported,
not only the first, as `key=value: must be <valid range>` in one `ConfigError`, before any stage runs or any file is written.

Keys a check reads but the config lacks are skipped (the constructors report a missing key they need), so new
keys never break validation. Generic rules for the `env` section (task-specific keys): a 2-number sequence is an
inclusive (lo, hi) range and needs lo <= hi; a number named `*_range` is a half-width and needs >= 0; a number
named `*_noise` is a std and needs >= 0.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

from simdist_jax.config import ConfigError

_MISSING = object()
_PROJECT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError)


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(n: int) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: _is_int(v) and v >= n), f"an integer >= {n}"


def _num_in(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False
            ) -> tuple[Callable[[Any], bool], str]:
  def ok(v: Any) -> bool:
    return _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
  if hi == math.inf:
    return ok, f"{'>' if lo_open else '>='} {lo:g}"
  return ok, f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


POSITIVE = _num_in(0.0, lo_open=True)
NON_NEGATIVE = _num_in(0.0)
RATIO = _num_in(0.0, 1.0)
SIZE = _int_at_least(1)
COUNT = _int_at_least(0)


def _widths(v: Any) -> bool:
  return isinstance(v, (tuple, list)) and all(_is_int(w) and w >= 1 for w in v)


WIDTHS = (_widths, "a sequence of integer widths >= 1")


def _int_interval(v: Any) -> bool:
  return isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(x) for x in v) and 1 <= v[0] <= v[1]


INT_INTERVAL = (_int_interval, "an inclusive integer range (lo, hi) with 1 <= lo <= hi")
PATH_OR_EMPTY = ((lambda v: isinstance(v, str)), "a directory path string ('' = off)")


def _one_of(options) -> tuple[Callable[[Any], bool], str]:
  options = tuple(options)
  return (lambda v: v in options), f"one of {list(options)}"


class _Checks:
  """Collects `key=value: must be ...` problems over one config."""

  def __init__(self, cfg: Any):
    self.cfg = cfg
    self.errors: list[str] = []

  def get(self, key: str) -> Any:
    node = self.cfg
    for part in key.split("."):
      try:
        if part not in node:
          return _MISSING
        node = node[part]
      except TypeError:
        return _MISSING
    return node

  def fail(self, key: str, value: Any, valid: str) -> None:
    self.errors.append(f"{key}={_show(value)}: must be {valid}")

  def need(self, key: str, rule: tuple[Callable[[Any], bool], str]) -> bool:
    """Checks `rule` on the value at `key`; True when fine or absent."""
    v = self.get(key)
    if v is _MISSING:
      return True
    ok, valid = rule
    try:
      good = bool(ok(v))
    except _PROJECT_ERRORS:
      good = False
    if not good:
      self.fail(key, v, valid)
    return good

  def build(self, key: str, fn: Callable[[], Any]) -> Any:
    """`fn()`, or None with its error recorded under `key` (a ConfigError's own text is kept)."""
    try:
      return fn()
    except ConfigError as e:
      self.errors.append(str(e))
    except _PROJECT_ERRORS as e:
      msg = _text(e)
      self.errors.append(msg if f"{key}." in msg else f"{key}: {msg}")  # most constructors name the key already
    return None


def _show(v: Any) -> str:
  if hasattr(v, "to_dict"):
    v = v.to_dict()
  return repr(v)


def _text(e: BaseException) -> str:
  return (e.args[0] if isinstance(e, KeyError) and e.args else str(e)) or type(e).__name__


# ---- sections ---------------------------------------------------------------------------------------------------
MESH = ((lambda v: _is_int(v) and v >= -1), "an integer >= -1 (0 or 1: one device, -1: every device, n: n devices "
        "along the 'data' axis)")


def _run(c: _Checks) -> None:
  c.need("run.seed", COUNT)
  c.need("run.log_every_s", POSITIVE)
  c.need("run.compile_cache_dir", PATH_OR_EMPTY)
  typed = [c.need("run.coordinator", (lambda v: isinstance(v, str), "a host:port string ('' = from the "
                                                                      "environment)")),
           c.need("run.num_processes", (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = from the "
                                                                          "environment)")),
           c.need("run.process_id", (lambda v: _is_int(v) and v >= -1, "an integer >= -1 (-1 = from the "
                                                                        "environment)")),
           MESH[0](c.get("run.mesh")) or c.get("run.mesh") is _MISSING]  # its own error comes below
  if all(typed):  # the multi-host settings together (`simdist_jax.distributed.settings`), environment included
    from simdist_jax import distributed  # pylint: disable=import-outside-toplevel
    try:
      distributed.settings(c.cfg)
    except distributed.DistributedConfigError as e:
      c.errors.append(str(e))
  value = c.get("run.mesh")
  if c.need("run.mesh", MESH) and value is not _MISSING and value not in (0, 1):
    import jax  # pylint: disable=import-outside-toplevel  (only a multi-device mesh asks JAX for its devices)
    from simdist_jax import mesh  # pylint: disable=import-outside-toplevel
    sizes = {k: c.get(k) for k in ("model.batch_size", "model.finetune.batch_size", "data.num_envs")}
    c.errors.extend(mesh.problems(value, jax.device_count(), {k: v for k, v in sizes.items() if _is_int(v) and v >= 1}))


def _task(c: _Checks) -> Any:
  from simdist_jax.envs import registry  # pylint: disable=import-outside-toplevel
  before = len(c.errors)
  c.need("env.ctrl_dt", POSITIVE)
  c.need("env.episode_length", SIZE)
  env = c.get("env")
  if env is not _MISSING:
    for name in env.keys():
      v, key = env[name], f"env.{name}"
      if isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_num(x) for x in v):
        c.need(key, ((lambda r: r[0] <= r[1]), "an inclusive range (lo, hi) with lo <= hi"))
      elif _is_num(v) and (name.endswith("_range") or name.endswith("_noise")):
        c.need(key, NON_NEGATIVE)
  if len(c.errors) > before:
    return None
  if str(c.get("task")) not in registry.TASKS:
    try:
      # optional tasks register themselves on import
      __import__(registry.TASK_PACKAGES.get(str(c.get("task")), f"simdist_jax.envs.{c.get('task')}"))
    except ImportError:
      pass
  if str(c.get("task")) not in registry.TASKS:
    c.fail("task", c.get("task"), f"a known task, one of {sorted(registry.TASKS)}")
    return None
  task = c.build("env", lambda: registry.make_task(c.cfg))
  if task is None:
    return None
  dt, ctrl_dt = c.build("env", lambda: float(task.mj_model().opt.timestep)), c.get("env.ctrl_dt")
  if dt is not None and _is_num(ctrl_dt):
    n = round(ctrl_dt / dt)
    if n < 1 or abs(n * dt - ctrl_dt) > 1e-9:  # the MJX env's own rule (base.MjxEnv)
      c.fail("env.ctrl_dt", ctrl_dt, f"a positive multiple of the physics timestep {dt:g} s")
  grid = c.get("env.eval_grid")
  if grid is not _MISSING and grid not in ("", None) and grid not in tuple(task.condition_grids):
    c.fail("env.eval_grid", grid, f"'' or one of the task's grids {list(task.condition_grids)}")
  return task


def _domains(c: _Checks, task: Any) -> None:
  from simdist_jax.envs import registry  # pylint: disable=import-outside-toplevel
  for which in ("sim", "real"):
    section = c.get(f"domain.{which}")
    if section is _MISSING or task is None:
      continue
    try:
      registry.make_domain(c.cfg, which, task)
    except _PROJECT_ERRORS as e:
      msg = _text(e)
      names = [p for p in section.keys() if re.search(rf"\b{re.escape(p)}\b", msg)]
      if len(names) == 1:
        c.errors.append(f"domain.{which}.{names[0]}={_show(section[names[0]])}: {msg}")
      else:
        c.errors.append(f"domain.{which}: {msg}")


def _expert(c: _Checks) -> Any:
  from simdist_jax.experts import checkpoints as ckpt  # pylint: disable=import-outside-toplevel
  from simdist_jax.experts import ppo  # pylint: disable=import-outside-toplevel
  before = len(c.errors)
  for key in ("num_envs", "unroll_length", "num_minibatches", "num_updates_per_batch", "eval_sim_episodes",
              "eval_real_episodes"):
    c.need(f"expert.{key}", SIZE)
  for key in ("resume_every_iterations", "train_eval_episodes", "eval_seed"):
    c.need(f"expert.{key}", COUNT)
  for key in ("policy_hidden", "value_hidden"):
    c.need(f"expert.{key}", WIDTHS)
  c.need("expert.activation", _one_of(sorted(ckpt.ACTIVATIONS)))
  c.need("expert.distribution_type", _one_of(("tanh_normal", "normal")))
  c.need("expert.learning_rate_schedule", _one_of(("NONE", "ADAPTIVE_KL")))
  for key in ("learning_rate", "desired_kl", "clipping_epsilon", "reward_scaling"):
    c.need(f"expert.{key}", POSITIVE)
  for key in ("entropy_cost", "clipping_epsilon_value", "vf_loss_coefficient", "max_grad_norm"):
    c.need(f"expert.{key}", NON_NEGATIVE)
  c.need("expert.discounting", _num_in(0.0, 1.0, lo_open=True))
  c.need("expert.gae_lambda", RATIO)
  # Schedule checks num_iterations >= 1, checkpoint_iterations in [0, num_iterations] and num_envs divisible by
  # num_minibatches, naming the keys.
  if len(c.errors) > before or c.get("expert") is _MISSING:
    return None
  return c.build("expert", lambda: ppo.Schedule.from_config(c.cfg.expert))


def _data(c: _Checks) -> Any:
  from simdist_jax.data import generate  # pylint: disable=import-outside-toplevel
  before = len(c.errors)
  for key in ("num_envs", "num_steps", "shard_steps"):
    c.need(f"data.{key}", SIZE)
  # GenConfig checks num_steps % shard_steps, the ratios p_expert / never_noised_frac / init_noisy_prob in [0, 1]
  # and the interval ranges noisy_len / clean_len, naming the keys.
  lo = c.get("data.sigma_min")
  if c.need("data.sigma_min", NON_NEGATIVE) and lo is not _MISSING:
    c.need("data.sigma_max", ((lambda v: _is_num(v) and v >= lo), f">= data.sigma_min={lo!r}"))
  for key in ("action_clip", "float16_max_rel_error", "std_floor"):
    c.need(f"data.{key}", POSITIVE)
  for key in ("proprio_dtype", "extero_dtype", "command_dtype"):
    c.need(f"data.{key}", _one_of(("float16", "float32")))
  for key in ("window_start_margin", "window_end_margin"):
    c.need(f"data.{key}", COUNT)
  c.need("data.eval_fraction", _num_in(0.0, 1.0, lo_open=True, hi_open=True))
  c.need("data.loading", _one_of(("memory", "stream")))
  if len(c.errors) > before or c.get("data") is _MISSING:
    return None
  return c.build("data", lambda: generate.GenConfig.from_config(c.cfg))


def _lr(c: _Checks, prefix: str) -> None:
  c.need(f"{prefix}.peak", POSITIVE)
  c.need(f"{prefix}.end", NON_NEGATIVE)
  c.need(f"{prefix}.warmup_steps", COUNT)
  if c.need(f"{prefix}.decay_steps", SIZE):
    decay = c.get(f"{prefix}.decay_steps")
    if decay is not _MISSING:
      c.need(f"{prefix}.warmup_steps", ((lambda w: not _is_int(w) or w <= decay), f"<= {prefix}.decay_steps={decay}"))


def _model(c: _Checks, dims: Mapping[str, Any] | None) -> Any:
  from simdist_jax.world_model import finetune  # pylint: disable=import-outside-toplevel
  from simdist_jax.world_model import model as model_lib  # pylint: disable=import-outside-toplevel
  before = len(c.errors)
  for key in ("latent_dim", "history", "horizon", "num_steps", "batch_size", "log_every", "eval_every",
              "eval_batches", "checkpoint_every", "keep_checkpoints", "finetune.batch_size", "finetune.num_steps",
              "dynamics_ensemble"):
    c.need(f"model.{key}", SIZE)
  for key in ("encoder.proprio_hidden", "encoder.latent_hidden", "encoder.hm_channels", "encoder.hm_hidden",
              "mlp_head_hidden", "ar_hidden"):
    c.need(f"model.{key}", WIDTHS)
  for key in ("dropout_attn", "dropout_mlp"):
    c.need(f"model.{key}", _num_in(0.0, 1.0, hi_open=True))
  c.need("model.grad_clip", NON_NEGATIVE)
  weights = c.get("model.loss_weights")
  if weights is not _MISSING:
    for name in weights.keys():
      c.need(f"model.loss_weights.{name}", NON_NEGATIVE)
  c.need("model.aug_noise.extero", NON_NEGATIVE)
  noise = c.get("model.aug_noise.proprio")
  if noise is not _MISSING:
    p = None if dims is None else int(dims["proprio"])
    c.need("model.aug_noise.proprio", ((lambda v: all(_is_num(x) and x >= 0 for x in v) and (p is None or len(v) == p)),
                                       "per-channel stds >= 0" + ("" if p is None else f", one per proprio channel "
                                                                   f"(the task's P={p})")))
  c.need("model.compute_dtype", _one_of(tuple(model_lib.COMPUTE_DTYPES)))
  c.need("model.finetune.train", _one_of(finetune.TRAINABLE))
  c.need("model.finetune.head_consistency", NON_NEGATIVE)
  _lr(c, "model.lr")
  _lr(c, "model.finetune.lr")
  latent = c.get("model.latent_dim")
  nets = ["policy_net"]
  if c.get("model.dynamics") in ("chunked", _MISSING):
    nets.append("dynamics_net")
  if c.get("model.heads") in ("sequence", _MISSING):
    nets += ["reward_net", "value_net"]
  for net in sorted(nets):
    for key in ("num_layers", "num_heads", "mlp_dim"):
      c.need(f"model.{net}.{key}", SIZE)
    heads = c.get(f"model.{net}.num_heads")
    if _is_int(latent) and latent >= 1 and _is_int(heads) and heads >= 1 and latent % heads:
      c.fail(f"model.{net}.num_heads", heads, f"a divisor of model.latent_dim={latent} (head dim = latent_dim / "
             "num_heads)")
  if len(c.errors) > before or dims is None or c.get("model") is _MISSING:
    return None
  return c.build("model", lambda: model_lib.make_spec(c.cfg.model, dims))


def _planner(c: _Checks, spec: Any, dims: Mapping[str, Any] | None) -> Any:
  from simdist_jax.planner import mppi  # pylint: disable=import-outside-toplevel
  section = c.get("planner")
  if section is _MISSING:
    return None
  t = spec.horizon if spec is not None else c.get("model.horizon")
  if not (_is_int(t) and t >= 1):
    return None  # reported under model.horizon
  before = len(c.errors)
  if dims is not None:
    a = int(dims["action"])
    for key in ("planner.action_low", "planner.action_high"):
      c.need(key, ((lambda v: _is_num(v) or (isinstance(v, (tuple, list)) and len(v) == a and all(map(_is_num, v)))),
                   f"a number or {a} numbers (the task's action size A={a})"))
  if len(c.errors) > before:
    return None
  try:
    return mppi.PlannerConfig.from_config(section, model_horizon=t)
  except _PROJECT_ERRORS as e:
    # PlannerConfig names each bad field as `field=value: must be ...`, and its fields are the section's keys
    # (num_prior_samples = int(num_samples * prior_share)).
    for part in _text(e).split("; "):
      name = part.split("=", 1)[0]
      if not re.fullmatch(r"\w+", name):
        c.errors.append(f"planner: {part}")
      elif name == "num_prior_samples":
        c.errors.append(f"planner.prior_share={_show(section['prior_share'])} ({part})")
      else:
        c.errors.append(f"planner.{part}")
  return None


def _refine(c: _Checks) -> None:
  c.need("refine.rounds", COUNT)
  c.need("refine.episodes_per_round", (lambda v: _is_int(v) and 1 <= v <= 100, "an integer in [1, 100] (the "
                                       "collection seeds of one round are 100 apart)"))
  c.need("refine.finetune_steps", SIZE)
  c.need("refine.sim_mix", _num_in(0.0, 1.0, hi_open=True))
  c.need("refine.explore_sigma", NON_NEGATIVE)
  for key in ("explore_noisy_len", "explore_clean_len"):
    c.need(f"refine.{key}", INT_INTERVAL)
  c.need("refine.eval_episodes", COUNT)
  c.need("refine.branch_points", COUNT)
  c.need("refine.branches_per_point", SIZE)
  c.need("refine.branch_sigma", NON_NEGATIVE)
  points, per = c.get("refine.branch_points"), c.get("refine.branches_per_point")
  if _is_int(points) and _is_int(per) and points * per > 1000:
    c.errors.append(f"refine.branch_points={points} x refine.branches_per_point={per}: must be <= 1000 branch "
                    "episodes per collection episode (their ids)")


def _adapt(c: _Checks) -> None:
  c.need("adapt.rounds", COUNT)
  for key in ("episodes_per_round", "eval_episodes", "sim_eval_episodes", "heldout_episodes", "finetune_steps"):
    c.need(f"adapt.{key}", SIZE)
  c.need("adapt.finetune_from", _one_of(("pretrained", "latest")))
  c.need("adapt.explore_sigma", NON_NEGATIVE)
  for key in ("explore_noisy_len", "explore_clean_len"):
    c.need(f"adapt.{key}", INT_INTERVAL)
  c.need("adapt.sim_mix", _num_in(0.0, 1.0, hi_open=True))
  c.need("adapt.oracle_episodes", COUNT)
  c.need("adapt.counterfactual_points", COUNT)
  c.need("adapt.counterfactual_chunks", SIZE)
  c.need("adapt.counterfactual_sigma", NON_NEGATIVE)
  oracle, evals = c.get("adapt.oracle_episodes"), c.get("adapt.eval_episodes")
  if isinstance(oracle, int) and isinstance(evals, int) and evals >= 1 and oracle > evals:  # evals < 1: own error
    c.errors.append(f"adapt.oracle_episodes={oracle}: must be <= adapt.eval_episodes={evals} (the oracle runs "
                    "on the first evaluation seeds)")


def _baselines(c: _Checks) -> None:
  c.need("baselines.bc.hidden", WIDTHS)
  for key in ("num_steps", "batch_size", "chunk_steps", "eval_batches"):
    c.need(f"baselines.bc.{key}", SIZE)
  c.need("baselines.bc.grad_clip", NON_NEGATIVE)
  _lr(c, "baselines.bc.lr")
  r = "baselines.rlpd"
  c.need(f"{r}.hidden", WIDTHS)
  for key in ("num_critics", "critic_subset", "utd", "batch_size", "update_chunk"):
    c.need(f"{r}.{key}", SIZE)
  for key in ("actor_lr", "critic_lr", "temperature_lr", "init_temperature"):
    c.need(f"{r}.{key}", POSITIVE)
  c.need(f"{r}.discount", _num_in(0.0, 1.0, hi_open=True))
  c.need(f"{r}.tau", RATIO)
  c.need(f"{r}.sim_share", _num_in(0.0, 1.0, hi_open=True))
  q = "baselines.iql"
  c.need(f"{q}.hidden", WIDTHS)
  for key in ("offline_steps", "utd", "batch_size", "update_chunk"):
    c.need(f"{q}.{key}", SIZE)
  c.need(f"{q}.expectile", _num_in(0.0, 1.0, lo_open=True, hi_open=True))
  c.need(f"{q}.temperature", NON_NEGATIVE)
  c.need(f"{q}.lr", POSITIVE)
  c.need(f"{q}.discount", _num_in(0.0, 1.0, hi_open=True))
  c.need(f"{q}.tau", RATIO)
  c.need(f"{q}.sim_share", _num_in(0.0, 1.0, hi_open=True))
  c.need("baselines.sgft.discount", _num_in(0.0, 1.0, hi_open=True))
  c.need("baselines.sgft.value_steps", SIZE)
  c.need("baselines.sgft.value_lr", POSITIVE)
  o = "baselines.ppo"
  for key in ("learning_rate", "desired_kl", "clipping_epsilon"):
    c.need(f"{o}.{key}", POSITIVE)
  for key in ("entropy_cost", "clipping_epsilon_value", "vf_loss_coefficient", "max_grad_norm"):
    c.need(f"{o}.{key}", NON_NEGATIVE)
  c.need(f"{o}.discounting", _num_in(0.0, 1.0, lo_open=True))
  c.need(f"{o}.gae_lambda", RATIO)
  c.need(f"{o}.learning_rate_schedule", _one_of(("NONE", "ADAPTIVE_KL")))
  for key in ("num_minibatches", "num_updates_per_batch"):
    c.need(f"{o}.{key}", SIZE)
  c.need(f"{o}.normalize_advantage", ((lambda v: isinstance(v, bool)), "True or False"))
  k, m = c.get(f"{r}.num_critics"), c.get(f"{r}.critic_subset")
  if _is_int(k) and _is_int(m) and not m <= k:
    c.errors.append(f"{r}.critic_subset={m}: must be <= {r}.num_critics={k}")


def validate(cfg: Any) -> None:
  """Checks a whole (override-applied) config; ConfigError listing every bad `key=value` and its valid range.

  Builds the task, both domains, the expert schedule, the data-generation config, the world-model spec and the
  planner config exactly as the stages do (so a value those constructors refuse is refused here, before any stage
  runs), plus the checks listed in the module docstring.
  """
  c = _Checks(cfg)
  _run(c)
  task = _task(c)
  dims = task.dims if task is not None else None
  _domains(c, task)
  _expert(c)
  _data(c)
  spec = _model(c, dims)
  _planner(c, spec, dims)
  _refine(c)
  _adapt(c)
  _baselines(c)
  if len(c.errors) == 1:
    raise ConfigError(f"invalid config: {c.errors[0]}")
  if c.errors:
    raise ConfigError(f"{len(c.errors)} invalid config values:\n  " + "\n  ".join(c.errors))
