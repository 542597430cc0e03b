"""The sim DR ranges and the shifted "real" worlds of Peg Insertion (the MuJoCo C twin stands in for hardware).

SimDist's manipulation gap is contact dynamics: friction and compliance in the insertion (simdist_paper.md §4.1).
Each world fixes every domain parameter; all of them lie OUTSIDE the sim DR ranges (`SIM_RANGES`) on the
parameters that shape the contact, so a sim expert meets a tighter, stickier, softer insertion than any it
trained on:

  tight_sticky (the adaptation world): clearance 0.4 mm (sim 0.8-1.6 mm), friction 1.2 (sim 0.3-0.8), a 2.5 x 1.5 cm
    fixture offset (sim +-1 cm), fixture yaw 0.08 rad (sim +-0.05), a softer controller (kp x 0.6, sim 0.8-1.2),
    the heaviest peg of the sim range doubled (0.2 kg, sim 0.03-0.1); perception noise 0.3 mm (inside sim 0-0.5 mm).
  tight_sticky_heldout (held out: never adapted on, for checking that adaptation generalizes): the same kind of
    shift in other directions and amounts: clearance 0.5 mm, friction 1.0, fixture offset (-2.0, +2.5) cm,
    yaw -0.07 rad, kp x 0.65, kd x 0.7 (sim 0.8-1.2), peg 0.15 kg, perception noise 0.3 mm.
The tolerances a square peg must meet shrink with the clearance: with c = 0.4 mm the peg's lateral error must
stay below 0.2 mm and its yaw below about c / 16 mm = 0.025 rad at the hole's mouth (1.4 deg; with the sim's
c = 1.2 mm, 0.075 rad), while the fixture yaw (0.08 rad) is outside what any sim episode showed.
"""

from __future__ import annotations

import dataclasses

from simdist_jax.envs.domain import Domain

# DR ranges of the sim domain (per episode, uniform). The manipulation DR of the paper is OmniReset's, not
# restated there; these are ours (docs/manipulation.md).
SIM_RANGES = {
    "friction": (0.3, 0.8),         # peg sliding friction (all peg contacts)
    "peg_mass": (0.03, 0.10),       # kg
    "kp_scale": (0.8, 1.2),         # servo stiffness x scale
    "kd_scale": (0.8, 1.2),         # servo damping x scale
    "fixture_dx": (-0.01, 0.01),    # m
    "fixture_dy": (-0.01, 0.01),    # m
    "fixture_yaw": (-0.05, 0.05),   # rad
    "clearance": (0.0008, 0.0016),  # m, diametral
    "obs_noise": (0.0, 0.0005),     # m, perception noise std
}
PARAM_ORDER = tuple(SIM_RANGES)


@dataclasses.dataclass(frozen=True)
class World:
  """A shifted world: fixed values for every domain parameter."""

  name: str
  domain: tuple[tuple[str, float], ...]
  description: str = ""

  def domain_dict(self) -> dict:
    """{parameter name: value}."""
    return dict(self.domain)

  def real_domain(self) -> Domain:
    """The fixed values as the twin's `real` Domain (degenerate ranges)."""
    return Domain.from_config("real", self.domain_dict(), PARAM_ORDER)

  def outside_sim(self) -> list[str]:
    """The parameters whose value lies outside the sim DR range."""
    return [n for n, v in self.domain if not SIM_RANGES[n][0] <= v <= SIM_RANGES[n][1]]


def _world(name: str, description: str, **values) -> World:
  if set(values) != set(PARAM_ORDER):
    raise ValueError(f"world {name}: needs exactly {PARAM_ORDER}")
  return World(name, tuple((n, float(values[n])) for n in PARAM_ORDER), description)


WORLDS = {
    "tight_sticky": _world(
        "tight_sticky", "clearance 0.4 mm, friction 1.2, fixture offset (2.5, 1.5) cm and yaw 0.08 rad, "
        "kp x 0.6, peg 0.2 kg",
        friction=1.2, peg_mass=0.2, kp_scale=0.6, kd_scale=1.0, fixture_dx=0.025, fixture_dy=0.015,
        fixture_yaw=0.08, clearance=0.0004, obs_noise=0.0003),
    "tight_sticky_heldout": _world(
        "tight_sticky_heldout", "held out: clearance 0.5 mm, friction 1.0, fixture offset (-2.0, 2.5) cm and yaw "
        "-0.07 rad, kp x 0.65, kd x 0.7, peg 0.15 kg",
        friction=1.0, peg_mass=0.15, kp_scale=0.65, kd_scale=0.7, fixture_dx=-0.02, fixture_dy=0.025,
        fixture_yaw=-0.07, clearance=0.0005, obs_noise=0.0003),
}


def get_world(name: str) -> World:
  """The world named `name`; raises ValueError naming the known worlds."""
  if name not in WORLDS:
    raise ValueError(f"unknown world {name!r}; known: {sorted(WORLDS)}")
  return WORLDS[name]
