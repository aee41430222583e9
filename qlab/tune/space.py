"""A search space as data: each parameter's candidate values, plus a constraint on whole configurations.

Configurations are plain dicts (`{"BLOCK_N": 64, "num_warps": 4}`), so they go straight into a kernel's
`config=` argument and into the JSON cache. A space knows its neighbourhood structure (one step along one
parameter's value list), which the local search walks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from qlab.errors import QlabError

Config = dict[str, Any]


class SpaceError(QlabError):
    """A search space that cannot be searched: empty, or every configuration rejected by its constraints."""


def config_key(config: Mapping[str, Any]) -> tuple:
    """A hashable, order-independent identity of a configuration."""
    return tuple(sorted(config.items()))


class Space:
    """`params` maps each parameter to its values, in an order where neighbours are similar (ascending sizes);
    `constraint(config) -> bool` rejects configurations that cannot run (shared memory, divisibility)."""

    def __init__(self, params: Mapping[str, Sequence[Any]], constraint: Callable[[Config], bool] | None = None,
                 name: str = "space"):
        self.name = name
        self.params: dict[str, list[Any]] = {}
        for p, values in params.items():
            values = list(values)
            if not values:
                raise SpaceError(f"{name}: parameter {p!r} has no values; expected a non-empty list")
            if len(set(map(repr, values))) != len(values):
                raise SpaceError(f"{name}: parameter {p!r} lists a value twice: {values}")
            self.params[p] = values
        self.constraint = constraint
        self._valid: list[Config] | None = None

    @property
    def size(self) -> int:
        """Configurations before the constraints."""
        return math.prod(len(v) for v in self.params.values())

    def all(self) -> Iterator[Config]:
        names = list(self.params)
        for values in itertools.product(*(self.params[n] for n in names)):
            yield dict(zip(names, values))

    def is_valid(self, config: Config) -> bool:
        if any(config.get(p) not in values for p, values in self.params.items()):
            return False
        if self.constraint is None:
            return True
        try:
            return bool(self.constraint(config))
        except (ValueError, ZeroDivisionError, KeyError, TypeError):  # a constraint that chokes means "no"
            return False

    def valid(self) -> list[Config]:
        """Every configuration the constraints accept, in enumeration order; raises SpaceError when none is."""
        if self._valid is None:
            if not self.params:
                raise SpaceError(f"{self.name}: empty search space (no parameters)")
            self._valid = [c for c in self.all() if self.is_valid(c)]
            if not self._valid:
                raise SpaceError(f"{self.name}: the constraints reject all {self.size} configurations of "
                                 f"{ {p: v for p, v in self.params.items()} } (contradictory space)")
        return self._valid

    def neighbours(self, config: Config) -> list[Config]:
        """Valid configurations one step away along one parameter's value list."""
        out = []
        for p, values in self.params.items():
            i = values.index(config[p])
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    c = dict(config, **{p: values[j]})
                    if self.is_valid(c):
                        out.append(c)
        return out

    def diagonals(self, config: Config) -> list[Config]:
        """Valid configurations one step away along each of two parameters: the way around a constraint
        boundary (e.g. a bigger tile with fewer pipeline stages) that single steps cannot take."""
        out = []
        names = list(self.params)
        for a, p in enumerate(names):
            for q in names[a + 1:]:
                ip, iq = self.params[p].index(config[p]), self.params[q].index(config[q])
                for dp in (-1, 1):
                    for dq in (-1, 1):
                        if 0 <= ip + dp < len(self.params[p]) and 0 <= iq + dq < len(self.params[q]):
                            c = dict(config, **{p: self.params[p][ip + dp], q: self.params[q][iq + dq]})
                            if self.is_valid(c):
                                out.append(c)
        return out

    def __repr__(self) -> str:
        return f"Space({self.name}, {self.params})"
