"""Orbax checkpoints of the world model that are self-describing.

Layout of a run directory `workdir`:
  workdir/config.json               the full resolved config of the run
  workdir/checkpoints/<step>/
    variables/                      {"params"} (orbax StandardSave)
    train_state/                    {"opt_state", "key"} (optional; pretraining/finetuning resume)
    meta/                           JSON: model_cfg, dims, scaler stats (the `scaler` collection), step, kind
                                    (the scaler lives in JSON because orbax cannot save the zero-size
                                    extero/command stats of E = 0 / C = 0 tasks)

`load(dir)` rebuilds the model from `meta` alone and returns `(variables, model_cfg, dims)`; `dir` may be the run
directory or its `checkpoints/` folder.

Corruption. Restoring the latest step (`load`, `Checkpointer.restore(None, ...)`, `restore_latest`) falls back to
the previous kept step when the latest one is truncated, bit-flipped or lacks its metadata, with a warning naming
the bad step's path; when no kept step restores, `CorruptCheckpointError` names the directory and each step's
error. A resuming trainer passes `discard_corrupt=True`, which moves the bad steps to `<dir>_corrupt/` so that new
saves and `latest_step()` do not meet them again. An explicitly requested step is never substituted.
"""

import json
import os
import secrets
import warnings
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from simdist_jax import fileio
from simdist_jax.world_model import model as model_lib

# Fields of the `model` section that define the architecture (a checkpoint only fits a model built from the same).
ARCH_KEYS = ("latent_dim", "history", "horizon", "heads", "dynamics", "return_mask", "encoder", "dynamics_net",
             "reward_net", "value_net", "policy_net", "mlp_head_hidden", "ar_hidden", "dynamics_residual",
             "dynamics_ensemble")
# Architecture keys added after the first checkpoints were written, with the value that older configs meant.
ARCH_DEFAULTS = {"dynamics_residual": False, "dynamics_ensemble": 1}
DIM_KEYS = ("proprio", "extero", "extero_shape", "action", "command")


class CheckpointMismatchError(ValueError):
  """The checkpoint was written for another task/architecture than the one requested."""


class CorruptCheckpointError(ValueError):
  """A world-model checkpoint step (or every kept step) cannot be restored: truncated, corrupt or incomplete."""


def _jsonable(x: Any) -> Any:
  """ConfigDict / tuples / numpy -> plain JSON types (tuples become lists)."""
  if isinstance(x, ml_collections.ConfigDict):
    x = x.to_dict()
  return json.loads(json.dumps(x, default=lambda o: np.asarray(o).tolist()))


def dims_to_json(dims: Mapping[str, Any]) -> dict[str, Any]:
  """Env dims as plain JSON (extero_shape as a list)."""
  return {k: _jsonable(dims.get(k, [] if k == "extero_shape" else 0)) for k in DIM_KEYS}


