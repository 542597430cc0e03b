"""Packaging: declared dependencies vs imports and the lock, the public API, config loading by path, MJX noise."""

import ast
import importlib.util
import pathlib
import re
import subprocess
import sys
import tomllib
import types
from importlib import metadata

import pytest
from packaging.requirements import Requirement

import simdist_jax
from simdist_jax import _quiet_warp
from simdist_jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, for the third-party packages simdist_jax imports
IMPORT_TO_DIST = {"jax": "jax", "flax": "flax", "optax": "optax", "mujoco": "mujoco", "brax": "brax",
                  "orbax": "orbax-checkpoint", "ml_collections": "ml-collections", "numpy": "numpy",
                  "matplotlib": "matplotlib", "tensorboardX": "tensorboardx"}


def _norm(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _python(code: str, cwd=ROOT) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def _lock() -> dict:
  pins = {}
  for line in (ROOT / "requirements.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if "==" in line:
      name, ver = line.split("==")
      pins[_norm(name)] = ver
  return pins


def _third_party_imports() -> set:
  found = set()
  for path in (ROOT / "simdist_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name.split(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        found.add(node.module.split(".")[0])
  return {m for m in found if m not in sys.stdlib_module_names and m not in ("simdist_jax", "__future__")}


def test_declared_dependencies_are_exactly_the_imported_packages_and_contain_the_lock():
  reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
  declared = {_norm(r.name) for r in reqs}
  imported = _third_party_imports()
  assert imported <= set(IMPORT_TO_DIST), f"imports without a distribution mapping: {imported - set(IMPORT_TO_DIST)}"
  needed = {_norm(IMPORT_TO_DIST[m]) for m in imported} | {"mujoco-mjx"}  # mujoco.mjx ships in mujoco-mjx
  assert declared == needed, f"declared but not imported: {declared - needed}; imported, undeclared: {needed - declared}"
  pins = _lock()
  extras = PYPROJECT["project"]["optional-dependencies"]
  for r in reqs + [Requirement(x) for x in extras["dev"]]:
    assert r.specifier, f"{r.name} has no version range"
    assert r.specifier.contains(pins[_norm(r.name)]), f"lock pin {r.name}=={pins[_norm(r.name)]} outside {r}"
  assert [Requirement(x).name for x in extras["cuda"]] == ["jax"] and "cuda12" in Requirement(extras["cuda"][0]).extras
  assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["simdist_jax*"]  # not experiments


def test_version_and_lazy_public_api():
  assert simdist_jax.__version__ == metadata.version("simdist_jax")
  from simdist_jax.planner import mppi
  from simdist_jax.world_model import model
  assert simdist_jax.PlannerConfig is mppi.PlannerConfig and simdist_jax.plan is mppi.plan
  assert simdist_jax.make_world_model is model.make_world_model
  assert simdist_jax.load_config is config_lib.load_config
  with pytest.raises(AttributeError, match="no attribute 'nope'.*PlannerConfig"):
    simdist_jax.nope  # noqa: B018
  out = _python("import sys, simdist_jax; print(sorted(m for m in ('jax', 'mujoco', 'brax', 'flax') "
                "if m in sys.modules))")
  assert out.returncode == 0 and out.stdout.strip() == "[]", out  # importing the package is cheap


@pytest.mark.skipif(importlib.util.find_spec("warp") is not None, reason="warp is installed: nothing to silence")
def test_mjx_warp_not_installed_lines_are_silenced_and_nothing_else():
  code = "import brax; import mujoco.mjx.warp as w; print('WARP_INSTALLED', w.WARP_INSTALLED)"
  noisy = _python("import mujoco.mjx")
  assert "Failed to import warp: No module named 'warp'" in noisy.stdout, noisy  # what MJX does on its own
  quiet = _python("import sys, simdist_jax; " + code + "; print('hooks', [type(f).__name__ for f in sys.meta_path "
                  "if type(f).__module__ == 'simdist_jax._quiet_warp'])")
  assert quiet.returncode == 0, quiet
  assert "Failed to import" not in quiet.stdout + quiet.stderr and "WARP_INSTALLED False" in quiet.stdout, quiet
  assert "hooks []" in quiet.stdout, quiet  # one-shot: the hook is gone once MJX's warp module is imported
  text = ("Failed to import warp: No module named 'warp'\nother line\n"
          "Failed to import mujoco_warp: No module named 'warp'\nFailed to import warp: CUDA driver too old\n")
  assert _quiet_warp.filter_not_installed(text) == "other line\nFailed to import warp: CUDA driver too old\n"


def test_config_loads_by_path_from_any_cwd_without_experiments_installed(tmp_path):
  code = ("import importlib.util, sys\n"
          "assert importlib.util.find_spec('experiments') is None, 'experiments is importable before loading'\n"
          "before = list(sys.path)\n"
          "from simdist_jax import config\n"
          f"cfg = config.load_config({str(ROOT / 'experiments/configs/cartpole.py:small')!r})\n"
          "rel = config.load_config('../main_link/experiments/configs/cartpole.py:paper')\n"
          "import experiments.configs.sections.model as m\n"
          "assert sys.path == before, 'sys.path not restored'\n"
          "print(cfg.preset, rel.preset, m.__file__)\n")
  (tmp_path / "cwd").mkdir()
  (tmp_path / "main_link").symlink_to(ROOT)
  out = _python(code, cwd=tmp_path / "cwd")
  assert out.returncode == 0, out.stderr
  assert out.stdout.split()[:2] == ["small", "paper"]
  assert pathlib.Path(out.stdout.split()[2]).resolve() == ROOT / "experiments/configs/sections/model.py"


def test_config_with_a_clashing_experiments_package_names_both_folders(tmp_path, monkeypatch):
  fake = types.ModuleType("experiments")
  fake.__path__ = [str(tmp_path / "experiments")]
  monkeypatch.setitem(sys.modules, "experiments", fake)
  with pytest.raises(config_lib.ConfigError, match=rf"from {ROOT / 'experiments'}.*already imported from.*"
                                                   rf"{re.escape(str(tmp_path))}"):
    config_lib.load_config(str(ROOT / "experiments/configs/cartpole.py"))
