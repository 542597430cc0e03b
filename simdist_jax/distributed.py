"""Multi-host runs: `jax.distributed.initialize` from the run config or the environment.

Three keys of `run` (or, where a key is left at its default, the environment):

| key | default | environment (used when the key is at its default) |
|---|---|---|
| `run.coordinator` | "" | `JAX_COORDINATOR_ADDRESS` (host:port of process 0's coordination service) |
| `run.num_processes` | 0 (= from the environment, else 1) | `JAX_NUM_PROCESSES` |
| `run.process_id` | -1 (= from the environment, else 0) | `JAX_PROCESS_ID` |

With one process (the default) nothing is initialized: `jax.distributed.initialize` is called only for
num_processes >= 2, which then needs a coordinator, a process id in [0, num_processes) and `run.mesh = -1` (the
data axis spans every device of every process). `initialize(settings)` must run before anything starts a JAX
backend; the CLI calls it right after parsing the config, before validating it (`simdist_jax.cli`).

What runs on several processes: the `pretrain` stage (`world_model/train.py`), data parallel over the global mesh
(`simdist_jax.mesh`: every process reads the same dataset and places its own devices' rows of each batch; GSPMD
all-reduces the gradient across processes, on CPU over gloo). Process 0 (`is_primary()`) writes the stage's
records, `config.json`, `metrics.jsonl`, TensorBoard and `log.txt`; the others write `log.process<i>.txt` and take
part in the orbax checkpoints (one shared workdir: a filesystem every process sees). Other stages refuse
num_processes >= 2 (`check_stage`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}
# Stages that run on several processes.
STAGES = ("pretrain",)


class DistributedConfigError(ValueError):
  """`run.coordinator` / `run.num_processes` / `run.process_id` (or their environment variables) do not fit."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """The resolved multi-host settings: `coordinator` ("host:port" or ""), `num_processes`, `process_id`."""

  coordinator: str
  num_processes: int
  process_id: int

  @property
  def multi(self) -> bool:
    """Whether this is a multi-process run (`jax.distributed.initialize` is called)."""
    return self.num_processes > 1


def _env_int(name: str, environ: Mapping[str, str]) -> int | None:
  text = environ.get(name, "").strip()
  if not text:
    return None
  try:
    return int(text)
  except ValueError:
    raise DistributedConfigError(f"environment variable {name}={text!r}: must be an integer") from None


def settings(cfg: Any, environ: Mapping[str, str] | None = None) -> Settings:
  """The settings of `cfg.run` (a config without the keys: one process), each key at its default taken from the
  environment (`ENV`).

  Raises:
    DistributedConfigError: naming the key (or variable) and its value: a non-integer, num_processes < 1, a
      process id outside [0, num_processes), several processes without a coordinator or with `run.mesh` != -1.
  """
  environ = os.environ if environ is None else environ
  run = cfg["run"] if "run" in cfg else {}
  get = run.get if hasattr(run, "get") else (lambda k, d=None: d)
  coordinator = str(get("coordinator", "") or "") or environ.get(ENV["coordinator"], "").strip()
  n_cfg, id_cfg = int(get("num_processes", 0)), int(get("process_id", -1))
  n = n_cfg if n_cfg != 0 else (_env_int(ENV["num_processes"], environ) or 1)
  pid = id_cfg if id_cfg != -1 else _env_int(ENV["process_id"], environ)
  source = {"n": "run.num_processes" if n_cfg != 0 else ENV["num_processes"],
            "id": "run.process_id" if id_cfg != -1 else ENV["process_id"]}
  if n < 1:
    raise DistributedConfigError(f"{source['n']}={n}: must be >= 1 (0 in the config: from {ENV['num_processes']}, "
                                 "else 1)")
  if n == 1:
    if pid not in (None, 0):
      raise DistributedConfigError(f"{source['id']}={pid}: must be 0 in a single-process run (num_processes 1)")
    return Settings(coordinator, 1, 0)
  if not coordinator:
    raise DistributedConfigError(f"{source['n']}={n}: needs a coordinator address (run.coordinator or "
                                 f"{ENV['coordinator']}, host:port of process 0)")
  if ":" not in coordinator:
    raise DistributedConfigError(f"run.coordinator={coordinator!r}: must be host:port")
  if pid is None or not 0 <= pid < n:
    raise DistributedConfigError(f"{source['id']}={pid}: must be in [0, {n}) with {n} processes (set "
                                 f"run.process_id or {ENV['process_id']} per process)")
  mesh = int(get("mesh", 0))
  if mesh != -1:
    raise DistributedConfigError(f"run.mesh={mesh}: must be -1 with {n} processes (the data axis spans every "
                                 "device of every process)")
  return Settings(coordinator, n, pid)


def check_stage(stage: str, s: Settings) -> None:
  """DistributedConfigError when stage `stage` is asked to run on several processes but cannot."""
  if s.multi and stage not in STAGES:
    raise DistributedConfigError(f"run.num_processes={s.num_processes}: stage {stage!r} runs in one process; "
                                 f"multi-process stages: {list(STAGES)}")


def initialize(s: Settings) -> bool:
  """Calls `jax.distributed.initialize(coordinator, num_processes, process_id)` for a multi-process `s` (once per
  process; nothing for one process). Returns whether this process is part of a multi-process run."""
  if not s.multi:
    return False
  import jax  # pylint: disable=import-outside-toplevel
  if not jax.distributed.is_initialized():
    jax.distributed.initialize(coordinator_address=s.coordinator, num_processes=s.num_processes,
                               process_id=s.process_id)
  return True


def is_primary() -> bool:
  """Whether this process writes the shared files (process 0; always true in a single-process run)."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_index() == 0