def dims_from_json(d: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of `dims_to_json`."""
  out = {k: int(d[k]) for k in DIM_KEYS if k != "extero_shape"}
  out["extero_shape"] = tuple(int(v) for v in d["extero_shape"])
  return out


def check_compatible(saved_cfg: Any, saved_dims: Mapping[str, Any], model_cfg: Any, dims: Mapping[str, Any],
                     where: str = "checkpoint") -> None:
  """Raises `CheckpointMismatchError` naming every architecture field or env dim that differs."""
  saved_cfg, model_cfg = _jsonable(saved_cfg), _jsonable(model_cfg)
  diffs = []
  for k in DIM_KEYS:
    a, b = dims_to_json(saved_dims)[k], dims_to_json(dims)[k]
    if a != b:
      diffs.append(f"dims.{k}: {where} has {a}, requested {b}")
  for k in ARCH_KEYS:
    a, b = saved_cfg.get(k, ARCH_DEFAULTS.get(k)), model_cfg.get(k, ARCH_DEFAULTS.get(k))
    if a != b:
      diffs.append(f"model.{k}: {where} has {a}, requested {b}")
  if diffs:
    raise CheckpointMismatchError(
      f"{where} does not match the requested task/model (another task or config?):\n  " + "\n  ".join(diffs))


def _ckpt_dir(directory: str) -> str:
  directory = os.path.abspath(os.fspath(directory))
  sub = os.path.join(directory, "checkpoints")
  return sub if os.path.isdir(sub) else directory


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` (keep N) for world-model checkpoints."""

  def __init__(self, directory: str, keep: int = 3, create: bool = True) -> None:
    """`directory` is the `checkpoints/` folder (created if `create`)."""
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=create)
    self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                       item_names=("variables", "train_state", "meta"))

  def latest_step(self) -> int | None:
    """Latest saved step, or None."""
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    """Saved steps in increasing order."""
    return sorted(self._mngr.all_steps())

  def save(self, step: int, variables: Mapping[str, Any], model_cfg: Any, dims: Mapping[str, Any],
           train_state: Any = None, kind: str = "pretrain", extra: Mapping[str, Any] | None = None) -> None:
    """Saves variables (+ optional train state) and the metadata that makes the checkpoint self-describing."""
    scaler = jax.tree.map(lambda x: np.asarray(x).tolist(), variables["scaler"])
    meta = {"model_cfg": _jsonable(model_cfg), "dims": dims_to_json(dims), "scaler_stats": scaler,
            "step": int(step), "kind": kind, "extra": _jsonable(dict(extra or {}))}
    items = {"variables": ocp.args.StandardSave({"params": dict(variables["params"])}),
             "meta": ocp.args.JsonSave(meta)}
    if train_state is not None:
      items["train_state"] = ocp.args.StandardSave(train_state)
    self._mngr.save(int(step), args=ocp.args.Composite(**items), force=True)
    self._mngr.wait_until_finished()

  def step_path(self, step: int) -> str:
    """Directory of checkpoint `step`."""
    return os.path.join(self.directory, str(int(step)))

  def _restore_meta_at(self, step: int) -> dict[str, Any]:
    try:
      meta = self._mngr.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax/tensorstore raise many types for missing or corrupt files
      raise CorruptCheckpointError(f"cannot read the metadata of world-model checkpoint '{self.step_path(step)}':"
                                   f" {type(e).__name__}: {e}") from e
    if not isinstance(meta, dict) or "model_cfg" not in meta or "scaler_stats" not in meta:
      raise CorruptCheckpointError(f"world-model checkpoint '{self.step_path(step)}' has incomplete metadata "
                                   f"(keys {sorted(meta) if isinstance(meta, dict) else type(meta).__name__})")
    return meta

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """Metadata JSON of `step`; by default of the latest step whose metadata reads (warning past a bad one)."""
    if step is not None:
      return self._restore_meta_at(self._resolve(step))
    errors = []
    for s in self._steps_desc():
      try:
        meta = self._restore_meta_at(s)
      except CorruptCheckpointError as e:
        errors.append((s, e))
        continue
      self._warn_fallback(errors, s)
      return meta
    raise self._none_restores(errors)

  def _restore_at(self, step: int, abstract_variables: Any, abstract_train_state: Any) -> tuple[Any, Any]:
    meta = self._restore_meta_at(step)
    items = {"variables": ocp.args.StandardRestore({"params": abstract_variables["params"]})}
    if abstract_train_state is not None:
      items["train_state"] = ocp.args.StandardRestore(abstract_train_state)
    try:
      out = self._mngr.restore(int(step), args=ocp.args.Composite(**items))
      scaler = jax.tree.map(lambda x: jax.numpy.asarray(np.asarray(x, np.float32)), meta["scaler_stats"],
                            is_leaf=lambda x: isinstance(x, list))
    except Exception as e:  # orbax/tensorstore raise many types for missing or corrupt files
      raise CorruptCheckpointError(f"cannot restore world-model checkpoint '{self.step_path(step)}': "
                                   f"{type(e).__name__}: {e}") from e
    variables = {"params": dict(out["variables"]["params"]), "scaler": scaler}
    return variables, (out["train_state"] if abstract_train_state is not None else None)

  def restore(self, step: int | None, abstract_variables: Any, abstract_train_state: Any = None) -> tuple[Any, Any]:
    """Restores `(variables, train_state)` at `step` onto the given abstract trees (train_state None if not asked).

    `abstract_variables` is `{"params": ..., ...}` (e.g. `jax.eval_shape(wm.init, key)`); the scaler comes from the
    metadata JSON. `step=None` is `restore_latest` (falls back past corrupt steps); an explicit step raises
    `CorruptCheckpointError` naming its path when it cannot be restored.
    """
    if step is None:
      _, variables, train_state = self.restore_latest(abstract_variables, abstract_train_state)
      return variables, train_state
    return self._restore_at(self._resolve(step), abstract_variables, abstract_train_state)

  def restore_latest(self, abstract_variables: Any, abstract_train_state: Any = None,
                     discard_corrupt: bool = False) -> tuple[int, Any, Any]:
    """`(step, variables, train_state)` of the newest kept step that restores.

    Steps that fail (truncated/bit-flipped tensorstore data, missing metadata) are skipped with a warning naming
    their path. With `discard_corrupt`, those newer steps are then moved to `<directory>_corrupt/` (only once an
    older step restored with the same abstract trees, so a config mismatch never discards anything).

    Raises:
      FileNotFoundError: no checkpoint at all.
      CorruptCheckpointError: no kept step restores (names the directory and every step's error).
    """
    errors = []
    for s in self._steps_desc():
      try:
        variables, train_state = self._restore_at(s, abstract_variables, abstract_train_state)
      except CorruptCheckpointError as e:
        errors.append((s, e))
        continue
      self._warn_fallback(errors, s)
      if discard_corrupt and errors:
        self._discard([bad for bad, _ in errors])
      return s, variables, train_state
    raise self._none_restores(errors)

  def _steps_desc(self) -> list[int]:
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no world-model checkpoint in {self.directory}")
    return steps

  def _warn_fallback(self, errors: list, step: int) -> None:
    for bad, e in errors:
      msg = (f"world-model checkpoint '{self.step_path(bad)}' is corrupt or incomplete; falling back to step "
             f"{step} ('{self.step_path(step)}'): {e}")
      warnings.warn(msg, RuntimeWarning, stacklevel=3)
      print(f"[world_model] WARNING {msg}", flush=True)

  def _none_restores(self, errors: list) -> CorruptCheckpointError:
    detail = "\n  ".join(f"step {s}: {e}" for s, e in errors)
    return CorruptCheckpointError(f"no kept world-model checkpoint in '{self.directory}' can be restored "
                                  f"(steps {[s for s, _ in errors]}):\n  {detail}")

  def _discard(self, steps: list[int]) -> None:
    dest_root = self.directory.rstrip(os.sep) + "_corrupt"
    os.makedirs(dest_root, exist_ok=True)
    for s in steps:
      dest = os.path.join(dest_root, f"{int(s)}-{secrets.token_hex(3)}")
      os.replace(self.step_path(s), dest)
      print(f"[world_model] moved corrupt checkpoint '{self.step_path(s)}' to '{dest}'", flush=True)
    self._mngr.reload()

  def _resolve(self, step: int | None) -> int:
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"no world-model checkpoint in {self.directory}")
    return step

  def close(self) -> None:
    """Releases the manager."""
    self._mngr.close()


