"""Mixed-quality dataset generation (paper §2.3, Algorithm 2; official `DataRecorder`, digest §5.7).

Dimension letters: N envs, S steps per shard (one compiled `lax.scan` call), A action, P/E/C proprio/extero/command,
K ladder size (expert id K-1).

Per env j (all vmapped, one scan over time per shard):
- sigma_j ~ U[sigma_min, sigma_max]^A, drawn once for the whole run; a share `never_noised_frac` of envs is never
  noised; eligible envs start noisy with probability `init_noisy_prob`.
- On every (auto-)reset (a new domain and initial state, `wrap_for_training`), the policy is the expert with
  probability `p_expert`, otherwise a checkpoint drawn uniformly from the K-1 non-expert ladder entries.
- Noisy and clean intervals alternate per env, independent of episode boundaries, with inclusive lengths
  U{noisy_len} and U{clean_len}. In a noisy step the applied action is clip(pi(s) + sigma * eps, -c, c), otherwise
  clip(pi(s), -c, c) (c = `action_clip`, the env's action bounds); the applied action is what is stored.

Per-step labels (step k of env j, state s_k before acting):
  proprio/extero/command  o_k observed at s_k (split of obs["state"])
  action       a_k, the applied (corrupted, clipped) action
  reward       r_k = r(s_k, a_k, s_{k+1}) (the env's step reward, computed before any auto-reset)
  value        V^e(s_k): the expert critic on the privileged obs at which o_k was observed (NOT post-step; the
               official recorder stores V(o_{k+1}), digest §1.2 -- here value[k] pairs with o_k, and the world model
               takes value[H+1:H+T+1] as targets for z_{t+1..t+T})
  expert_flag  1 iff a_k == clip(pi^e(s_k)) exactly (all dims): the applied action is the uncorrupted expert
               action. This equals the paper's `uses_expert AND NOT noised` except when clipping makes a noised or
               non-expert action bit-identical to the expert's, which is then (correctly) an expert action.
  noised       1 iff step k is in a noisy interval (noise was added, before clipping)
  policy_id    ladder index of the acting policy; episode_id: global id k * N + j of env j's k-th episode.
An episode ends at the env's `done` (termination or the episode-length cut); the next step starts a new episode.

Devices (`run.mesh` >= 2, `simdist_jax.mesh`): the env batch is split over the "data" axis, N / n envs per device
(every [N, ...] leaf of the carry sharded along N, the key and the ladder / critic params replicated), and the same
jitted scan runs on every device. Random draws do not depend on the sharding, env j gets the same key as on one
device and episode ids stay global (k * N + j), so the host gathers each shard's [S, N, ...] arrays into the same
files, one manifest, one resume state (which may be resumed on another device count).

Resumption: the generation carry (env states, schedules, keys) is saved after every complete shard; rerunning the
same command continues from there and yields byte-identical shards to an uninterrupted run (every chunk call takes
its carry through the same host round-trip, so both paths feed identical inputs to the same compiled function).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax import fileio
from simdist_jax import mesh as mesh_lib
from simdist_jax import paths
from simdist_jax.config import atomic_write_text, to_json
from simdist_jax.data import scaler as scaler_lib
from simdist_jax.data import storage

_DATA_STREAM = 0xDA7A  # fold-in constant naming the data-generation key stream
RESUME = ".resume.npz"


@dataclasses.dataclass(frozen=True)
class GenConfig:
  """Frozen generation settings (see experiments/configs/sections/data.py for each field's meaning)."""

  num_envs: int
  num_steps: int
  shard_steps: int
  episode_length: int
  p_expert: float = 0.5
  sigma_min: float = 0.05
  sigma_max: float = 1.0
  noisy_len: tuple[int, int] = (1, 20)
  clean_len: tuple[int, int] = (10, 100)
  never_noised_frac: float = 0.025
  init_noisy_prob: float = 0.5
  action_clip: float = 1.0
  proprio_dtype: str = "float16"
  extero_dtype: str = "float16"
  command_dtype: str = "float16"
  float16_max_rel_error: float = 0.01
  std_floor: float = 1e-4

  def __post_init__(self):
    if self.num_envs < 1 or self.shard_steps < 1 or self.num_steps < 1:
      raise ValueError(f"num_envs, num_steps, shard_steps must be >= 1 (got {self.num_envs}, {self.num_steps}, "
                       f"{self.shard_steps})")
    if self.num_steps % self.shard_steps:
      raise ValueError(f"data.num_steps ({self.num_steps}) must be a multiple of data.shard_steps "
                       f"({self.shard_steps})")
    for name in ("noisy_len", "clean_len"):
      lo, hi = getattr(self, name)
      if not 1 <= lo <= hi:
        raise ValueError(f"data.{name} must be an inclusive range 1 <= lo <= hi, got ({lo}, {hi})")
    if not 0.0 <= self.sigma_min <= self.sigma_max:
      raise ValueError(f"need 0 <= sigma_min <= sigma_max, got ({self.sigma_min}, {self.sigma_max})")
    for name in ("p_expert", "never_noised_frac", "init_noisy_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"data.{name} must be in [0, 1], got {getattr(self, name)}")

  @property
  def num_shards(self) -> int:
    """Number of shards: `num_steps // shard_steps`."""
    return self.num_steps // self.shard_steps

  @property
  def obs_dtypes(self) -> dict:
    """Storage dtype per observation part: {"proprio", "extero", "command"} -> dtype name."""
    return {"proprio": self.proprio_dtype, "extero": self.extero_dtype, "command": self.command_dtype}

  @classmethod
  def from_config(cls, cfg: Any) -> "GenConfig":
    """The generation settings of a run config (its `data` section and `env.episode_length`)."""
    d = cfg.data
    return cls(num_envs=int(d.num_envs), num_steps=int(d.num_steps), shard_steps=int(d.shard_steps),
               episode_length=int(cfg.env.episode_length), p_expert=float(d.p_expert),
               sigma_min=float(d.sigma_min), sigma_max=float(d.sigma_max), noisy_len=tuple(d.noisy_len),
               clean_len=tuple(d.clean_len), never_noised_frac=float(d.never_noised_frac),
               init_noisy_prob=float(d.init_noisy_prob), action_clip=float(d.action_clip),
               proprio_dtype=d.proprio_dtype, extero_dtype=d.extero_dtype, command_dtype=d.command_dtype,
               float16_max_rel_error=float(d.float16_max_rel_error), std_floor=float(d.std_floor))


class GenState(NamedTuple):
  """Scan carry: batched env state plus per-env policy/noise bookkeeping and the generation key."""

  env_state: Any  # brax State, batched over N
  policy_id: jax.Array  # [N] int32 ladder index of the acting policy
  noised: jax.Array  # [N] bool, current interval is noisy
  remaining: jax.Array  # [N] int32 steps left in the current interval (>= 1)
  never: jax.Array  # [N] bool, env is never noised
  sigma: jax.Array  # [N, A] float32 noise std
  ep_count: jax.Array  # [N] int32 finished episodes of each env
  key: jax.Array  # PRNG key (raw uint32[2])


def _num_policies(ladder: Any) -> int:
  return int(jax.tree.leaves(ladder.params)[0].shape[0])


def shard_state(gs: GenState, mesh: Any, inside_jit: bool = False) -> GenState:
  """`gs` with every per-env leaf ([N, ...]: the env state and the schedules) split along N over `mesh` and the
  key replicated; inside jit a sharding constraint, outside a placement. Identity without a mesh."""
  if mesh is None:
    return gs
  per_env, key = gs._replace(key=None), gs.key
  if inside_jit:
    return mesh_lib.constrain(per_env, mesh)._replace(key=mesh_lib.constrain(key, mesh, None))
  return mesh_lib.shard(per_env, mesh)._replace(key=mesh_lib.replicate(key, mesh))


def make_generator(env: Any, ladder: Any, critic: tuple[Any, Callable], gcfg: GenConfig, mesh: Any = None
                   ) -> tuple[Callable, Callable]:
  """Builds `(init_fn(key) -> GenState, chunk_fn(GenState) -> (GenState, steps))`.

  Args:
    env: an unwrapped simdist env (`reset`/`step`, `.task.split_state`, `.action_size`); it is wrapped here with
      `wrap_for_training(env, gcfg.episode_length)` (auto-reset with a new domain).
    ladder: `Ladder(params [K, ...], apply_fn(params, policy_id, priv[S]) -> action[A], iterations, expert_id)`.
    critic: `(params, apply_fn(params, priv[S]) -> value)`, the expert critic.
    gcfg: generation settings.
    mesh: None (one device) or the data-parallel mesh (`simdist_jax.mesh`): `chunk_fn` keeps the carry's per-env
      leaves and every step's outputs sharded along N (place its input with `shard_state`); `gcfg.num_envs` must
      be a multiple of the mesh size.

  `chunk_fn` is one call of a jitted `lax.scan` of `shard_steps` steps; `steps` is a dict of [S, N, ...] arrays
  (keys of `storage.STEP_KEYS` plus `expert_action` [S, N, A], the clipped expert action, for checks). The ladder
  and critic params are arguments of that jitted function (`chunk_fn.func(policy_params, critic_params, gs)`;
  `chunk_fn` binds the given ones), never constants baked into the executable.
  """
  from simdist_jax.envs.wrappers import wrap_for_training

  benv = wrap_for_training(env, episode_length=gcfg.episode_length)
  n, a_dim = gcfg.num_envs, int(env.action_size)
  mesh_lib.check_divisible(mesh, {"data.num_envs": n})
  k_pol = _num_policies(ladder)
  expert_id = int(ladder.expert_id)
  if not 0 <= expert_id < k_pol:
    raise ValueError(f"ladder.expert_id {expert_id} outside the ladder of {k_pol} policies")
  split_state = env.task.split_state
  c = gcfg.action_clip
  pi = jax.vmap(ladder.apply_fn, in_axes=(None, 0, 0))
  critic_params, critic_fn = critic
  vf = jax.vmap(critic_fn, in_axes=(None, 0))

  def draw_policy(key: jax.Array) -> jax.Array:
    k_use, k_id = jax.random.split(key)
    use_expert = jax.random.uniform(k_use, (n,)) < gcfg.p_expert
    if k_pol == 1:
      return jnp.full((n,), expert_id, jnp.int32)
    other = jax.random.randint(k_id, (n,), 0, k_pol - 1)
    other = jnp.where(other >= expert_id, other + 1, other)  # uniform over the K-1 non-expert ids
    return jnp.where(use_expert, expert_id, other).astype(jnp.int32)

  def draw_len(key: jax.Array, noisy: jax.Array) -> jax.Array:
    k_n, k_c = jax.random.split(key)
    ln = jax.random.randint(k_n, (n,), gcfg.noisy_len[0], gcfg.noisy_len[1] + 1)
    lc = jax.random.randint(k_c, (n,), gcfg.clean_len[0], gcfg.clean_len[1] + 1)
    return jnp.where(noisy, ln, lc).astype(jnp.int32)

  def init_fn(key: jax.Array) -> GenState:
    k_reset, k_sigma, k_never, k_noisy, k_len, k_pol_, key = jax.random.split(key, 7)
    env_state = benv.reset(jax.random.split(k_reset, n))
    sigma = jax.random.uniform(k_sigma, (n, a_dim), minval=gcfg.sigma_min, maxval=gcfg.sigma_max)
    # Exactly round(frac * N) never-noised envs (a random subset), so small runs respect the share.
    n_never = int(round(gcfg.never_noised_frac * n))
    never = jnp.zeros((n,), bool).at[jax.random.permutation(k_never, n)[:n_never]].set(True)
    noised = (jax.random.uniform(k_noisy, (n,)) < gcfg.init_noisy_prob) & ~never
    return GenState(env_state=env_state, policy_id=draw_policy(k_pol_), noised=noised,
                    remaining=draw_len(k_len, noised), never=never, sigma=sigma.astype(jnp.float32),
                    ep_count=jnp.zeros((n,), jnp.int32), key=key)

  def step(policy_params: Any, value_params: Any, gs: GenState) -> tuple[GenState, dict]:
    key, k_eps, k_pol_, k_len = jax.random.split(gs.key, 4)
    st = gs.env_state
    obs, priv = st.obs["state"], st.obs["privileged_state"]
    a_exp_raw = pi(policy_params, jnp.full((n,), expert_id, jnp.int32), priv)
    a_oth_raw = pi(policy_params, gs.policy_id, priv)
    a_raw = jnp.where((gs.policy_id == expert_id)[:, None], a_exp_raw, a_oth_raw)
    eps = gs.sigma * jax.random.normal(k_eps, (n, a_dim))
    action = jnp.clip(jnp.where(gs.noised[:, None], a_raw + eps, a_raw), -c, c)
    expert_action = jnp.clip(a_exp_raw, -c, c)
    value = vf(value_params, priv)
    nxt = benv.step(st, action)
    done = nxt.done > 0.5
    proprio, extero, command = split_state(obs)
    out = {
        "proprio": proprio, "extero": extero, "command": command, "action": action,
        "expert_action": expert_action, "reward": nxt.reward, "value": jnp.reshape(value, (n,)),
        "expert_flag": jnp.all(action == expert_action, axis=-1).astype(jnp.uint8),
        "noised": gs.noised.astype(jnp.uint8), "policy_id": gs.policy_id,
        "episode_id": gs.ep_count * n + jnp.arange(n, dtype=jnp.int32),
    }
    # Post-step bookkeeping: new policy on reset; advance the noisy/clean schedule (independent of episodes).
    policy_id = jnp.where(done, draw_policy(k_pol_), gs.policy_id)
    remaining = gs.remaining - 1
    switch = remaining == 0
    noised = jnp.where(switch, ~gs.noised & ~gs.never, gs.noised)
    remaining = jnp.where(switch, draw_len(k_len, noised), remaining)
    gs = gs._replace(env_state=nxt, policy_id=policy_id, noised=noised, remaining=remaining,
                     ep_count=gs.ep_count + done.astype(jnp.int32), key=key)
    return gs, out

  def sharded_step(policy_params: Any, value_params: Any, gs: GenState) -> tuple[GenState, dict]:
    gs, out = step(policy_params, value_params, shard_state(gs, mesh, inside_jit=True))
    return shard_state(gs, mesh, inside_jit=True), mesh_lib.constrain(out, mesh)

  @jax.jit
  def chunk(policy_params: Any, value_params: Any, gs: GenState) -> tuple[GenState, dict]:
    return jax.lax.scan(lambda g, _: sharded_step(policy_params, value_params, g), gs, None,
                        length=gcfg.shard_steps)

  policy_params, critic_params = mesh_lib.replicate((ladder.params, critic_params), mesh)
  return jax.jit(init_fn), functools.partial(chunk, policy_params, critic_params)


# ----------------------------------------------------------------------------------------------------------------
# Driver: shards, progress, resumption.


def _to_host(gs: GenState) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(gs)]


def _from_host(treedef: Any, leaves: list[np.ndarray]) -> GenState:
  return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])


