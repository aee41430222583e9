"""The search space: enumeration, constraints, neighbours, and clear errors for spaces that cannot be searched."""

import pytest

from qlab.errors import QlabError
from qlab.tune.space import Space, SpaceError


def test_enumerates_the_product_and_filters_by_the_constraint():
    s = Space({"a": [1, 2, 4], "b": [8, 16]}, lambda c: c["a"] * c["b"] <= 32)
    assert s.size == 6
    assert s.valid() == [{"a": 1, "b": 8}, {"a": 1, "b": 16}, {"a": 2, "b": 8}, {"a": 2, "b": 16},
                         {"a": 4, "b": 8}]
    assert not s.is_valid({"a": 4, "b": 16})
    assert not s.is_valid({"a": 3, "b": 8})  # a value outside the space


def test_neighbours_are_one_step_along_one_parameter_and_valid():
    s = Space({"a": [1, 2, 4], "b": [8, 16, 32]}, lambda c: c["a"] * c["b"] <= 64)
    got = s.neighbours({"a": 2, "b": 16})
    assert {tuple(sorted(c.items())) for c in got} == {
        (("a", 1), ("b", 16)), (("a", 4), ("b", 16)), (("a", 2), ("b", 8)), (("a", 2), ("b", 32))}
    assert {"a": 4, "b": 32} not in s.neighbours({"a": 4, "b": 16})  # 128 > 64


def test_empty_parameter_is_a_clear_error():
    with pytest.raises(SpaceError, match="'b' has no values"):
        Space({"a": [1], "b": []})


def test_no_parameters_is_a_clear_error():
    with pytest.raises(SpaceError, match="empty search space"):
        Space({}).valid()


def test_contradictory_constraints_are_a_clear_error():
    s = Space({"a": [1, 2], "b": [3]}, lambda c: c["a"] > 5)
    with pytest.raises(SpaceError, match="reject all 2 configurations"):
        s.valid()
    assert issubclass(SpaceError, QlabError)  # the CLI prints it as one line, exit 2


def test_a_constraint_that_raises_means_invalid():
    s = Space({"a": [0, 1, 2]}, lambda c: 4 // c["a"] > 2)
    assert s.valid() == [{"a": 1}]


def test_duplicate_values_are_rejected():
    with pytest.raises(SpaceError, match="twice"):
        Space({"a": [1, 1]})
