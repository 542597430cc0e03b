"""SimDist latent world model: encoder E, history C, dynamics f, reward R, value V, policy pi (paper Eq. 1, Fig. 3).

Dimension letters: H history, T horizon, P proprio, E extero (flat; `extero_shape` inside the encoder), A action,
C command, Z latent, D token width (D == Z: every attention module runs at the latent width, as in the official
code). All public functions take ONE example (no batch dim; callers vmap) in RAW units: they z-score their inputs
with `variables["scaler"]` and unscale rewards, values and actions. Latents are never scaled.

Variables: `{"params": {encoder, history, dynamics, reward, value, policy}, "scaler": {proprio, extero, action,
command, reward, value: {"mean", "std"}}}`. Ownership of the embeddings:
- `encoder`: proprio MLP (shared with the history's proprio tokens), height-map CNN, fusion MLP.
- `history`: history action projection, temporal (H+1, D) and type (3, D) tables, AND the future-action query
  embedding (`future_action_embed`, Linear A -> D + positional (T, D)). It is kept out of `dynamics` so that the
  `dynamics` subtree is exactly the 2-layer decoder that the official code finetunes (its path filter "dynamics"
  leaves the action embedding frozen).
- `dynamics`: the chunked transformer decoder (or the autoregressive MLP of the ablation).
- `reward` / `value` / `policy`: their input embeddings, transformer and linear read-out.
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax.world_model import modules

STD_FLOOR = 1e-4  # scaler std floor (official `_RunningStats`)
SCALER_KEYS = ("proprio", "extero", "action", "command", "reward", "value")
PARAM_KEYS = ("encoder", "history", "dynamics", "reward", "value", "policy")
# `model.compute_dtype`: the dtype the networks compute in. Parameters, scaler, optimizer state, inputs and outputs
# of every public function stay float32 ("master weights"); with "bfloat16" `apply` casts params and inputs down at
# entry and the outputs back up, so gradients reach the float32 params through the casts (mixed precision).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
Variables = dict[str, Any]


class Context(NamedTuple):
  """Context of one planning step: `tokens` [2H+1, D] (history + current latent token), `z` [Z] = z_t."""

  tokens: jax.Array
  z: jax.Array


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """Size of one transformer (layers, heads, FFN width)."""

  num_layers: int
  num_heads: int
  mlp_dim: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Frozen, hashable architecture description built from the `model` config section and the env dims."""

  proprio: int
  extero: int
  extero_shape: tuple[int, ...]
  action: int
  command: int
  latent_dim: int
  history: int
  horizon: int
  heads: str
  dynamics: str
  return_mask: str
  proprio_hidden: tuple[int, ...]
  latent_hidden: tuple[int, ...]
  hm_channels: tuple[int, ...]
  hm_hidden: tuple[int, ...]
  dynamics_net: NetSpec
  reward_net: NetSpec
  value_net: NetSpec
  policy_net: NetSpec
  mlp_head_hidden: tuple[int, ...]
  ar_hidden: tuple[int, ...]
  dropout_attn: float
  dropout_mlp: float
  dynamics_residual: bool = False
  dynamics_ensemble: int = 1
  compute_dtype: str = "float32"


