"""Config loading, validation, freezing and run-directory bookkeeping.

Configs are ml-collections `ConfigDict`s built by `experiments/configs/<task>.py:get_config(preset)` with the
sections `env, domain.sim, domain.real, expert, data, model, planner, adapt, run`. After parsing (CLI
overrides included) a config is frozen (`FrozenConfigDict`); the library never mutates it. Every run directory
gets the resolved config as `config.json`; a run directory created by a different config is refused.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
from typing import Any

import ml_collections

SECTIONS = ("task", "preset", "env", "domain", "expert", "data", "model", "planner", "adapt", "run")
_CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "configs"


class ConfigError(ValueError):
  """A config that cannot be loaded: unknown task/preset, unknown key, wrong type, malformed override."""


def load_module(path: str | os.PathLike):
  """Imports a config file by path, from any working directory, without `experiments` being installed.

  A config file inside a package tree (`<root>/experiments/configs/go2.py`, with `__init__.py` files up to
  `<root>/experiments/`) imports its sections absolutely (`from experiments.configs.sections import stages`).
  While the file runs, `<root>` is put first on `sys.path`, so that `experiments` is the one next to the file;
  once imported, its submodules resolve through the package itself, so lazy imports inside `get_config` keep
  working after `sys.path` is restored.

  Raises:
    ConfigError: the file does not exist, has no `get_config`, or its top-level package (`experiments`) is
      already imported from a different folder (two checkouts, or a user package of the same name).
  """
  import sys  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(path)
  if not path.is_file():
    avail = sorted(p.stem for p in _CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
    raise ConfigError(f"config file '{path}' does not exist; available task configs in "
                      f"{_CONFIG_DIR}: {avail}")
  path = path.absolute()
  root, top = path.parent, None
  while (root / "__init__.py").is_file():
    root, top = root.parent, root.name
  if top is not None and top in sys.modules:
    loaded = [str(pathlib.Path(p).resolve()) for p in getattr(sys.modules[top], "__path__", [])]
    if str((root / top).resolve()) not in loaded:
      raise ConfigError(f"config file '{path}' imports the package '{top}' from {root / top}, but a different "
                        f"'{top}' is already imported from {loaded or sys.modules[top]}")
  spec = importlib.util.spec_from_file_location(f"simdist_cfg_{path.stem}", path)
  mod = importlib.util.module_from_spec(spec)
  sys.path.insert(0, str(root))
  try:
    spec.loader.exec_module(mod)
  finally:
    if str(root) in sys.path:
      sys.path.remove(str(root))
  if not hasattr(mod, "get_config"):
    raise ConfigError(f"config file '{path}' has no get_config(preset) function")
  return mod


def _leaf_paths(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  out = []
  for k, v in cfg.items():
    p = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
      out.extend(_leaf_paths(v, p + "."))
    else:
      out.append(p)
  return out


def _parse_sequence(text: str, current: tuple | list) -> tuple | list:
  """`(0,)`, `[0]`, `0,`, `0`, `()` (or any of them in one pair of quotes) -> a tuple/list typed like `current`.

  Elements must have the type of `current`'s elements (ints stay ints; an int is accepted for a float element);
  an empty `current` accepts numbers and strings.
  """
  body = text.strip()
  if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
    body = body[1:-1].strip()  # quotes that reached us unstripped: --config.k='(0,)' without a shell
  try:
    val = ast.literal_eval(body) if body else ()
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    raise ValueError("not a sequence literal such as (0, 5), [0, 5] or (0,)") from None
  if not isinstance(val, (tuple, list)):
    val = (val,)  # `=0` for a sequence key: the one-element sequence
  proto = type(current[0]) if len(current) else None
  out = []
  for v in val:
    if proto is float and isinstance(v, (int, float)) and not isinstance(v, bool):
      v = float(v)
    elif proto is not None and type(v) is not proto:
      raise ValueError(f"element {v!r} is a {type(v).__name__}, expected {proto.__name__}")
    elif proto is None and (isinstance(v, bool) or not isinstance(v, (int, float, str))):
      raise ValueError(f"element {v!r} is not a number or a string")
    out.append(v)
  return type(current)(out)


def _parse_value(text: str, current: Any, key: str) -> Any:
  """Parses an override string into the type of the current value; ConfigError when it does not fit.

  Sequences accept Python or JSON syntax: `(0, 5)`, `[0, 5]`, `0, 5`; one element: `(0,)`, `[0]`, `0,` or `0`;
  empty: `()` or `[]`.
  """
  try:
    if isinstance(current, bool):
      low = text.strip().lower()
      if low not in ("true", "false", "1", "0"):
        raise ValueError
      return low in ("true", "1")
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return text
    if current is None:
      return json.loads(text)
    if isinstance(current, (tuple, list)):
      return _parse_sequence(text, current)
  except (ValueError, json.JSONDecodeError) as e:
    detail = f": {e}" if isinstance(current, (tuple, list)) else ""
    raise ConfigError(f"override --config.{key}={text!r}: cannot parse as {type(current).__name__}{detail} "
                      f"(current value {current!r})") from e
  raise ConfigError(f"override --config.{key}: unsupported type {type(current).__name__}")


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies `key.path=value` overrides with type checks. Returns a new (unfrozen) ConfigDict.

  Raises:
    ConfigError: naming the key and the valid keys (unknown key), or the expected type (wrong type),
      or the malformed override.
  """
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  valid = _leaf_paths(cfg)
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"malformed override {item!r}: expected key.path=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if key.startswith("--config."):
      key = key[len("--config."):]
    if key not in valid:
      parent = key.rsplit(".", 1)[0] if "." in key else ""
      near = [v for v in valid if parent and v.startswith(parent + ".")] or valid
      raise ConfigError(f"unknown config key '{key}'. Valid keys" + (f" under '{parent}'" if parent and
                        near is not valid else "") + f": {near}")
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = _parse_value(text, node[parts[-1]], key)
  return cfg


