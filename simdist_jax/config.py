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
import tempfile
from typing import Any

import ml_collections

SECTIONS = ("task", "preset", "env", "domain", "expert", "data", "model", "planner", "adapt", "run")
_CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "configs"


class ConfigError(ValueError):
  """A config that cannot be loaded: unknown task/preset, unknown key, wrong type, malformed override."""


def load_module(path: str | os.PathLike):
  """Imports a config file by path."""
  path = pathlib.Path(path)
  if not path.is_file():
    avail = sorted(p.stem for p in _CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
    raise ConfigError(f"config file '{path}' does not exist; available task configs in "
                      f"{_CONFIG_DIR}: {avail}")
  spec = importlib.util.spec_from_file_location(f"simdist_cfg_{path.stem}", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
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


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks a whole config before anything runs: the sections every task config needs, then every value
  (`simdist_jax.validation.validate`: builds the typed configs of every stage and checks cross-section
  constraints). Raises ConfigError naming each bad key, its value and the valid range."""
  missing = [s for s in SECTIONS if s not in cfg]
  if missing:
    raise ConfigError(f"config is missing sections {missing}; every task config needs {list(SECTIONS)}")
  for d in ("sim", "real"):
    if d not in cfg.domain:
      raise ConfigError(f"config.domain needs a '{d}' subsection")
  from simdist_jax import validation  # pylint: disable=import-outside-toplevel  # imports the stage packages
  validation.validate(cfg)


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.FrozenConfigDict:
  """Loads `path/to/task.py:preset`, applies overrides, validates every value (`validate`) and freezes.

  Nothing is written and no stage runs before validation passes.

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
  cfg = apply_overrides(cfg, list(overrides))
  validate(cfg)
  return ml_collections.FrozenConfigDict(cfg)


def to_json(cfg) -> str:
  return json.dumps(_plain(cfg), indent=2, sort_keys=True)


def _plain(x):
  if isinstance(x, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict, dict)):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (tuple, list)):
    return [_plain(v) for v in x]
  return x


def from_json(text: str) -> ml_collections.FrozenConfigDict:
  return ml_collections.FrozenConfigDict(json.loads(text))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes a file via a temp file + rename so readers never see half a file."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_run_config(workdir: str | os.PathLike, cfg) -> pathlib.Path:
  """Writes `<workdir>/config.json` (the config of the latest invocation). Stage directories below it guard
  their own artifacts with `prepare_run_dir(stage_dir, cfg, sections=...)`, so changing e.g. `adapt` reuses a
  trained expert and dataset but refuses a stale `adapt/` directory."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  atomic_write_text(workdir / "config.json", to_json(cfg))
  return workdir


def prepare_run_dir(workdir: str | os.PathLike, cfg, sections: tuple[str, ...] | None = None) -> pathlib.Path:
  """Creates `workdir` and writes `config.json`, or checks that an existing one matches.

  Args:
    workdir: run (or stage) directory.
    cfg: the frozen config.
    sections: when given, only these sections must match an existing `config.json` (a stage directory depends
      on the sections its artifacts were made from); dotted names select a subsection (`"domain.sim"`, so a
      changed `domain.real` keeps the sim-side artifacts); by default the whole config.

  Raises:
    ConfigError: the directory holds artifacts of a different config (names the differing keys).
  """
  workdir = pathlib.Path(workdir)
  new = _plain(cfg)
  cfg_path = workdir / "config.json"
  if cfg_path.exists():
    old = json.loads(cfg_path.read_text())
    keys = sections or tuple(sorted(set(old) | set(new)))
    diffs = _diff({k: lookup(old, k) for k in keys}, {k: lookup(new, k) for k in keys})
    if diffs:
      shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:8])
      raise ConfigError(f"run directory '{workdir}' was created by a different config ({len(diffs)} "
                        f"differences: {shown}). Use a new --workdir or delete the directory.")
    return workdir
  workdir.mkdir(parents=True, exist_ok=True)
  atomic_write_text(cfg_path, json.dumps(new, indent=2, sort_keys=True))
  return workdir


def lookup(tree, dotted: str):
  """`tree["a"]["b"]` for `"a.b"` in a plain (JSON) config tree; None where a part is missing."""
  for part in dotted.split("."):
    tree = tree.get(part) if isinstance(tree, dict) else None
  return tree


def _diff(a, b, prefix=""):
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out.extend(_diff(a.get(k), b.get(k), f"{prefix}{k}."))
    return out
  return [] if a == b else [(prefix.rstrip("."), a, b)]