def make_spec(model_cfg: Any, dims: Mapping[str, Any]) -> ModelSpec:
  """Validates `model_cfg` (ConfigDict or dict) + `dims` and returns a `ModelSpec`."""
  m = model_cfg
  net = lambda c: NetSpec(int(c["num_layers"]), int(c["num_heads"]), int(c["mlp_dim"]))  # noqa: E731
  tup = lambda x: tuple(int(v) for v in x)  # noqa: E731
  spec = ModelSpec(
    proprio=int(dims["proprio"]),
    extero=int(dims["extero"]),
    extero_shape=tup(dims.get("extero_shape", ())),
    action=int(dims["action"]),
    command=int(dims["command"]),
    latent_dim=int(m["latent_dim"]),
    history=int(m["history"]),
    horizon=int(m["horizon"]),
    heads=str(m["heads"]),
    dynamics=str(m["dynamics"]),
    return_mask=str(m["return_mask"]),
    proprio_hidden=tup(m["encoder"]["proprio_hidden"]),
    latent_hidden=tup(m["encoder"]["latent_hidden"]),
    hm_channels=tup(m["encoder"]["hm_channels"]),
    hm_hidden=tup(m["encoder"]["hm_hidden"]),
    dynamics_net=net(m["dynamics_net"]),
    reward_net=net(m["reward_net"]),
    value_net=net(m["value_net"]),
    policy_net=net(m["policy_net"]),
    mlp_head_hidden=tup(m["mlp_head_hidden"]),
    ar_hidden=tup(m["ar_hidden"]),
    dropout_attn=float(m["dropout_attn"]),
    dropout_mlp=float(m["dropout_mlp"]),
    dynamics_residual=bool(m.get("dynamics_residual", False)),
    dynamics_ensemble=int(m.get("dynamics_ensemble", 1)),
    compute_dtype=str(m.get("compute_dtype", "float32")),
  )
  if spec.heads not in ("sequence", "mlp"):
    raise ValueError(f"model.heads must be 'sequence' or 'mlp', got {spec.heads!r}")
  if spec.dynamics not in ("chunked", "autoregressive_mlp"):
    raise ValueError(f"model.dynamics must be 'chunked' or 'autoregressive_mlp', got {spec.dynamics!r}")
  if spec.return_mask not in ("bidirectional", "causal"):
    raise ValueError(f"model.return_mask must be 'bidirectional' or 'causal', got {spec.return_mask!r}")
  if spec.extero > 0 and int(np.prod(spec.extero_shape)) != spec.extero:
    raise ValueError(f"dims extero={spec.extero} does not match extero_shape={spec.extero_shape}")
  if spec.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"model.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {spec.compute_dtype!r}")
  if spec.dynamics_ensemble < 1:
    raise ValueError(f"model.dynamics_ensemble must be >= 1, got {spec.dynamics_ensemble}")
  if spec.history < 1 or spec.horizon < 1:
    raise ValueError(f"history and horizon must be >= 1, got H={spec.history} T={spec.horizon}")
  return spec


# ----------------------------------------------------------------------------------------------------------------
# Scaler (non-trainable z-scoring collection).


def identity_scaler(dims: Mapping[str, Any]) -> dict[str, dict[str, jax.Array]]:
  """Scaler with mean 0 / std 1 for every feature (shapes from `dims`)."""
  sizes = {"proprio": (dims["proprio"],), "extero": (dims["extero"],), "action": (dims["action"],),
           "command": (dims["command"],), "reward": (), "value": ()}
  return {k: {"mean": jnp.zeros(s, jnp.float32), "std": jnp.ones(s, jnp.float32)} for k, s in sizes.items()}


def make_scaler(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, jax.Array]]:
  """Stats dict `{key: {"mean", "std"}}` (numpy or jax) -> scaler collection with std floored at `STD_FLOOR`."""
  missing = [k for k in SCALER_KEYS if k not in stats]
  if missing:
    raise KeyError(f"scaler stats lack keys {missing}; got {sorted(stats)}")
  out = {}
  for k in SCALER_KEYS:
    mean = jnp.asarray(np.asarray(stats[k]["mean"], np.float32))
    std = jnp.asarray(np.asarray(stats[k]["std"], np.float32))
    if mean.shape != std.shape:
      raise ValueError(f"scaler {k}: mean shape {mean.shape} != std shape {std.shape}")
    if not (bool(jnp.all(jnp.isfinite(mean))) and bool(jnp.all(jnp.isfinite(std)))):
      raise ValueError(f"scaler {k}: non-finite statistics")
    out[k] = {"mean": mean, "std": jnp.maximum(std, STD_FLOOR)}
  return out