def parse_variant(spec: str) -> tuple[str, list[str]]:
  """A named set of overrides from the command line, "NAME=key=value[,key=value...]" ("NAME=" for none), as used by
  the diagnostics that compare config variants side by side. Returns (NAME, ["key=value", ...])."""
  name, sep, rest = spec.partition("=")
  if not sep or not name:
    raise ConfigError(f"variant {spec!r}: expected NAME=key=value[,key=value...] (NAME= for no override)")
  return name, [o for o in rest.split(",") if o]


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks a whole config before anything runs.

  First the sections every task config needs, then every value (`simdist_jax.validation.validate`: builds the
  typed configs of every stage and checks cross-section constraints).

  Raises:
    ConfigError: naming each bad key, its value and the valid range.
  """
  missing = [s for s in SECTIONS if s not in cfg]
  if missing:
    raise ConfigError(f"config is missing sections {missing}; every task config needs {list(SECTIONS)}")
  for d in ("sim", "real"):
    if d not in cfg.domain:
      raise ConfigError(f"config.domain needs a '{d}' subsection")
  from simdist_jax import validation  # pylint: disable=import-outside-toplevel  # imports the stage packages
  validation.validate(cfg)


def parse_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Loads `path/to/task.py:preset` and applies the overrides, without validating (`load_config` = this, then
  `validate`, then freeze; the CLI starts `jax.distributed` in between, before any JAX backend exists).

  Args:
    spec: config file path with an optional `:preset` suffix (default preset `small`).
    overrides: `key.path=value` strings (the `--config.` prefix is optional).
  """
  path, _, preset = spec.partition(":")
  preset = preset or "small"
  mod = load_module(path)
  try:
    cfg = mod.get_config(preset)
  except KeyError as e:
    raise ConfigError(f"unknown preset {preset!r} for config '{path}': {e}") from e
  return apply_overrides(cfg, list(overrides))


