"""Silences MJX's two "Failed to import warp" lines when the optional warp backend is simply not installed.

`mujoco/mjx/warp/__init__.py` (mujoco-mjx 3.17) tries `import warp` and `import mujoco_warp` when it is first
imported (by `from mujoco import mjx`, hence by any `import brax`) and `print`s each failure to stdout:

  Failed to import warp: No module named 'warp'
  Failed to import mujoco_warp: No module named 'warp'

They are prints, not log records (no logger or environment variable turns them off), and simdist_jax never uses
the warp backend. `install()` adds a one-shot import hook for `mujoco.mjx.warp` that runs that module with stdout
captured and writes back everything except exactly these two lines, so a broken warp install (a different
message) still shows. The hook only wraps the module's loader; nothing is imported until someone imports MJX,
and `mujoco.mjx.warp.WARP_INSTALLED` is unchanged. Stdlib only: cheap enough to install from
`simdist_jax/__init__.py`, the one place that runs before any module of ours imports brax or MJX.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import re
import sys

MODULE = "mujoco.mjx.warp"
# The lines printed when warp is not installed (ModuleNotFoundError), and only those.
NOT_INSTALLED = re.compile(r"^Failed to import (warp|mujoco_warp): No module named 'warp'$")


def filter_not_installed(text: str) -> str:
  """`text` without the "warp is not installed" lines (see module docstring); other lines kept in order."""
  return "".join(line for line in text.splitlines(keepends=True) if not NOT_INSTALLED.match(line.rstrip("\n")))


class _QuietLoader(importlib.abc.Loader):
  """Runs the real loader of `mujoco.mjx.warp` with stdout captured, then prints what is left after filtering."""

  def __init__(self, loader: importlib.abc.Loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module) -> None:
    buf = io.StringIO()
    try:
      with contextlib.redirect_stdout(buf):
        self._loader.exec_module(module)
    finally:
      sys.stdout.write(filter_not_installed(buf.getvalue()))

  def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
    return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
  """Finds `mujoco.mjx.warp` like the default path finder does and wraps its loader; removes itself after."""

  def find_spec(self, fullname, path, target=None):
    if fullname != MODULE:
      return None
    uninstall()
    spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


_FINDER = _Finder()


def install() -> bool:
  """Adds the hook unless MJX's warp module is already imported or the hook is in place. True when added."""
  if MODULE in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
    return False
  sys.meta_path.insert(0, _FINDER)
  return True


def uninstall() -> None:
  """Removes the hook (idempotent)."""
  sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