def scale(scaler: Mapping[str, Any], name: str, x: jax.Array) -> jax.Array:
  """Raw -> z-scored units for feature group `name`."""
  return (x - scaler[name]["mean"]) / scaler[name]["std"]


def unscale(scaler: Mapping[str, Any], name: str, x: jax.Array) -> jax.Array:
  """z-scored -> raw units for feature group `name`."""
  return x * scaler[name]["std"] + scaler[name]["mean"]


# ----------------------------------------------------------------------------------------------------------------
# Networks. Everything below works in z-scored units.


class Encoder(nn.Module):
  """E: z_t = latent_mlp([proprio_mlp(o^p), hm_cnn(o^e)]) (E > 0) or latent_mlp(proprio_mlp(o^p)) (E == 0)."""

  spec: ModelSpec

  def setup(self) -> None:
    """Builds the proprio MLP, the height-map CNN (only when E > 0) and the latent MLP."""
    s = self.spec
    self.proprio_mlp = modules.MLP(s.proprio_hidden, s.latent_dim)
    if s.extero > 0:
      self.hm_cnn = modules.HeightMapCNN(s.hm_channels, s.hm_hidden, s.latent_dim)
    self.latent_mlp = modules.MLP(s.latent_hidden, s.latent_dim)

  def project_proprio(self, proprio: jax.Array) -> jax.Array:
    """`[..., P] -> [..., D]` (shared with the history's proprio tokens)."""
    return self.proprio_mlp(proprio)

  def __call__(self, proprio: jax.Array, extero: jax.Array) -> jax.Array:
    """`[P], [E] -> [Z]`."""
    feat = self.proprio_mlp(proprio)
    if self.spec.extero > 0:
      feat = jnp.concatenate([feat, self.hm_cnn(extero.reshape(self.spec.extero_shape))])
    return self.latent_mlp(feat)


class History(nn.Module):
  """C: interleaved history tokens + current latent token; also owns the future-action query embedding."""

  spec: ModelSpec

  def setup(self) -> None:
    """Builds the action projection, temporal and token-type embeddings and the future-action embedding."""
    s = self.spec
    init = nn.initializers.normal(0.02)
    self.action_proj = modules.Linear(s.latent_dim)
    self.temporal = self.param("temporal", init, (s.history + 1, s.latent_dim))
    self.type_embed = self.param("type", init, (3, s.latent_dim))  # 0 proprio, 1 action, 2 latent
    self.future_action_embed = modules.SeqEmbedding(s.latent_dim, s.horizon)

  def __call__(self, proprio_tokens: jax.Array, action_hist: jax.Array, z: jax.Array) -> jax.Array:
    """`[H, D]` proprio tokens, `[H, A]` actions, `[Z]` -> `[2H+1, D]`."""
    h = self.spec.history
    p_tok = proprio_tokens + self.temporal[:h] + self.type_embed[0]
    a_tok = self.action_proj(action_hist) + self.temporal[:h] + self.type_embed[1]
    hist = jnp.stack([p_tok, a_tok], axis=1).reshape(2 * h, -1)  # p_0, a_0, p_1, a_1, ...
    z_tok = z + self.temporal[h] + self.type_embed[2]
    return jnp.concatenate([hist, z_tok[None]], axis=0)

  def embed_future_actions(self, actions: jax.Array) -> jax.Array:
    """`[T, A] -> [T, D]` queries of the dynamics decoder."""
    return self.future_action_embed(actions)


class ChunkedDynamics(nn.Module):
  """f: causal transformer decoder over future-action queries, cross-attending to the context; one pass."""

  spec: ModelSpec

  @nn.compact
  def __call__(self, queries: jax.Array, tokens: jax.Array, z: jax.Array, deterministic: bool) -> jax.Array:
    """`[T, D]` queries, `[S, D]` context -> `[T, Z]` (token k is z_hat_{t+k+1}).

    With `spec.dynamics_residual`, z_hat_{t+k} = z_t + W y_k with a zero-initialised read-out W, so the untrained
    model predicts "no change" and learns the changes (the paper's decoder emits z_hat directly; with little data
    it then predicts one step ahead far worse than copying z_t, see docs/world_model.md).
    """
    n = self.spec.dynamics_net
    y = modules.Transformer(
      n.num_layers, n.num_heads, n.mlp_dim, self.spec.dropout_attn, self.spec.dropout_mlp,
      causal=True, cross=True, name="decoder",
    )(queries, tokens, deterministic=deterministic)
    if not self.spec.dynamics_residual:
      return y
    delta = nn.Dense(self.spec.latent_dim, kernel_init=nn.initializers.zeros_init(), name="delta")(y)
    return z[None, :] + delta