def finish_config(cfg: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """`validate(cfg)`, then the frozen config."""
  validate(cfg)
  return ml_collections.FrozenConfigDict(cfg)


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.FrozenConfigDict:
  """Loads `path/to/task.py:preset`, applies overrides, validates every value (`validate`) and freezes.

  Nothing is written and no stage runs before validation passes.

  Args:
    spec: config file path with an optional `:preset` suffix (default preset `small`).
    overrides: `key.path=value` strings (the `--config.` prefix is optional).
  """
  return finish_config(parse_config(spec, overrides))


def to_json(cfg) -> str:
  """The config as JSON text (nested dicts, tuples as lists, keys sorted, indent 2)."""
  return json.dumps(_plain(cfg), indent=2, sort_keys=True)


def _plain(x):
  if isinstance(x, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict, dict)):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (tuple, list)):
    return [_plain(v) for v in x]
  return x


# Keys added to the config after run records existed, each with the value that reproduces what the code did before
# the key existed. A record that lacks such a key ran with that value: `record_diff` does not count the key as a
# difference while the current value is that one, and `from_json` fills it in, so an old record reads as the config
# it ran with (and `--set` can override the key). Add an entry whenever a new key keeps the old behaviour at some
# value; a key whose every value changes what ran (a new required setting) must not be listed.
ADDED_KEYS: dict[str, Any] = {
    "data.loading": "memory",
    "model.dynamics_residual": False,
    "model.dynamics_ensemble": 1,
    "model.compute_dtype": "float32",
    "adapt.gate_until_finetuned": False,
    "model.finetune.head_consistency": 0.0,
    "planner.ensemble_score": "mean_latent",
    "planner.ensemble_penalty": 0.0,
    "planner.advantage_gate": False,
    "planner.gate_margin": 0.0,
    "refine.rounds": 0,
    "refine.branch_points": 0,
    "refine.branches_per_point": 2,
    "refine.branch_sigma": 0.3,
    "run.compile_cache_dir": "",
    "run.mesh": 0,
    "run.coordinator": "",
    "run.num_processes": 0,
    "run.process_id": -1,
}


def with_added_keys(tree: dict) -> tuple[dict, list[str]]:
  """A plain config tree with every `ADDED_KEYS` entry it lacks filled in (only under sections it has, so a task
  without, e.g., a `refine` section gains none); returns (tree, the keys filled in, sorted)."""
  tree = json.loads(json.dumps(tree))
  filled = []
  for key, value in sorted(ADDED_KEYS.items()):
    *parents, leaf = key.split(".")
    node = tree
    for p in parents:
      node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict) and leaf not in node:
      node[leaf] = value
      filled.append(key)
  return tree, filled


def from_json(text: str) -> ml_collections.FrozenConfigDict:
  """A frozen config from JSON text written by `to_json`, with the `ADDED_KEYS` an older record lacks filled in at
  the values it ran with."""
  return ml_collections.FrozenConfigDict(with_added_keys(json.loads(text))[0])


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes a file atomically (unique temp name, fsync, rename; mode follows the umask): `fileio.write_text`."""
  from simdist_jax import fileio  # pylint: disable=import-outside-toplevel
  fileio.write_text(path, text)


def write_run_config(workdir: str | os.PathLike, cfg) -> pathlib.Path:
  """Writes `<workdir>/config.json`, the config of the latest invocation that got past loading and the stage
  checks (the CLI calls it only after `load_config` returned and no stage directory was refused). The stage
  directories below it keep their own `config.json` (`prepare_run_dir`), which is what their artifacts were
  made from."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  atomic_write_text(workdir / "config.json", to_json(cfg))
  return workdir


class StaleRunDirError(ConfigError):
  """A run (or stage) directory whose recorded config differs from the current one in keys it depends on.

  Attributes:
    path: the record (`<dir>/config.json`).
    diffs: `[(dotted key, recorded value, current value), ...]`, sorted by key; `ABSENT` where a side lacks it.
  """

  def __init__(self, path: str | os.PathLike, diffs: list[tuple[str, Any, Any]], hint: str):
    self.path = pathlib.Path(path)
    self.diffs = list(diffs)
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in self.diffs[:8])
    more = f"; ... ({len(self.diffs) - 8} more)" if len(self.diffs) > 8 else ""
    super().__init__(f"run directory '{self.path.parent}' was created by a different config ({len(self.diffs)} "
                     f"differences: {shown}{more}). {hint}")