def load(directory: str, step: int | None = None) -> tuple[dict[str, Any], ml_collections.ConfigDict, dict[str, Any]]:
  """Loads `(variables, model_cfg, dims)` from a run or checkpoints directory alone (latest step by default)."""
  ckpt = Checkpointer(_ckpt_dir(directory), create=False)
  try:
    meta = ckpt.restore_meta(step)  # latest readable metadata by default (the architecture is shared by all steps)
    model_cfg = ml_collections.ConfigDict(meta["model_cfg"])
    dims = dims_from_json(meta["dims"])
    wm = model_lib.make_world_model(model_cfg, dims)
    abstract = jax.eval_shape(wm.init, jax.random.key(0))
    variables, _ = ckpt.restore(step, abstract)  # step None: falls back past corrupt steps, with a warning
  finally:
    ckpt.close()
  return {"params": dict(variables["params"]), "scaler": dict(variables["scaler"])}, model_cfg, dims


def load_checked(directory: str, model_cfg: Any, dims: Mapping[str, Any],
                 step: int | None = None) -> tuple[dict[str, Any], ml_collections.ConfigDict, dict[str, Any]]:
  """`load`, then `check_compatible` against the requested `model_cfg`/`dims` (clear error on mismatch)."""
  variables, saved_cfg, saved_dims = load(directory, step)
  check_compatible(saved_cfg, saved_dims, model_cfg, dims, where=f"checkpoint in {directory}")
  return variables, saved_cfg, saved_dims


def save_config(workdir: str, config: Any) -> None:
  """Writes the full resolved config to `workdir/config.json` (atomically, `fileio.write_json`)."""
  fileio.write_json(os.path.join(workdir, "config.json"), _jsonable(config))
