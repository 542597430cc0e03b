"""The persistent compilation cache from `run.compile_cache_dir`: off by default, on writes entries a second process
reads back (in subprocesses: the setting is process-wide)."""
import os
import subprocess
import sys

import pytest

from simdist_jax import runtime

_PROG = """
import sys, time
from simdist_jax import runtime
print(runtime.configure_compile_cache(sys.argv[1], min_compile_time_s=0.0))
import jax, jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name) if "cache_hits" in name else None)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + jnp.tanh(x).sum())
print(float(f(jnp.ones((64, 64))).sum()))
print(len(hits))
"""


def _run(arg, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", _PROG, arg], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120, check=True)
  return out.stdout.split()


def test_off_by_default_and_on_writes_entries_reused_by_a_second_process(tmp_path):
  assert runtime.configure_compile_cache("") is None
  with pytest.raises(TypeError, match="run.compile_cache_dir"):
    runtime.configure_compile_cache(None)
  first = _run(str(tmp_path / "xla"), tmp_path)
  entries = sorted(p.name for p in (tmp_path / "xla").iterdir())
  assert first[0] == str(tmp_path / "xla") and entries and first[2] == "0"  # compiled and written, no hit
  second = _run(str(tmp_path / "xla"), tmp_path)
  assert second[1] == first[1] and int(second[2]) >= 1  # the same result, read from the cache
  assert sorted(p.name for p in (tmp_path / "xla").iterdir()) == entries  # read back, nothing new compiled
  off = _run("", tmp_path)
  assert off[0] == "None" and off[2] == "0"