ABSENT = "<absent>"  # the value `_diff` reports for a key that one of the two configs lacks


def prepare_run_dir(workdir: str | os.PathLike, cfg, sections: tuple[str, ...] | None = None, *,
                    covers: Any = None, record: str = "config.json",
                    hint: str = "Use a new --workdir or move the directory aside.") -> pathlib.Path:
  """Creates `workdir` and writes the full resolved config to `<workdir>/<record>`, or checks that an existing
  record agrees with `cfg` on every key the directory depends on.

  Args:
    workdir: run (or stage) directory.
    cfg: the frozen config.
    sections: dotted prefixes of the keys that must match (`"domain.sim"` covers `domain.sim.*` only).
    covers: `f(dotted_key) -> bool`, the keys that must match (the stage table's fingerprint,
      `simdist_jax.stages.covers`); overrides `sections`. With neither, every key must match.
    record: file name of the record inside `workdir`.
    hint: appended to the error (what the user can do).

  Returns:
    `workdir`.

  Raises:
    StaleRunDirError: the record differs in a covered key (a ConfigError naming every differing key).
    ConfigError: the record is not valid JSON (names the file).
  """
  workdir = pathlib.Path(workdir)
  path = workdir / record
  diffs = record_diff(path, cfg, sections=sections, covers=covers)
  if diffs:
    raise StaleRunDirError(path, diffs, hint)
  if diffs is None:
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, to_json(cfg))
  return workdir


def record_diff(path: str | os.PathLike, cfg, sections: tuple[str, ...] | None = None, covers: Any = None
                ) -> list[tuple[str, Any, Any]] | None:
  """Covered keys in which the record at `path` differs from `cfg` (`[]`: none); None when there is no record.

  The keys compared are the union of the leaves of both configs, so a key that only one side has (one added to
  a section later) is a difference too. `sections`/`covers`: as in `prepare_run_dir`.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return None
  try:
    old = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ConfigError(f"the config record '{path}' is not valid JSON ({e}); it is truncated or corrupt: move "
                      f"its directory aside or use a new --workdir") from e
  if covers is None:
    covers = ((lambda k: any(k == s or k.startswith(s + ".") for s in sections)) if sections
              else (lambda k: True))
  return [d for d in _diff(old, _plain(cfg)) if covers(d[0]) and not _ran_as(d)]


def _ran_as(diff: tuple[str, Any, Any]) -> bool:
  """A key the record lacks because it predates it, at the value the record ran with (`ADDED_KEYS`)."""
  key, recorded, current = diff
  return recorded == ABSENT and key in ADDED_KEYS and _plain(current) == ADDED_KEYS[key]


def lookup(tree, dotted: str):
  """`tree["a"]["b"]` for `"a.b"` in a plain (JSON) config tree or a ConfigDict; None where a part is missing."""
  for part in dotted.split("."):
    tree = tree.get(part) if isinstance(tree, (dict, ml_collections.ConfigDict)) else None
  return tree


def _diff(a, b, prefix=""):
  """`[(dotted leaf key, a's value, b's value)]` where two plain config trees differ (`ABSENT`: missing)."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out.extend(_diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{prefix}{k}."))
    return out
  if isinstance(a, dict) or isinstance(b, dict):  # a section on one side only: every leaf below it differs
    side = a if isinstance(a, dict) else b
    return [(k, *((v, ABSENT) if side is a else (ABSENT, v))) for k, v in _leaf_items(side, prefix)]
  key = prefix.rstrip(".")
  if a is _MISSING or b is _MISSING:
    return [] if a is b else [(key, ABSENT if a is _MISSING else a, ABSENT if b is _MISSING else b)]
  return [] if a == b else [(key, a, b)]


_MISSING = object()


def leaf_items(cfg) -> list[tuple[str, Any]]:
  """`[(dotted key, plain value)]` of every leaf of a config (or plain tree), sorted by key."""
  return _leaf_items(_plain(cfg))


def _leaf_items(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
  out = []
  for k, v in sorted(tree.items()):
    out.extend(_leaf_items(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)])
  return out