class _ARStep(nn.Module):
  """One step of the autoregressive ablation: z_{k+1} = z_k + MLP([z_k, q_k, h])."""

  hidden: tuple[int, ...]
  latent_dim: int

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], q: jax.Array) -> tuple[Any, jax.Array]:
    z, h = carry
    z_next = z + modules.MLP(self.hidden, self.latent_dim, name="mlp")(jnp.concatenate([z, q, h]))
    return (z_next, h), z_next


class AutoregressiveDynamics(nn.Module):
  """Ablation: per-step residual MLP rolled out with `nn.scan` (lax.scan) over T; h = mean context token."""

  spec: ModelSpec

  @nn.compact
  def __call__(self, queries: jax.Array, tokens: jax.Array, z: jax.Array, deterministic: bool) -> jax.Array:
    """`[T, D]` queries, `[S, D]` context, `[Z]` -> `[T, Z]`."""
    del deterministic
    scan = nn.scan(_ARStep, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0)
    _, z_hat = scan(self.spec.ar_hidden, self.spec.latent_dim, name="step")((z, tokens.mean(0)), queries)
    return z_hat


class EnsembleDynamics(nn.Module):
  """K independently initialised dynamics members (`spec.dynamics_ensemble`) run on the same inputs.

  Members are submodules `member_0..member_{K-1}` (params under `dynamics/member_k/...`, so the finetuning path
  filter "dynamics" trains them all); each draws its own init and dropout from its module path. Not in the paper:
  an ensemble of the dynamics only, to average out the instance-specific error of one trained model.
  """

  spec: ModelSpec

  @nn.compact
  def __call__(self, queries: jax.Array, tokens: jax.Array, z: jax.Array, deterministic: bool) -> jax.Array:
    """`[T, D]` queries, `[S, D]` context, `[Z]` -> `[K, T, Z]` (one prediction per member)."""
    member = ChunkedDynamics if self.spec.dynamics == "chunked" else AutoregressiveDynamics
    return jnp.stack([member(self.spec, name=f"member_{k}")(queries, tokens, z, deterministic)
                      for k in range(self.spec.dynamics_ensemble)])


class SequenceHead(nn.Module):
  """R or V: Linear + positional embedding -> 1-layer transformer encoder -> Linear(D -> 1)."""

  spec: ModelSpec
  net: NetSpec

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    """`[T, F] -> [T]`."""
    s = self.spec
    tok = modules.SeqEmbedding(s.latent_dim, s.horizon, name="embed")(x)
    tok = modules.Transformer(
      self.net.num_layers, self.net.num_heads, self.net.mlp_dim, s.dropout_attn, s.dropout_mlp,
      causal=s.return_mask == "causal", name="transformer",
    )(tok, deterministic=deterministic)
    return nn.Dense(1, name="out")(tok)[..., 0]


class MLPHead(nn.Module):
  """Ablation (paper Table I): per-step MLP `[T, F] -> [T]`."""

  spec: ModelSpec

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    """`[T, F] -> [T]`."""
    del deterministic
    return modules.MLP(self.spec.mlp_head_hidden, 1, name="mlp")(x)[..., 0]