def _save_resume(path: pathlib.Path, leaves: list[np.ndarray], progress: Mapping) -> None:
  """The generation carry after a complete shard -> `path` (atomic, unique temp name)."""
  fileio.save_npz(path, {"progress": np.array(json.dumps(progress)),
                         **{f"leaf_{i:04d}": x for i, x in enumerate(leaves)}})


def _load_resume(path: pathlib.Path, num_leaves: int) -> tuple[list[np.ndarray], dict]:
  """(carry leaves, progress) of `path`; `fileio.CorruptFileError` naming the file when it is unusable."""
  z = fileio.load_npz(path, required=("progress",))
  try:
    progress = json.loads(str(z["progress"]))
  except json.JSONDecodeError as e:
    raise fileio.CorruptFileError(path, f"its 'progress' record is not valid JSON ({e})") from e
  missing = [k for k in ("config", "next_shard", "shards") if not isinstance(progress, dict) or k not in progress]
  if missing:
    raise fileio.CorruptFileError(path, f"its 'progress' record lacks {missing}")
  leaves = [z[k] for k in sorted(k for k in z if k.startswith("leaf_"))]
  if len(leaves) != num_leaves:
    raise fileio.CorruptFileError(path, f"holds {len(leaves)} carry arrays, the generator needs {num_leaves}")
  return leaves, progress


