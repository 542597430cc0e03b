"""Peg Insertion (SimDist's UR5e manipulation task, a Cartesian end-effector stage here), see
simdist_jax/envs/manipulation/ and docs/manipulation.md.

`get_config("small")`: CPU scale (15 s episodes, the other sections at their `small` preset, H = T = 5).
`get_config("paper")`: the paper's manipulation settings where they are known (5 Hz, H = T = 5, 45 s trials,
adaptation every 20 real episodes, the manipulation MPPI values of sections/planner.py).
Override any leaf from the CLI: `--config.env.world=tight_sticky_heldout` (with the world's domain.real values).
"""

import ml_collections

from experiments.configs.sections import stages
from simdist_jax.envs import registry

PRESETS = ("small", "paper")
WORLD_NAMES = ("tight_sticky", "tight_sticky_heldout")


def _real_domain(world: str) -> ml_collections.ConfigDict:
  from simdist_jax.envs.manipulation import worlds  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(worlds.get_world(world).domain_dict())


def _sim_domain() -> ml_collections.ConfigDict:
  from simdist_jax.envs.manipulation import worlds  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(dict(worlds.SIM_RANGES))


def get_config(preset: str = "small") -> ml_collections.ConfigDict:
  """The Peg Insertion config at `preset` ("small" or "paper"); raises KeyError for any other preset."""
  if preset not in PRESETS:
    raise KeyError(f"preset must be one of {PRESETS}, got {preset!r}")
  paper = preset == "paper"
  c = ml_collections.ConfigDict()
  c.task = "peg_insertion"
  c.preset = preset

  c.env = ml_collections.ConfigDict()
  c.env.ctrl_dt = 0.2                # control period [s] (5 Hz, the paper's); physics dt 0.005 -> 40 substeps
  c.env.episode_length = 225 if paper else 75  # control steps (paper: success within 45 s; small: 15 s)
  c.env.pos_scale = 0.02             # m of hand-target translation per unit action (per step, per axis)
  c.env.rot_scale = 0.05             # rad of hand-target rotation per unit action (world-frame rotation vector)
  c.env.max_lead_pos = 0.02          # m: the integrated set-point leads the measured hand position by at most this
  c.env.max_lead_rot = 0.1           # rad: the same for the orientation (yaw, pitch, roll)
  c.env.success_depth = 0.02         # m: seated = tip >= 2 cm below the hole's top (hole 2.5 cm deep), inside it
  # Training resets (OmniReset-style diverse starts): probabilities of far / near / inserted starts.
  c.env.init_probs = (0.4, 0.4, 0.2)
  c.env.init_far_xy = 0.175          # far: tip xy ~ U(+-r) around the nominal hole axis [m] (the Wide span)
  c.env.init_near_xy = 0.01          # near: U(+-r) [m] (the Narrow span)
  c.env.init_height = (0.01, 0.08)   # far / near: tip above the hole's top ~ U(lo, hi) [m]
  c.env.init_rot = 0.05              # far / near: yaw, pitch, roll ~ U(+-r) [rad]
  c.env.init_inserted_depth = (0.0, 0.015)  # inserted: on the fixture's axis, tip depth ~ U(lo, hi) [m]
  c.env.grid_height = 0.05           # grid starts: tip this far above the hole's top [m] (grids.py)
  # Dense expert reward: sum of weight x term (simdist_jax/envs/manipulation/peg.py `reward_terms`).
  c.env.reward_scales = ml_collections.ConfigDict(dict(
      keypoint=0.5,      # 1 - tanh(|tip - seat| / 5 cm), seat = hole floor centre
      align=0.5,         # 1 - tanh(lateral distance from the hole axis / 5 mm)
      depth=1.0,         # depth below the hole's top / hole depth, in [0, 1], 0 unless over the opening
      success=1.0,       # 1 while seated
      orientation=-0.5,  # angle [rad] between the peg and the fixture
      action=-0.01,      # |a[0:6]|^2
  ))
  c.env.world = "tight_sticky"       # shifted world of domain.real (worlds.py): tight_sticky | tight_sticky_heldout
  # Evaluation grid of initial conditions (grids.py): evaluation episode i of the adaptation loop and the baselines
  # (and their sim references) starts from point i mod N: "narrow" (3 x 3 over 2 x 2 cm) | "wide" (5 x 4 over
  # 35 x 35 cm) | "" (the training reset distribution). Not in the expert's or the dataset's fingerprint.
  c.env.eval_grid = "narrow"

  c.domain = ml_collections.ConfigDict()
  # Sim domain: DR ranges (worlds.SIM_RANGES), sampled uniformly at every (auto-)reset.
  c.domain.sim = _sim_domain()
  # Real (shifted) world: the fixed values of env.world, outside the DR ranges (worlds.py).
  c.domain.real = _real_domain("tight_sticky")

  # The sections read the task's dims (P, E, A, C, S) from the task itself, declared once in its class.
  stages.add_stage_sections(c, "peg_insertion", preset, registry.make_task(c).dims)
  # The paper's manipulation model: H = T = 5 at 5 Hz (1 s of history, 1 s of lookahead), both presets.
  c.model.history = 5
  c.model.horizon = 5
  if paper:
    c.adapt.rounds = 4               # 20 real episodes per round up to 80 (the Wide curves; Narrow stops at 60)
  c.lock()
  return c
