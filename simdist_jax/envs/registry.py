"""Task registry: builds tasks, domains and both env backends from a config."""

from __future__ import annotations

from simdist_jax.envs.base import MjxEnv, Task
from simdist_jax.envs.domain import Domain


def _cartpole(env_cfg) -> Task:
  from simdist_jax.envs.cartpole import CartPole
  return CartPole(ctrl_dt=env_cfg.ctrl_dt, init_noise=env_cfg.init_noise,
                  init_cart_range=env_cfg.get("init_cart_range", 0.0),
                  init_angle_range=env_cfg.get("init_angle_range", 0.0))


TASKS = {"cartpole": _cartpole}
# Tasks that register themselves when their package is imported, by package (default: simdist_jax.envs.<task>).
TASK_PACKAGES = {"peg_insertion": "simdist_jax.envs.manipulation"}


def register_task(name: str, factory) -> None:
  """Registers `factory(env_cfg) -> Task` under `name`."""
  TASKS[name] = factory


def make_task(cfg) -> Task:
  """The config's task. Raises ValueError naming the known tasks."""
  name = cfg.task
  if name not in TASKS:
    try:  # optional tasks register themselves on import
      __import__(TASK_PACKAGES.get(name, f"simdist_jax.envs.{name}"))
    except ImportError:
      pass
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
  return TASKS[name](cfg.env)


def make_domain(cfg, which: str, task: Task | None = None) -> Domain:
  """`which` in {"sim", "real"} -> Domain from `cfg.domain.<which>`."""
  if which not in cfg.domain:
    raise ValueError(f"unknown domain {which!r}; config has {list(cfg.domain.keys())}")
  task = task or make_task(cfg)
  dom = Domain.from_config(which, dict(cfg.domain[which]), task.param_names)
  task.validate_domain(dom)
  return dom


def make_env(cfg, which: str = "sim") -> MjxEnv:
  """The MJX env on domain `which`; privileged params are normalized over the sim ranges."""
  task = make_task(cfg)
  return MjxEnv(task, make_domain(cfg, which, task), sim_domain=make_domain(cfg, "sim", task))


def make_real_env(cfg, which: str = "real"):
  """The MuJoCo C twin on domain `which` (default: the shifted real world)."""
  from simdist_jax.envs.real import RealEnv
  task = make_task(cfg)
  return RealEnv(task, make_domain(cfg, which, task), sim_domain=make_domain(cfg, "sim", task),
                 episode_length=cfg.env.episode_length)
