"""Process-wide JAX settings taken from the run config at the CLI's edge (`run.*`), applied once per process."""

from __future__ import annotations

import os
import pathlib


def configure_compile_cache(directory: str, min_compile_time_s: float = 1.0) -> pathlib.Path | None:
  """Points JAX's persistent compilation cache at `directory` (created; `~` expanded); "" leaves it off.

  Every program whose compilation takes at least `min_compile_time_s` is written there and read back by later
  processes with the same program, jax/jaxlib version and device (XLA's own cache key), so rerunning a stage or
  running the next stage with the same shapes skips those compilations. Returns the directory, or None when off.
  """
  if not isinstance(directory, str):
    raise TypeError(f"run.compile_cache_dir must be a string path ('' = off), got {directory!r}")
  if not directory:
    return None
  import jax  # pylint: disable=import-outside-toplevel  (reading the stage table imports no JAX)
  path = pathlib.Path(os.path.expanduser(directory)).absolute()
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
