"""SGFT-SAC: real-world SAC guided by the value function transferred from simulation (Yin et al. 2025, the paper's
SGFT baseline: "transfers the simulated value function to guide real-world SAC", §5).

Our reading of SGFT, each piece stated [approximate: the paper gives no hyperparameters]:
  * V_sim(o, c): the expert critic's labels V^e(s_t) of the sim dataset (privileged state) distilled onto the
    observations by regression (`value_steps` steps, z-scored targets), then frozen.
  * Potential-based shaping of every reward, sim and real: r~ = r + gamma V_sim(o') - V_sim(o), gamma the
    learner's own discount (`baselines.sgft.discount`, as SGFT's code shapes with its agent's discount). With the
    learner's gamma the optimal policy is unchanged (Ng et al. 1999: Q~ = Q - V_sim), so the shaping does not
    shorten the horizon; what it changes is the target the critic learns (Q - V_sim, small where V_sim is right;
    a critic near zero first learns r + gamma V_sim(o') - V_sim(o), a one-step lookahead on V_sim). The discount
    is the horizon the learner optimizes (default RLPD's 0.99; 0.9 made it the ~10-step problem, tested on a
    chain in tests/baselines/test_sgft.py).
  * Otherwise RLPD's agent (`rlpd.RLPDAgent`): the actor's mean from single-step BC, SAC with the ensemble, UTD and
    symmetric sim/real batches of `baselines.rlpd`, the discount replaced by `baselines.sgft.discount`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from simdist_jax.baselines import iql
from simdist_jax.baselines import online
from simdist_jax.baselines import rlpd
from simdist_jax.baselines import sac
from simdist_jax.world_model import model as model_lib

NAME = "sgft"


def _value_batch_loss(value: iql.Value, params: Any, scaler: Any, batch: dict) -> jax.Array:
  obs = tuple(model_lib.scale(scaler, k, batch[k][:, 0]) for k in ("proprio", "extero", "command"))
  pred = jax.vmap(value.apply, in_axes=(None, 0, 0, 0))({"params": params}, *obs)
  target = model_lib.scale(scaler, "value", batch["value"][:, 0])
  return jnp.mean((pred - target) ** 2)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _value_chunk(value, tx, sampler, batch_size, params, opt, scaler, arrays, key, steps):
  def step(carry, s):
    prm, o = carry
    loss, g = jax.value_and_grad(_value_batch_loss, argnums=1)(value, prm, scaler,
                                                               sampler(arrays, jax.random.fold_in(key, s), batch_size))
    upd, o = tx.update(g, o, prm)
    return (optax.apply_updates(prm, upd), o), loss
  (params, opt), loss = jax.lax.scan(step, (params, opt), steps)
  return params, opt, loss


def distill_value(value: iql.Value, dataset: Any, scaler: Any, key: jax.Array, num_steps: int, batch_size: int,
                  lr: float, log: Callable[[str], None] = print, chunk: int = 500) -> tuple[Any, dict]:
  """V(o, c) regressed on the sim dataset's V^e labels (z-scored); returns (params, {"sgft/value_mse" train (z
  units, last chunk), "sgft/value_heldout_mse", "sgft/value_heldout_var" (z units; the constant predictor's error)}).
  """
  s = value.spec
  k_init, k_data, k_eval = jax.random.split(key, 3)
  params = value.init(k_init, jnp.zeros(s.proprio), jnp.zeros(s.extero), jnp.zeros(s.command))["params"]
  tx = optax.adam(lr)
  opt = tx.init(params)
  sampler, arrays = dataset.sampler()
  t0, done, loss = time.perf_counter(), 0, np.nan
  while done < num_steps:
    k = min(chunk, num_steps - done)
    params, opt, losses_k = _value_chunk(value, tx, sampler, batch_size, params, opt, scaler, arrays, k_data,
                                         jnp.arange(done, done + k))
    loss = float(np.mean(np.asarray(losses_k)))
    if not np.isfinite(loss):
      raise FloatingPointError(f"value distillation loss became non-finite near step {done}")
    done += k
  held = dataset.sample_eval(k_eval, 4096)
  err = float(_value_batch_loss(value, params, scaler, held))
  var = float(jnp.var(model_lib.scale(scaler, "value", held["value"][:, 0])))
  log(f"V_sim distilled in {time.perf_counter() - t0:.0f}s: held-out error {err:.4f} vs variance {var:.4f} "
      f"(z units, {num_steps} steps)")
  return params, {"sgft/value_mse": loss, "sgft/value_heldout_mse": err, "sgft/value_heldout_var": var}


@functools.partial(jax.jit, static_argnums=(0, 4))
def shape(value: iql.Value, params: Any, scaler: Any, batches: dict, discount: float) -> dict:
  """[G, B] transition batches with r~ = r + gamma (1 - d) V(o') - V(o) (raw value units; no potential after a
  termination)."""
  def v(prefix):
    obs = tuple(model_lib.scale(scaler, k, batches[prefix + k]) for k in ("proprio", "extero", "command"))
    z = jax.vmap(jax.vmap(value.apply, in_axes=(None, 0, 0, 0)), in_axes=(None, 0, 0, 0))({"params": params}, *obs)
    return model_lib.unscale(scaler, "value", z)
  shaped = batches["reward"] + discount * batches["not_done"] * v("next_") - v("")
  return dict(batches, reward=shaped)


class SGFTAgent(rlpd.RLPDAgent):
  """RLPD's agent with a short discount and rewards shaped by the distilled sim value."""

  name = NAME

  def __init__(self, cfg: Any, setup: online.Setup) -> None:
    super().__init__(cfg, setup)
    g = cfg.baselines.sgft
    self.discount = float(g.discount)
    self.value_steps, self.value_lr = int(g.value_steps), float(g.value_lr)
    self.rcfg = dataclasses.replace(self.rcfg, sac=dataclasses.replace(self.rcfg.sac, discount=self.discount))
    self.nets = sac.make_nets(setup.spec, self.rcfg.sac)
    self.value = iql.Value(setup.spec, self.rcfg.sac.hidden)

  def template(self, key: jax.Array) -> dict:
    """{"agent": a fresh SAC state, "value": V_sim's parameters} (the structure saved states are read into)."""
    s = self.setup.spec
    v = self.value.init(key, jnp.zeros(s.proprio), jnp.zeros(s.extero), jnp.zeros(s.command))["params"]
    return {"agent": super().template(key), "value": v}

  def init(self, key: jax.Array, log: Callable[[str], None]) -> tuple[dict, dict]:
    """RLPD's BC-initialized agent, plus V_sim distilled from the sim data's expert values."""
    k_agent, k_value = jax.random.split(key)
    agent, row = super().init(k_agent, log)
    su = self.setup
    value, m = distill_value(self.value, su.dataset, su.scaler, k_value, self.value_steps,
                             self.rcfg.batch_size, self.value_lr, log=log)
    row.update(m)
    return {"agent": agent, "value": value}, row

  def controller(self, state: dict, deterministic: bool) -> sac.SACController:
    """The SAC actor (tanh of its mean, or its samples)."""
    return super().controller(state["agent"], deterministic)

  def update(self, state: dict, replay: online.Replay, num_new: int, seed: int, log: Callable[[str], None],
             label: str) -> tuple[dict, dict]:
    """RLPD's updates on shaped rewards (V_sim frozen)."""
    su = self.setup
    log(f"{label}: {self.rcfg.utd * num_new} updates on shaped rewards (discount {self.discount})")
    agent, m = rlpd.train_updates(self.nets, self.rcfg, state["agent"], su.scaler, replay, su.dataset, su.low,
                                  su.high, self.rcfg.utd * num_new, seed=seed, log=log, label=label,
                                  transform=lambda b: shape(self.value, state["value"], su.scaler, b, self.discount))
    return {"agent": agent, "value": state["value"]}, m


def is_complete(cfg: Any, workdir: Any) -> bool:
  """results.json exists and says complete."""
  del cfg
  return online.results_complete(workdir, NAME)


def run_stage(cfg: Any, workdir: Any) -> dict:
  """Runs (or resumes) SGFT-SAC's rounds; writes `<workdir>/baselines/sgft/results.json`."""
  setup = online.make_setup(cfg, workdir)
  key = jax.random.fold_in(jax.random.PRNGKey(setup.seed), 0x56F7)
  return online.run_rounds(cfg, workdir, SGFTAgent(cfg, setup), key)
