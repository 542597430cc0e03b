"""The sections every task config shares: one per pipeline stage, plus `run`."""
import ml_collections

from experiments.configs.sections import adapt, baselines, data, expert, model, planner, refine


def add_stage_sections(c: ml_collections.ConfigDict, task: str, preset: str, dims: dict) -> None:
  """Sets `c.expert, c.data, c.model, c.planner, c.refine, c.adapt, c.baselines, c.run` for `task` at `preset`
  (before `c.lock()`)."""
  c.expert = expert.get(task, preset, dims)
  c.data = data.get(task, preset, dims)
  c.model = model.get(task, preset, dims)
  c.planner = planner.get(task, preset, dims)
  c.refine = refine.get(task, preset, dims)
  c.adapt = adapt.get(task, preset, dims)
  c.baselines = baselines.get(task, preset, dims)

  c.run = ml_collections.ConfigDict()
  c.run.seed = 0               # root seed; every stage derives its keys from it by role
  c.run.log_every_s = 10.0     # seconds between progress lines on long work
  # Persistent XLA compilation cache directory ("" = off), e.g. "~/.cache/simdist_jax/xla": programs that took
  # >= 1 s to compile are stored and reused by later processes (reruns, the next stage with the same shapes).
  # Changes no result, so it is in no stage's fingerprint.
  c.run.compile_cache_dir = ""
  # Devices along the "data" axis of the mesh pretraining, finetuning and data generation run on (data parallel:
  # params replicated, the batch / env batch split over the devices; `simdist_jax.mesh`). 0 or 1 = one device (no
  # mesh, the single-device programs), n = the first n devices, -1 = every device. Must be <= jax.device_count()
  # and divide model.batch_size, model.finetune.batch_size and data.num_envs. Results agree with one device to
  # float rounding (the same batches and keys), so it is in no stage's fingerprint.
  c.run.mesh = 0
  # Multi-host runs (`simdist_jax.distributed`): host:port of process 0's coordination service ("" = from
  # $JAX_COORDINATOR_ADDRESS, else none). Only read with num_processes >= 2.
  c.run.coordinator = ""
  # Processes of a multi-host run (0 = from $JAX_NUM_PROCESSES, else 1). With 1 nothing is initialized; with >= 2
  # `jax.distributed.initialize` runs before anything else, run.mesh must be -1 and only `pretrain` runs.
  c.run.num_processes = 0
  # This process's index in [0, num_processes) (-1 = from $JAX_PROCESS_ID, else 0); process 0 writes the shared
  # files. None of the three changes a result, so they are in no stage's fingerprint.
  c.run.process_id = -1
