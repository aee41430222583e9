"""Synthetic cost surfaces that look like kernel tuning problems, to test and compare the strategies without
timing anything. Each surface has a true time per configuration, a noisy measurement of it and an imperfect
cost model, all drawn from one seed:

- time is smooth in the log of each tile-like parameter (a bowl with a random minimum and curvature),
  times an interaction (the best warp count grows with the tile area), times a fixed per-configuration
  ruggedness (alignment, bank conflicts: ~3%), and a resource constraint (tile bytes × stages ≤ a limit)
  cuts the space like shared memory does;
- a measurement multiplies the true time by log-normal noise (2% by default);
- the cost model knows the shape of the surface but misplaces each minimum by ~0.8 steps and misjudges
  each curvature by up to 2×, as a bytes-and-FLOPs model does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from collections.abc import Callable

from qlab.tune.space import Config, Space, config_key


@dataclass
class Surface:
    space: Space
    true: Callable[[Config], float]
    model: Callable[[Config], float]
    noise: float
    seed: int

    def measure(self, rng: random.Random) -> Callable[[Config], float]:
        return lambda c: self.true(c) * math.exp(rng.gauss(0.0, self.noise))

    def optimum(self) -> float:
        return min(self.true(c) for c in self.space.valid())


def make_surface(seed: int, noise: float = 0.02, rugged: float = 0.03) -> Surface:
    rng = random.Random(seed)
    params = {
        "BLOCK_M": [16, 32, 64, 128],
        "BLOCK_N": [32, 64, 128, 256],
        "BLOCK_K": [32, 64, 128],
        "num_warps": [2, 4, 8],
        "num_stages": [2, 3, 4, 5],
    }
    names = list(params)
    centre = {p: rng.uniform(0, len(params[p]) - 1) for p in names}
    curve = {p: rng.uniform(0.03, 0.3) for p in names}
    coupling = rng.uniform(0.05, 0.2)
    limit = rng.choice([48, 100, 160]) * 1024  # shared memory bytes

    def fits(c: Config) -> bool:
        return (c["BLOCK_M"] + c["BLOCK_N"]) * c["BLOCK_K"] * 2 * c["num_stages"] <= limit

    space = Space(params, fits, name=f"synthetic-{seed}")
    idx = {p: {v: i for i, v in enumerate(vs)} for p, vs in params.items()}

    def smooth(c: Config, centre: dict, curve: dict, coupling: float) -> float:
        t = 1.0
        for p in names:
            t *= 1.0 + curve[p] * (idx[p][c[p]] - centre[p]) ** 2
        area = math.log2(c["BLOCK_M"] * c["BLOCK_N"])  # 8 .. 16
        t *= 1.0 + coupling * (math.log2(c["num_warps"]) - (area - 9) / 2.5) ** 2
        return t

    bumps: dict[tuple, float] = {}
    for c in space.all():  # the ruggedness is part of the truth, fixed per configuration
        bumps[config_key(c)] = math.exp(rng.gauss(0.0, rugged))

    m_centre = {p: centre[p] + rng.gauss(0.0, 0.8) for p in names}
    m_curve = {p: curve[p] * rng.uniform(0.5, 2.0) for p in names}
    m_coupling = coupling * rng.uniform(0.5, 2.0)

    def true(c: Config) -> float:
        return 1e-3 * smooth(c, centre, curve, coupling) * bumps[config_key(c)]

    def model(c: Config) -> float:
        return 1e-3 * smooth(c, m_centre, m_curve, m_coupling)

    return Surface(space, true, model, noise, seed)