class PolicyHead(nn.Module):
  """pi: command queries -> causal transformer decoder cross-attending to the context -> Linear(D -> A)."""

  spec: ModelSpec

  @nn.compact
  def __call__(self, commands: jax.Array, tokens: jax.Array, deterministic: bool) -> jax.Array:
    """`[T, C]`, `[S, D]` -> `[T, A]`."""
    s, n = self.spec, self.spec.policy_net
    q = modules.SeqEmbedding(s.latent_dim, s.horizon, name="embed")(commands)
    q = modules.Transformer(
      n.num_layers, n.num_heads, n.mlp_dim, s.dropout_attn, s.dropout_mlp, causal=True, cross=True, name="decoder"
    )(q, tokens, deterministic=deterministic)
    return nn.Dense(s.action, name="out")(q)


class WorldModelNet(nn.Module):
  """All six parameter groups; methods take z-scored single-example inputs."""

  spec: ModelSpec

  def setup(self) -> None:
    """Builds the encoder, history, dynamics (chunked or autoregressive), reward/value heads and policy head."""
    s = self.spec
    self.encoder = Encoder(s)
    self.history = History(s)
    if s.dynamics_ensemble > 1:
      self.dynamics = EnsembleDynamics(s)
    else:  # K = 1 keeps the single decoder's parameter paths (`dynamics/decoder/...`)
      self.dynamics = ChunkedDynamics(s) if s.dynamics == "chunked" else AutoregressiveDynamics(s)
    if s.heads == "sequence":
      self.reward = SequenceHead(s, s.reward_net)
      self.value = SequenceHead(s, s.value_net)
    else:
      self.reward = MLPHead(s)
      self.value = MLPHead(s)
    self.policy = PolicyHead(s)

  def encode(self, proprio: jax.Array, extero: jax.Array) -> jax.Array:
    """`[P], [E] -> [Z]`."""
    return self.encoder(proprio, extero)

  def context(self, proprio_hist: jax.Array, action_hist: jax.Array, proprio: jax.Array, extero: jax.Array):
    """-> (tokens `[2H+1, D]`, z `[Z]`)."""
    z = self.encoder(proprio, extero)
    return self.history(self.encoder.project_proprio(proprio_hist), action_hist, z), z

  def member_latents(self, tokens: jax.Array, z: jax.Array, actions: jax.Array,
                     deterministic: bool = True) -> jax.Array:
    """`[S, D]`, `[Z]`, `[T, A]` -> every dynamics member's z_hat `[K, T, Z]` (K = 1 without an ensemble)."""
    z_hat = self.dynamics(self.history.embed_future_actions(actions), tokens, z, deterministic)
    return z_hat if self.spec.dynamics_ensemble > 1 else z_hat[None]

  def latents(self, tokens: jax.Array, z: jax.Array, actions: jax.Array, deterministic: bool = True) -> jax.Array:
    """`[S, D]`, `[Z]`, `[T, A]` -> z_hat `[T, Z]` (with an ensemble: the members' mean prediction)."""
    return jnp.mean(self.member_latents(tokens, z, actions, deterministic), axis=0)

  def returns(self, z: jax.Array, z_hat: jax.Array, actions: jax.Array, commands: jax.Array,
              deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
    """z_t `[Z]`, z_hat `[T, Z]`, `[T, A]`, `[T+1, C]` -> (r_t..r_{t+T-1} `[T]`, V_{t+1}..V_{t+T} `[T]`)."""
    z_seq = jnp.concatenate([z[None], z_hat[:-1]], axis=0)  # z_t, z_hat_{t+1..t+T-1}
    r = self.reward(jnp.concatenate([z_seq, actions, commands[:-1]], axis=-1), deterministic)
    v = self.value(jnp.concatenate([z_hat, commands[1:]], axis=-1), deterministic)
    return r, v

  def policy_chunk(self, tokens: jax.Array, commands: jax.Array, deterministic: bool = True) -> jax.Array:
    """`[S, D]`, `[T+1, C]` -> `[T, A]` (queries are c_t..c_{t+T-1})."""
    return self.policy(commands[:-1], tokens, deterministic)

  def init_all(self, proprio_hist, action_hist, proprio, extero, actions, commands):  # noqa: ANN001, ANN201
    """Touches every submodule (used by `init`)."""
    tokens, z = self.context(proprio_hist, action_hist, proprio, extero)
    z_hat = self.latents(tokens, z, actions)
    return self.returns(z, z_hat, actions, commands), self.policy_chunk(tokens, commands)


# ----------------------------------------------------------------------------------------------------------------
# Public, pure functional interface.


class WorldModel(NamedTuple):
  """Pure functions with the static config bound in; params/variables are always explicit arguments.

  Public entry points (single example, raw units, deterministic): `init`, `with_scaler`, `encode`, `context`,
  `predict_latents`, `predict_returns`, `policy_chunk`, `predict_member_latents`. `apply(params, method, *args, train, rng)` runs a
  `WorldModelNet` method in z-scored units (training paths; dropout when `train=True`).
  """

  spec: ModelSpec
  init: Callable[[jax.Array], Variables]
  with_scaler: Callable[[Variables, Mapping[str, Any]], Variables]
  encode: Callable[..., jax.Array]
  context: Callable[..., Context]
  predict_latents: Callable[..., jax.Array]
  predict_returns: Callable[..., tuple[jax.Array, jax.Array]]
  policy_chunk: Callable[..., jax.Array]
  apply: Callable[..., Any]
  predict_member_latents: Callable[..., jax.Array] | None = None


def _check(x: jax.Array, shape: tuple[int, ...], name: str) -> None:
  if tuple(x.shape) != tuple(shape):
    raise ValueError(f"{name}: expected shape {tuple(shape)} (single example, no batch dim), got {tuple(x.shape)}")


def _cast_floats(tree: Any, dtype: Any) -> Any:
  """Every floating-point leaf of `tree` cast to `dtype` (integer / bool leaves and None untouched)."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree)


def make_world_model(model_cfg: Any, dims: Mapping[str, Any]) -> WorldModel:
  """Builds the functional world model for `model_cfg` (the `model` config section) and env `dims`."""
  spec = make_spec(model_cfg, dims)
  net = WorldModelNet(spec)
  compute = COMPUTE_DTYPES[spec.compute_dtype]
  H, T, P, E, A, C, Z = (spec.history, spec.horizon, spec.proprio, spec.extero, spec.action, spec.command,
                         spec.latent_dim)

  def apply(params: Mapping[str, Any], method: str, *args: Any, train: bool = False,
            rng: jax.Array | None = None) -> Any:
    kwargs = ({"deterministic": not train} if method in ("latents", "member_latents", "returns", "policy_chunk")
              else {})
    if train and rng is None:
      raise ValueError("apply(train=True) needs an rng for dropout")
    rngs = {"dropout": rng} if train else {}
    mixed = compute != jnp.float32
    if mixed:
      params, args = _cast_floats((params, args), compute)
    out = net.apply({"params": params}, *args, method=getattr(WorldModelNet, method), rngs=rngs, **kwargs)
    return _cast_floats(out, jnp.float32) if mixed else out

  def init(key: jax.Array) -> Variables:
    """Random params + identity scaler."""
    dummy = (jnp.zeros((H, P)), jnp.zeros((H, A)), jnp.zeros((P,)), jnp.zeros((E,)), jnp.zeros((T, A)),
             jnp.zeros((T + 1, C)))
    params = net.init({"params": key}, *dummy, method=WorldModelNet.init_all)["params"]
    return {"params": dict(params), "scaler": identity_scaler(dims)}

  def with_scaler(variables: Variables, stats: Mapping[str, Any]) -> Variables:
    """Returns `variables` with the scaler replaced by `make_scaler(stats)` (shapes checked against dims)."""
    new = make_scaler(stats)
    ref = identity_scaler(dims)
    for k in SCALER_KEYS:
      if new[k]["mean"].shape != ref[k]["mean"].shape:
        raise ValueError(f"scaler stats {k}: shape {new[k]['mean'].shape} != expected {ref[k]['mean'].shape}")
    return {**variables, "scaler": new}

  def encode(variables: Variables, proprio: jax.Array, extero: jax.Array) -> jax.Array:
    """o^p `[P]`, o^e `[E]` -> z `[Z]`."""
    _check(proprio, (P,), "proprio")
    _check(extero, (E,), "extero")
    sc = variables["scaler"]
    return apply(variables["params"], "encode", scale(sc, "proprio", proprio), scale(sc, "extero", extero))

  def context(variables: Variables, proprio_hist: jax.Array, action_hist: jax.Array, proprio_t: jax.Array,
              extero_t: jax.Array) -> Context:
    """o^p_{t-H..t-1} `[H, P]`, a_{t-H..t-1} `[H, A]`, o^p_t `[P]`, o^e_t `[E]` -> Context."""
    _check(proprio_hist, (H, P), "proprio_hist")
    _check(action_hist, (H, A), "action_hist")
    _check(proprio_t, (P,), "proprio_t")
    _check(extero_t, (E,), "extero_t")
    sc = variables["scaler"]
    tokens, z = apply(variables["params"], "context", scale(sc, "proprio", proprio_hist),
                      scale(sc, "action", action_hist), scale(sc, "proprio", proprio_t),
                      scale(sc, "extero", extero_t))
    return Context(tokens, z)

  def predict_latents(variables: Variables, ctx: Context, actions: jax.Array) -> jax.Array:
    """a_{t..t+T-1} `[T, A]` -> z_hat_{t+1..t+T} `[T, Z]` in one pass (an ensemble's mean prediction)."""
    _check(actions, (T, A), "actions")
    _check(ctx.tokens, (2 * H + 1, Z), "ctx.tokens")
    return apply(variables["params"], "latents", ctx.tokens, ctx.z, scale(variables["scaler"], "action", actions))

  def predict_member_latents(variables: Variables, ctx: Context, actions: jax.Array) -> jax.Array:
    """a_{t..t+T-1} `[T, A]` -> every dynamics member's z_hat_{t+1..t+T} `[K, T, Z]` (K = 1 without an ensemble)."""
    _check(actions, (T, A), "actions")
    _check(ctx.tokens, (2 * H + 1, Z), "ctx.tokens")
    return apply(variables["params"], "member_latents", ctx.tokens, ctx.z,
                 scale(variables["scaler"], "action", actions))

  def predict_returns(variables: Variables, ctx: Context, z_hat: jax.Array, actions: jax.Array,
                      commands: jax.Array) -> tuple[jax.Array, jax.Array]:
    """-> (r_t..r_{t+T-1} `[T]`, V_{t+1}..V_{t+T} `[T]`), raw units."""
    _check(z_hat, (T, Z), "z_hat")
    _check(actions, (T, A), "actions")
    _check(commands, (T + 1, C), "commands")
    sc = variables["scaler"]
    r, v = apply(variables["params"], "returns", ctx.z, z_hat, scale(sc, "action", actions),
                 scale(sc, "command", commands))
    return unscale(sc, "reward", r), unscale(sc, "value", v)

  def policy_chunk(variables: Variables, ctx: Context, commands: jax.Array) -> jax.Array:
    """c_{t..t+T} `[T+1, C]` -> a_hat_{t..t+T-1} `[T, A]`, raw units."""
    _check(commands, (T + 1, C), "commands")
    sc = variables["scaler"]
    a = apply(variables["params"], "policy_chunk", ctx.tokens, scale(sc, "command", commands))
    return unscale(sc, "action", a)

  return WorldModel(spec, init, with_scaler, encode, context, predict_latents, predict_returns, policy_chunk,
                    apply, predict_member_latents)


def param_count(tree: Any) -> int:
  """Number of scalars in a pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def param_counts(params: Mapping[str, Any]) -> dict[str, int]:
  """Per-top-level-module parameter counts plus `total`."""
  out = {k: param_count(v) for k, v in params.items()}
  out["total"] = sum(out.values())
  return out
