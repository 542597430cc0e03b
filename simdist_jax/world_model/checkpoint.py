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
"""

import json
import os
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from simdist_jax.world_model import model as model_lib

# Fields of the `model` section that define the architecture (a checkpoint only fits a model built from the same).
ARCH_KEYS = ("latent_dim", "history", "horizon", "heads", "dynamics", "return_mask", "encoder", "dynamics_net",
             "reward_net", "value_net", "policy_net", "mlp_head_hidden", "ar_hidden", "dynamics_residual")
# Architecture keys added after the first checkpoints were written, with the value that older configs meant.
ARCH_DEFAULTS = {"dynamics_residual": False}
DIM_KEYS = ("proprio", "extero", "extero_shape", "action", "command")


class CheckpointMismatchError(ValueError):
  """The checkpoint was written for another task/architecture than the one requested."""


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

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """Metadata JSON of `step` (latest by default)."""
    step = self._resolve(step)
    return self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, step: int | None, abstract_variables: Any, abstract_train_state: Any = None) -> tuple[Any, Any]:
    """Restores `(variables, train_state)` at `step` onto the given abstract trees (train_state None if not asked).

    `abstract_variables` is `{"params": ..., ...}` (e.g. `jax.eval_shape(wm.init, key)`); the scaler comes from the
    metadata JSON.
    """
    step = self._resolve(step)
    items = {"variables": ocp.args.StandardRestore({"params": abstract_variables["params"]}),
             "meta": ocp.args.JsonRestore()}
    if abstract_train_state is not None:
      items["train_state"] = ocp.args.StandardRestore(abstract_train_state)
    out = self._mngr.restore(step, args=ocp.args.Composite(**items))
    scaler = jax.tree.map(lambda x: jax.numpy.asarray(np.asarray(x, np.float32)), out["meta"]["scaler_stats"],
                          is_leaf=lambda x: isinstance(x, list))
    variables = {"params": dict(out["variables"]["params"]), "scaler": scaler}
    return variables, (out["train_state"] if abstract_train_state is not None else None)

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
    meta = ckpt.restore_meta(step)
    model_cfg = ml_collections.ConfigDict(meta["model_cfg"])
    dims = dims_from_json(meta["dims"])
    wm = model_lib.make_world_model(model_cfg, dims)
    abstract = jax.eval_shape(wm.init, jax.random.key(0))
    variables, _ = ckpt.restore(step, abstract)
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
  """Writes the full resolved config to `workdir/config.json`."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(_jsonable(config), f, indent=2, sort_keys=True)