def _shard_summary(host: Mapping[str, np.ndarray], stored: Mapping[str, np.ndarray], f16_err: Mapping,
                   step_offset: int, prev_last_id: np.ndarray | None) -> dict:
  """Per-shard statistics kept in the progress record / manifest."""
  nonfinite = storage.nonfinite_locations({k: host[k] for k in ("proprio", "extero", "command", "action", "reward",
                                                                  "value")}, step_offset)
  overflow = storage.nonfinite_locations({k: v for k, v in stored.items() if v.dtype == np.float16}, step_offset)
  for k, v in overflow.items():  # finite in float32 but not in float16: overflow
    if k not in nonfinite:
      nonfinite[k] = {**v, "float16_overflow": True}
  s, n = host["reward"].shape
  flat = {k: np.asarray(stored[k], np.float32).reshape(s * n, -1) for k in scaler_lib.SCALER_KEYS}
  finite = np.ones(s * n, bool)
  for x in flat.values():
    finite &= np.isfinite(x).all(-1)
  moments = {k: scaler_lib.Moments.of(x[finite]).to_json() for k, x in flat.items()}
  ep = host["episode_id"]
  changes = int((ep[1:] != ep[:-1]).sum()) + (int((ep[0] != prev_last_id).sum()) if prev_last_id is not None else 0)
  return {"moments": moments, "float16_max_abs_error": {k: v.tolist() for k, v in f16_err.items()},
          "nonfinite": nonfinite, "new_episodes": changes, "last_episode_id": ep[-1].tolist(),
          "expert_flag": int(host["expert_flag"].sum()), "noised": int(host["noised"].sum())}


