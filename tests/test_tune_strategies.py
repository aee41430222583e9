"""The strategies on synthetic cost surfaces with measurement noise (qlab.tune.synthetic): no timing at all."""

import random

import pytest

from qlab.tune.space import Space
from qlab.tune.strategies import Objective, bayes, budgeted, exhaustive
from qlab.tune.compare import success_rate
from qlab.tune.synthetic import make_surface

SEEDS = range(50)


def _run(strategy, surface, frac):
    n = len(surface.space.valid())
    obj = Objective(surface.measure(random.Random(1000 + surface.seed)), max_evals=int(frac * n))
    strategy(surface.space, obj, surface.model, seed=surface.seed)
    return obj, n


def test_budgeted_finds_within_5_percent_using_30_percent_of_evaluations():
    r = success_rate("budgeted", 0.30, SEEDS)
    print(f"budgeted: within 5% of the optimum on {r['success']:.0%} of {len(SEEDS)} surfaces")
    assert r["success"] >= 0.90, r   # measured: 100% on seeds 0-49, 97% on held-out seeds 100-199


def test_budgeted_never_exceeds_its_evaluation_budget():
    for seed in range(10):
        obj, n = _run(budgeted, make_surface(seed), 0.30)
        assert obj.evaluations <= int(0.30 * n)


def test_budgeted_beats_random_search_at_the_same_budget():
    ours = success_rate("budgeted", 0.10, SEEDS)["success"]
    theirs = success_rate("random", 0.10, SEEDS)["success"]
    assert ours >= theirs + 0.3, (ours, theirs)


def test_budgeted_without_a_cost_model_still_works():
    r = success_rate("budgeted", 0.30, SEEDS, use_model=False)
    assert r["success"] >= 0.85, r


def test_exhaustive_sees_every_valid_configuration_once():
    s = make_surface(3)
    calls = []
    obj = Objective(lambda c: calls.append(c) or s.true(c))
    exhaustive(s.space, obj, s.model)
    assert len(calls) == len(s.space.valid())
    assert obj.best_value == s.optimum()


def test_budget_in_evaluations_is_respected_and_memoised():
    s = Space({"a": list(range(10)), "b": list(range(10))})
    calls = []
    obj = Objective(lambda c: calls.append(c) or (c["a"] - 7) ** 2 + (c["b"] - 2) ** 2 + 1.0, max_evals=12)
    budgeted(s, obj, lambda c: 0.0)
    assert len(calls) == obj.evaluations <= 12
    assert len({tuple(sorted(c.items())) for c in calls}) == len(calls)  # nothing measured twice


def test_failed_configurations_never_win():
    s = Space({"a": list(range(6))})
    obj = Objective(lambda c: float("inf") if c["a"] == 0 else float(c["a"]))
    budgeted(s, obj, lambda c: c["a"])  # the cost model's favourite fails
    assert obj.best == {"a": 1}


def test_bayes_with_optuna():
    pytest.importorskip("optuna")
    s = make_surface(1)
    obj, n = _run(bayes, s, 0.30)
    assert obj.evaluations <= int(0.30 * n)
    assert s.true(obj.best) <= 1.2 * s.optimum()


def test_bayes_falls_back_to_budgeted_without_optuna(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    s = make_surface(2)
    with pytest.warns(UserWarning, match="falls back"):
        obj, n = _run(bayes, s, 0.30)
    assert 0 < obj.evaluations <= int(0.30 * n)
