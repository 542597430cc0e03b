"""Expert checkpoints on disk: the ladder of actors, the critic and the resume state, and their pure loaders.

Shapes: S privileged observation size, A action size, K ladder size (checkpoints incl. the final expert).

Layout of `<workdir>/expert/`:
  config.json                    the resolved config that trained the expert
  ladder/iter_<i:06d>/           actor at PPO iteration i: params/ (orbax: obs_mean [S], obs_std [S], policy)
                                 + meta.json (written last: a checkpoint without it is incomplete)
  critic/                        final critic: params/ (obs_mean, obs_std, value) + meta.json
  resume/                        latest full brax state (normalizer of every obs key, policy, value) + meta.json
  metrics.jsonl, events.out.tfevents.*, expert_eval.json, expert_ladder.png

Every checkpoint directory is written under a unique temporary name (`fileio.atomic_directory`) and renamed into
place, so a killed run leaves either the complete old checkpoint or the complete new one: replacing an existing
one moves it aside first, and a kill between those two renames (no checkpoint under the final name) is repaired
by `recover` (run by `recover_all` before every resume), which renames the complete new copy, else the old one,
back into place. `meta.json` makes it self-describing (network sizes, activation, S, A, iteration, env steps), so
the loaders need nothing but the directory. `save` refuses non-finite parameters (`NonFiniteParamsError`).

Loaders return `(params, apply_fn)` with pure, jittable, vmappable `apply_fn`s on UN-normalized privileged obs
(the normalizer statistics are part of `params`):
  actor:  apply_fn(params, obs[S]) -> action[A]   deterministic: tanh of the Gaussian mean (brax `mode`)
  critic: apply_fn(params, obs[S]) -> value[]
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks
from flax import linen

from simdist_jax import fileio

OBS_KEY = "privileged_state"
LADDER = "ladder"
CRITIC = "critic"
RESUME = "resume"
FORMAT_VERSION = 1

ACTIVATIONS = {"elu": linen.elu, "swish": linen.swish, "relu": linen.relu, "tanh": linen.tanh}


class CheckpointError(ValueError):
  """A missing, incomplete or corrupt expert checkpoint, or one that does not fit the requested config/index."""


class NonFiniteParamsError(CheckpointError):
  """Parameters with NaN/inf that `save` refused to write (training diverged)."""


class Ladder(NamedTuple):
  """The checkpoint ladder, stacked for per-env policy selection without Python branching.

  Attributes:
    params: pytree whose leaves are [K, ...] (one slice per checkpoint, in increasing iteration order).
    apply_fn: `apply_fn(params, policy_id, obs[S]) -> action[A]`; `policy_id` is an int32 scalar in [0, K).
    iterations: PPO iteration of each checkpoint (length K).
    expert_id: index of the final expert (K - 1).
  """

  params: Any
  apply_fn: Callable[[Any, jax.Array, jax.Array], jax.Array]
  iterations: tuple[int, ...]
  expert_id: int


# ---- networks ---------------------------------------------------------------------------------------------------
def activation_fn(name: str):
  """Activation by config name; ValueError naming the known ones."""
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def make_networks(obs_size: Any, action_size: int, policy_hidden, value_hidden, activation: str,
                  distribution_type: str = "tanh_normal",
                  preprocess_observations_fn: Callable = running_statistics.normalize) -> ppo_networks.PPONetworks:
  """Brax PPO networks reading `privileged_state` (obs_size: brax ObservationSize, an int or a dict of shapes).

  Also the `network_factory` of `ppo.train` (bind the keyword arguments with functools.partial).
  """
  return ppo_networks.make_ppo_networks(
      obs_size, action_size, preprocess_observations_fn=preprocess_observations_fn,
      policy_hidden_layer_sizes=tuple(int(h) for h in policy_hidden),
      value_hidden_layer_sizes=tuple(int(h) for h in value_hidden),
      activation=activation_fn(activation), policy_obs_key=OBS_KEY, value_obs_key=OBS_KEY,
      distribution_type=distribution_type)


def network_meta(expert_cfg: Any, obs_size: int, action_size: int) -> dict:
  """The architecture part of `meta.json`."""
  return {"format": FORMAT_VERSION, "obs_key": OBS_KEY, "obs_size": int(obs_size), "action_size": int(action_size),
          "policy_hidden": [int(h) for h in expert_cfg.policy_hidden],
          "value_hidden": [int(h) for h in expert_cfg.value_hidden], "activation": str(expert_cfg.activation),
          "distribution_type": str(expert_cfg.distribution_type),
          "normalize_observations": bool(expert_cfg.normalize_observations)}


def _nets_from_meta(meta: dict) -> ppo_networks.PPONetworks:
  # Loader networks take a flat [S] observation; normalization is (x - mean) / std with the stored statistics.
  return make_networks(int(meta["obs_size"]), int(meta["action_size"]), meta["policy_hidden"], meta["value_hidden"],
                       meta["activation"], meta["distribution_type"])


def _check_obs(obs: jax.Array, size: int, what: str) -> None:
  if obs.shape[-1:] != (size,):
    raise ValueError(f"{what}: expected privileged observation of trailing shape ({size},), got {tuple(obs.shape)}")


def actor_apply_fn(meta: dict) -> Callable[[Any, jax.Array], jax.Array]:
  """`apply_fn(params, obs[..., S]) -> action[..., A]`: deterministic tanh-squashed mean."""
  nets = _nets_from_meta(meta)
  size = int(meta["obs_size"])

  def apply_fn(params: Any, obs: jax.Array) -> jax.Array:
    _check_obs(obs, size, "actor")
    stats = running_statistics.NestedMeanStd(mean=params["obs_mean"], std=params["obs_std"])
    logits = nets.policy_network.apply(stats, params["policy"], obs)
    return nets.parametric_action_distribution.mode(logits)

  return apply_fn


def critic_apply_fn(meta: dict) -> Callable[[Any, jax.Array], jax.Array]:
  """`apply_fn(params, obs[..., S]) -> value[...]`."""
  nets = _nets_from_meta(meta)
  size = int(meta["obs_size"])

  def apply_fn(params: Any, obs: jax.Array) -> jax.Array:
    _check_obs(obs, size, "critic")
    stats = running_statistics.NestedMeanStd(mean=params["obs_mean"], std=params["obs_std"])
    return nets.value_network.apply(stats, params["value"], obs)

  return apply_fn


def export_params(normalizer: running_statistics.RunningStatisticsState, net_params: Any, which: str) -> dict:
  """Brax (normalizer, policy|value params) -> loader params {obs_mean [S], obs_std [S], which: params}."""
  return {"obs_mean": jnp.asarray(normalizer.mean[OBS_KEY], jnp.float32),
          "obs_std": jnp.asarray(normalizer.std[OBS_KEY], jnp.float32), which: net_params}


# ---- directories ------------------------------------------------------------------------------------------------
def ladder_path(expert_dir: str | os.PathLike, iteration: int) -> pathlib.Path:
  """Directory of the ladder checkpoint at `iteration`: `<expert_dir>/ladder/iter_<iteration:06d>`."""
  return pathlib.Path(expert_dir) / LADDER / f"iter_{int(iteration):06d}"


def read_meta(path: pathlib.Path) -> dict:
  """meta.json of a checkpoint directory; CheckpointError naming the file when missing or invalid."""
  meta_path = path / "meta.json"
  if not path.is_dir():
    raise CheckpointError(f"expert checkpoint '{path}' does not exist")
  if not meta_path.is_file():
    raise CheckpointError(f"expert checkpoint '{path}' is incomplete or corrupt: '{meta_path}' is missing "
                          "(the run was interrupted while saving it; rerun `simdist-jax expert`)")
  try:
    meta = fileio.read_json(meta_path)
  except fileio.CorruptFileError as e:
    raise CheckpointError(f"expert checkpoint metadata '{meta_path}' is not valid JSON: {e.reason}") from e
  if not isinstance(meta, dict):
    raise CheckpointError(f"expert checkpoint metadata '{meta_path}' is not a JSON object")
  missing = [k for k in ("format", "obs_size", "action_size", "policy_hidden", "value_hidden", "activation",
                         "distribution_type", "iteration", "kind") if k not in meta]
  if missing:
    raise CheckpointError(f"expert checkpoint metadata '{meta_path}' lacks fields {missing}")
  return meta


def nonfinite_leaves(tree: Any, limit: int = 8) -> list[str]:
  """`"<key path>: <n> of <size>"` for the float leaves of `tree` holding NaN/inf (at most `limit`)."""
  out = []
  for kp, x in jax.tree_util.tree_leaves_with_path(tree):
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.inexact):
      bad = int(x.size - np.isfinite(x).sum())
      if bad:
        out.append(f"{jax.tree_util.keystr(kp)}: {bad} of {x.size}")
        if len(out) >= limit:
          break
  return out


def is_complete(path: pathlib.Path) -> bool:
  """Whether `path` holds a complete checkpoint (its completion marker `meta.json` was written)."""
  return (pathlib.Path(path) / "meta.json").is_file()


def save(path: str | os.PathLike, tree: Any, meta: dict) -> None:
  """Atomically writes `tree` (orbax, under params/) and `meta` (meta.json, the completion marker) to `path`.

  Raises:
    NonFiniteParamsError: a float leaf of `tree` holds NaN/inf (nothing is written).
  """
  path = pathlib.Path(path).absolute()  # orbax refuses relative paths
  tree = jax.tree.map(np.asarray, tree)
  bad = nonfinite_leaves(tree)
  if bad:
    raise NonFiniteParamsError(
        f"refusing to save the {meta.get('kind', 'expert')} checkpoint '{path}' at PPO iteration "
        f"{meta.get('iteration', '?')}: non-finite parameters ({'; '.join(bad)}). Training diverged; the "
        f"checkpoints already on disk are kept. Lower expert.learning_rate or expert.max_grad_norm, or change "
        f"run.seed, and rerun")
  with fileio.atomic_directory(path) as tmp:
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp / "params", tree)
    ckptr.wait_until_finished()
    ckptr.close()
    fileio.write_json(tmp / "meta.json", meta)


def recover(path: str | os.PathLike) -> str | None:
  """Repairs checkpoint `path` after a kill inside `save` (see the module doc). Returns what it did, or None."""
  return fileio.recover_directory(pathlib.Path(path).absolute(), is_complete)


def recover_all(expert_dir: str | os.PathLike) -> list[str]:
  """`recover` for the resume state, the critic and every ladder entry of `expert_dir`. Returns the actions."""
  expert_dir = pathlib.Path(expert_dir)
  targets = [expert_dir / RESUME, expert_dir / CRITIC]
  root = expert_dir / LADDER
  if root.is_dir():
    names = {p.name for p in root.iterdir() if p.name.startswith("iter_")}
    names |= fileio.leftover_targets(root)
    targets += [root / n for n in sorted(names) if n.startswith("iter_")]
  return [a for a in (recover(t) for t in targets) if a]


def restore(path: str | os.PathLike, abstract: Any) -> Any:
  """Restores the orbax tree under `path`/params onto `abstract` (clear error naming the path on failure)."""
  path = pathlib.Path(path).absolute()  # orbax refuses relative paths
  ckptr = ocp.StandardCheckpointer()
  try:
    return ckptr.restore(path / "params", abstract)
  except Exception as e:  # orbax raises several types for missing/corrupt/mismatched files
    raise CheckpointError(f"cannot restore expert checkpoint '{path / 'params'}': {type(e).__name__}: {e}") from e
  finally:
    ckptr.close()


def _abstract_loader_params(meta: dict, which: str) -> dict:
  nets = _nets_from_meta(meta)
  net = nets.policy_network if which == "policy" else nets.value_network
  s = int(meta["obs_size"])
  vec = jax.ShapeDtypeStruct((s,), jnp.float32)
  return {"obs_mean": vec, "obs_std": vec, which: jax.eval_shape(net.init, jax.random.key(0))}


def check_meta_against(meta: dict, cfg: Any, where: str) -> None:
  """Raises CheckpointError when `cfg`'s task dims or expert architecture differ from the checkpoint's."""
  from simdist_jax.envs.registry import make_task  # pylint: disable=import-outside-toplevel
  dims = make_task(cfg).dims
  want = {"obs_size": int(dims["privileged"]), "action_size": int(dims["action"]),
          "policy_hidden": [int(h) for h in cfg.expert.policy_hidden],
          "value_hidden": [int(h) for h in cfg.expert.value_hidden], "activation": str(cfg.expert.activation),
          "distribution_type": str(cfg.expert.distribution_type)}
  diffs = [f"{k}: checkpoint has {meta[k]!r}, config (task {cfg.task!r}) has {v!r}"
           for k, v in want.items() if meta[k] != v]
  if diffs:
    raise CheckpointError(f"expert checkpoint '{where}' does not match the config:\n  " + "\n  ".join(diffs))


def list_ladder(expert_dir: str | os.PathLike) -> list[int]:
  """Iterations of the complete ladder checkpoints (with meta.json), increasing."""
  root = pathlib.Path(expert_dir) / LADDER
  if not root.is_dir():
    return []
  out = []
  for p in root.iterdir():
    if p.name.startswith("iter_") and (p / "meta.json").is_file():
      out.append(int(p.name[len("iter_"):]))
  return sorted(out)


def _ladder_dirs(expert_dir: str | os.PathLike) -> list[pathlib.Path]:
  expert_dir = pathlib.Path(expert_dir)
  if not expert_dir.is_dir():
    raise CheckpointError(f"expert directory '{expert_dir}' does not exist (train it with `simdist-jax expert`)")
  its = list_ladder(expert_dir)
  if not its:
    raise CheckpointError(f"expert directory '{expert_dir}' holds no complete ladder checkpoint under "
                          f"'{expert_dir / LADDER}'")
  return [ladder_path(expert_dir, i) for i in its]


# ---- public loaders ---------------------------------------------------------------------------------------------
def load_actor_at(path: str | os.PathLike, cfg: Any = None) -> tuple[dict, Callable, dict]:
  """(params, apply_fn, meta) of the actor checkpoint directory `path`; checked against `cfg` when given."""
  path = pathlib.Path(path)
  meta = read_meta(path)
  if meta["kind"] != "actor":
    raise CheckpointError(f"'{path}' holds a {meta['kind']!r} checkpoint, not an actor")
  if cfg is not None:
    check_meta_against(meta, cfg, str(path))
  params = restore(path, _abstract_loader_params(meta, "policy"))
  return params, actor_apply_fn(meta), meta


def load_policy(expert_dir: str | os.PathLike, k: int, cfg: Any = None) -> tuple[dict, Callable]:
  """Ladder checkpoint `k` (0 .. K-1, negative counts from the end; K-1 is the expert) -> (params, apply_fn).

  `apply_fn(params, privileged_obs[S]) -> action[A]` is deterministic, jittable and vmappable.

  Raises:
    CheckpointError: missing/corrupt directory, `k` out of range (names the available iterations), or a `cfg`
      whose observation/action size or architecture differs from the checkpoint's.
  """
  dirs = _ladder_dirs(expert_dir)
  if not -len(dirs) <= int(k) < len(dirs):
    raise CheckpointError(f"ladder index {k} does not exist in '{pathlib.Path(expert_dir) / LADDER}': it holds "
                          f"K={len(dirs)} checkpoints (iterations {list_ladder(expert_dir)}), valid indices "
                          f"0..{len(dirs) - 1}")
  params, apply_fn, _ = load_actor_at(dirs[int(k)], cfg)
  return params, apply_fn


def load_critic(expert_dir: str | os.PathLike, cfg: Any = None) -> tuple[dict, Callable]:
  """The final critic -> (params, apply_fn) with `apply_fn(params, privileged_obs[S]) -> value` (scalar)."""
  path = pathlib.Path(expert_dir) / CRITIC
  meta = read_meta(path)
  if cfg is not None:
    check_meta_against(meta, cfg, str(path))
  params = restore(path, _abstract_loader_params(meta, "value"))
  return params, critic_apply_fn(meta)


def stack_ladder(params_list: list[Any], meta: dict, iterations: tuple[int, ...]) -> Ladder:
  """Stacks per-checkpoint actor params along a new leading axis [K, ...] into a `Ladder`."""
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params_list)
  actor = actor_apply_fn(meta)

  def apply_fn(stacked_params: Any, policy_id: jax.Array, obs: jax.Array) -> jax.Array:
    return actor(jax.tree.map(lambda x: x[policy_id], stacked_params), obs)

  return Ladder(params=stacked, apply_fn=apply_fn, iterations=tuple(iterations), expert_id=len(params_list) - 1)


def load_ladder(expert_dir: str | os.PathLike, cfg: Any = None) -> Ladder:
  """All ladder checkpoints, stacked (see `Ladder`). The last one (`expert_id`) is the final expert."""
  dirs = _ladder_dirs(expert_dir)
  loaded = [load_actor_at(d, cfg) for d in dirs]
  metas = [m for _, _, m in loaded]
  arch = {k: metas[0][k] for k in ("obs_size", "action_size", "policy_hidden", "activation", "distribution_type")}
  for d, m in zip(dirs, metas, strict=False):
    other = {k: m[k] for k in arch}
    if other != arch:
      raise CheckpointError(f"ladder checkpoint '{d}' has architecture {other}, but '{dirs[0]}' has {arch}")
  return stack_ladder([p for p, _, _ in loaded], metas[0], tuple(int(m["iteration"]) for m in metas))