def _finish_manifest(gcfg: GenConfig, lay: dict, progress: dict, dims: dict, meta: Mapping) -> dict:
  shards = progress["shards"]
  moments = {}
  f16 = {}
  nonfinite = {}
  for e in shards:
    for k, m in e["moments"].items():
      mk = scaler_lib.Moments.from_json(m)
      moments[k] = moments[k].merge(mk) if k in moments else mk
    for k, v in e["float16_max_abs_error"].items():
      f16[k] = np.maximum(f16.get(k, 0.0), np.asarray(v, np.float32))
    for k, v in e["nonfinite"].items():
      nonfinite.setdefault(k, {"count": 0, "first": []})
      nonfinite[k]["count"] += v["count"]
      nonfinite[k]["first"] = (nonfinite[k]["first"] + [[e["name"]] + loc for loc in v["first"]])[:20]
  stats = scaler_lib.finalize_stats(moments, gcfg.std_floor)
  f16_report = {}
  for k, err in f16.items():
    std = np.asarray(stats[k]["std"], np.float32)
    rel = (err / std) if err.size else err
    f16_report[k] = {"max_abs": err.tolist(), "max_rel_to_std": rel.tolist(),
                     "worst_rel_to_std": float(rel.max()) if rel.size else 0.0,
                     "ok": bool((rel <= gcfg.float16_max_rel_error).all())}
  transitions = gcfg.num_envs * gcfg.num_steps
  bpt = storage.bytes_per_transition(lay)
  return {
      "format": storage.FORMAT, "layout": lay, "dims": dims, "num_envs": gcfg.num_envs,
      "num_steps": gcfg.num_steps, "shard_steps": gcfg.shard_steps, "transitions": transitions,
      "episodes": gcfg.num_envs + sum(e["new_episodes"] for e in shards),
      "expert_flag_share": sum(e["expert_flag"] for e in shards) / transitions,
      "noised_share": sum(e["noised"] for e in shards) / transitions,
      "bytes_per_transition": bpt,
      "bytes_on_disk": int(sum(f["bytes"] for e in shards for f in e["files"].values())),
      "float16_error": f16_report, "nonfinite": nonfinite,
      "scaler": scaler_lib.stats_to_json(stats),
      "shards": [{k: e[k] for k in ("name", "steps", "sha256", "files")} for e in shards],
      **meta,
  }


def generate(env: Any, ladder: Any, critic: tuple[Any, Callable], gcfg: GenConfig, data_dir: str | os.PathLike,
             seed: int, config_record: Mapping, stop_after_shards: int | None = None,
             log: Callable[[str], None] = print, generator: tuple[Callable, Callable] | None = None,
             mesh: Any = None) -> dict | None:
  """Generates (or resumes, or confirms) the dataset in `data_dir`. Returns the manifest (None if stopped early).

  Args:
    env: the unwrapped simdist env, see `make_generator`.
    ladder: the policy ladder, see `make_generator`.
    critic: `(params, apply_fn)` of the expert critic, see `make_generator`.
    gcfg: generation settings.
    data_dir: output directory.
    seed: root seed (the data stream is `fold_in(PRNGKey(seed), 0xDA7A)`).
    config_record: JSON-able description of everything the data depends on; stored in the manifest and compared on
      resume (a different record refuses to resume / reuse).
    stop_after_shards: write at most this many new shards, then return None (simulates an interruption).
    log: sink of the progress and warning lines.
    generator: a prebuilt `make_generator(env, ladder, critic, gcfg, mesh)` pair (reuses its compiled functions;
      built with the same `mesh`).
    mesh: None (one device) or the data-parallel mesh: each shard's scan runs with the env batch split over its
      devices; the files written are the same (see the module docstring).
  """
  data_dir = pathlib.Path(data_dir)
  data_dir.mkdir(parents=True, exist_ok=True)
  record = json.loads(json.dumps(config_record, sort_keys=True))
  if (data_dir / storage.MANIFEST).exists():
    man = storage.read_manifest(data_dir)
    if man.get("config") != record:
      raise storage.DatasetError(f"'{data_dir}' holds a dataset generated by a different config; use a new "
                                 f"workdir or delete it")
    storage.verify(data_dir)
    log(f"data: dataset in {data_dir} is complete ({man['transitions']} transitions); nothing to do")
    return man

  task = env.task
  dims = {k: (list(v) if isinstance(v, tuple) else v) for k, v in task.dims.items()}
  lay = storage.layout(task.dims, gcfg.obs_dtypes, _num_policies(ladder))
  init_fn, chunk_fn = generator or make_generator(env, ladder, critic, gcfg, mesh)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), _DATA_STREAM)
  resume_path = data_dir / RESUME
  treedef = jax.tree.structure(jax.eval_shape(init_fn, key))
  fileio.remove_stale_temps(data_dir)  # temp files/shards of killed runs (never of a live one)
  resumed = None
  if resume_path.exists():
    try:
      resumed = _load_resume(resume_path, treedef.num_leaves)
    except fileio.CorruptFileError as e:
      # The carry after shard k exists only in this file, but generation is deterministic: starting over from
      # shard 0 rewrites byte-identical shards (each replaces its earlier copy).
      log(f"data: WARNING {e}; discarding it and regenerating from shard 0 (the shards are deterministic, so "
          f"the result is byte-identical)")
      bad = resume_path.with_name(resume_path.name + ".corrupt")
      os.replace(resume_path, bad)
  if resumed is not None:
    leaves, progress = resumed
    if progress["config"] != record:
      raise storage.DatasetError(f"'{resume_path}' belongs to a generation with a different config; delete "
                                 f"'{data_dir}' to start over")
    for e in progress["shards"]:  # shards before the resume point must be intact
      storage.load_shard(data_dir, e, verify=True)
    log(f"data: resuming at shard {progress['next_shard']}/{gcfg.num_shards}")
  else:
    gs = init_fn(key)
    leaves = _to_host(gs)
    progress = {"config": record, "next_shard": 0, "shards": []}
    envs_dir = data_dir / "envs"
    envs_dir.mkdir(exist_ok=True)
    fileio.save_npy(envs_dir / "noise_sigma.npy", np.asarray(gs.sigma, np.float32))
    fileio.save_npy(envs_dir / "never_noised.npy", np.asarray(gs.never, np.uint8))

  written = 0
  t0 = t_shard = time.time()
  for k in range(progress["next_shard"], gcfg.num_shards):
    if stop_after_shards is not None and written >= stop_after_shards:
      log(f"data: stopped after {written} new shards (next shard {k})")
      return None
    gs, steps = chunk_fn(shard_state(_from_host(treedef, leaves), mesh))
    host = {kk: np.asarray(v) for kk, v in jax.device_get(steps).items()}
    host["policy_id"] = host["policy_id"].astype(lay["policy_id"]["dtype"])
    stored, f16_err = storage.encode(host, lay)
    prev = np.asarray(progress["shards"][-1]["last_episode_id"]) if progress["shards"] else None
    summary = _shard_summary(host, stored, f16_err, k * gcfg.shard_steps, prev)
    entry = storage.write_shard(data_dir, k, stored)
    entry.update(summary)
    leaves = _to_host(gs)
    progress = {"config": record, "next_shard": k + 1, "shards": progress["shards"] + [entry]}
    _save_resume(resume_path, leaves, progress)
    written += 1
    now = time.time()
    shard_rate = gcfg.shard_steps * gcfg.num_envs / max(now - t_shard, 1e-9)
    t_shard = now
    left = gcfg.num_shards - (k + 1)
    log(f"data: shard {k + 1}/{gcfg.num_shards} written ({shard_rate:,.0f} transitions/s this shard, "
        f"{now - t0:.1f} s so far{' incl. compile' if written == 1 else ''}; ETA "
        f"{left * gcfg.shard_steps * gcfg.num_envs / max(shard_rate, 1e-9):.0f} s)")
    for kk, v in summary["nonfinite"].items():
      log(f"data: WARNING non-finite values in {kk} of {entry['name']}: {v['count']} entries, first "
          f"[step, env, feature] {v['first'][:3]}")

  meta = {"config": record, "ladder": {"num_policies": _num_policies(ladder), "expert_id": int(ladder.expert_id),
                                       "iterations": [int(i) for i in ladder.iterations]},
          "generation": dataclasses.asdict(gcfg), "seed": int(seed)}
  man = _finish_manifest(gcfg, lay, progress, dims, meta)
  for k, v in man["float16_error"].items():
    if not v["ok"]:
      log(f"data: WARNING float16 round-trip error of '{k}' reaches {v['worst_rel_to_std']:.2e} of its std "
          f"(> {gcfg.float16_max_rel_error}); consider data.{k}_dtype='float32'")
  atomic_write_text(data_dir / "scaler.json", json.dumps(man["scaler"], indent=1, sort_keys=True))
  storage.write_manifest(data_dir, man)
  resume_path.unlink(missing_ok=True)
  log(f"data: wrote {man['transitions']} transitions, {man['episodes']} episodes, {len(man['shards'])} shards, "
      f"{man['bytes_per_transition']} B/transition to {data_dir}")
  return man


def config_record(cfg: Any, ladder: Any) -> dict:
  """What the dataset depends on: task, env, sim domain, data sections, seed and a hash of the ladder params
  (the real domain is not used to generate data, so changing it keeps the dataset)."""
  plain = json.loads(to_json(cfg))
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(ladder.params):
    h.update(np.asarray(leaf).tobytes())
  return {"task": plain["task"], "env": plain["env"], "domain": {"sim": plain["domain"]["sim"]}, "data": plain["data"],
          "seed": plain["run"]["seed"], "ladder_sha256": h.hexdigest()}


def expert_loaders() -> tuple[Callable, Callable]:
  """(load_ladder, load_critic) of the expert package (`simdist_jax.experts.checkpoints`)."""
  from simdist_jax.experts.checkpoints import load_critic, load_ladder  # pylint: disable=import-outside-toplevel
  return load_ladder, load_critic


def is_complete(cfg: Any, workdir: str | os.PathLike) -> bool:
  """True when `<workdir>/data/` holds a finished dataset (its manifest, written last, and no resume state)."""
  del cfg
  d = paths.data_dir(workdir)
  return (d / storage.MANIFEST).is_file() and not (d / RESUME).exists()


def run_stage(cfg: Any, workdir: str | os.PathLike) -> dict:
  """`simdist-jax generate`: reads `<workdir>/expert/`, writes `<workdir>/data/` (resumes when interrupted)."""
  from simdist_jax.envs.registry import make_env
  load_ladder, load_critic = expert_loaders()

  ladder = load_ladder(paths.expert_dir(workdir))
  critic = load_critic(paths.expert_dir(workdir))
  env = make_env(cfg, "sim")
  gcfg = GenConfig.from_config(cfg)
  return generate(env, ladder, critic, gcfg, paths.data_dir(workdir), int(cfg.run.seed),
                  config_record(cfg, ladder), mesh=mesh_lib.from_config(cfg))
