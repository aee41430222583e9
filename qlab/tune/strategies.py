"""Search strategies. Each walks a Space, calling an Objective (which measures, memoises and enforces the
budget) until it has seen everything or the budget is spent; the Objective keeps the best configuration.

- `exhaustive`: every valid configuration, cost-model order first (ground truth; small spaces).
- `budgeted`: cost-model-ranked hill climbing with restarts (the default; see README.md for how it compares).
- `bayes`: optuna's TPE sampler seeded with the cost model's top picks (optuna is optional: without it,
  `bayes` falls back to `budgeted` with a warning).
- `random`: uniform sampling without replacement (a baseline for the comparison only).
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable

from qlab.tune.space import Config, Space, config_key

Rank = Callable[[Config], float] | None


class BudgetExhausted(Exception):
    """Raised by the Objective when a new evaluation would exceed the budget."""


class Objective:
    """Wraps `fn(config) -> seconds` (inf for a failed configuration): memoises, counts evaluations, stops at
    `max_evals` or at the monotonic-clock `deadline`, and tracks the best configuration seen."""

    def __init__(self, fn: Callable[[Config], float], max_evals: int | None = None, deadline: float | None = None):
        self.fn = fn
        self.max_evals = max_evals
        self.deadline = deadline
        self.seen: dict[tuple, float] = {}
        self.history: list[tuple[Config, float]] = []
        self.best: Config | None = None
        self.best_value = math.inf

    @property
    def evaluations(self) -> int:
        return len(self.history)

    def exhausted(self) -> bool:
        if self.max_evals is not None and self.evaluations >= self.max_evals:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def evaluated(self, config: Config) -> bool:
        return config_key(config) in self.seen

    def __call__(self, config: Config) -> float:
        key = config_key(config)
        if key in self.seen:
            return self.seen[key]
        if self.exhausted():
            raise BudgetExhausted
        value = float(self.fn(config))
        self.seen[key] = value
        self.history.append((dict(config), value))
        if value < self.best_value:
            self.best, self.best_value = dict(config), value
        return value


def _ordered(configs: list[Config], rank: Rank, rng: random.Random) -> list[Config]:
    if rank is None:
        configs = list(configs)
        rng.shuffle(configs)
        return configs
    return sorted(configs, key=rank)


def exhaustive(space: Space, objective: Objective, rank: Rank = None, seed: int = 0) -> None:
    for c in _ordered(space.valid(), rank, random.Random(seed)):
        try:
            objective(c)
        except BudgetExhausted:
            return


def random_search(space: Space, objective: Objective, rank: Rank = None, seed: int = 0) -> None:
    exhaustive(space, objective, None, seed)


def _step(candidates, current, value, objective, rank, limit):
    """Measure the unmeasured candidates (cost-model order, at most `limit`); the best if it beats `value`."""
    fresh = [n for n in candidates if not objective.evaluated(n)]
    if rank is not None:
        fresh.sort(key=rank)
    fresh = fresh[:limit]
    if not fresh:
        return None
    best_value, _, best = min(((objective(n), i, n) for i, n in enumerate(fresh)), key=lambda t: (t[0], t[1]))
    return (best, best_value) if best_value < value else None


def budgeted(space: Space, objective: Objective, rank: Rank = None, seed: int = 0, diagonals: int = 4) -> None:
    """Hill climbing with restarts. Starts from the cost model's favourite; from each point, measures all
    unmeasured one-step neighbours (cost-model order) and moves to the best if it beats the current point;
    where none does, it tries the `diagonals` best-ranked two-parameter moves (around constraint edges).
    At a local optimum, restarts alternately from the best-ranked and from a random unmeasured configuration,
    so a wrong cost model costs restarts, not the answer."""
    rng = random.Random(seed)
    ranked = _ordered(space.valid(), rank, rng)
    pool = list(ranked)
    rng.shuffle(pool)
    restarts = 0
    try:
        while True:
            source = ranked if restarts % 2 == 0 else pool
            start = next((c for c in source if not objective.evaluated(c)), None)
            if start is None:
                return
            restarts += 1
            current, value = start, objective(start)
            while True:
                moved = _step(space.neighbours(current), current, value, objective, rank, None)
                if moved is None:  # a local optimum along single steps: try the cost model's best diagonals
                    moved = _step(space.diagonals(current), current, value, objective, rank, diagonals)
                if moved is None:
                    break
                current, value = moved
    except BudgetExhausted:
        return


def bayes(space: Space, objective: Objective, rank: Rank = None, seed: int = 0, warm_start: int = 3) -> None:
    """optuna TPE over categorical parameters; the cost model's `warm_start` best configurations go first.
    Constraint-rejected samples are told to optuna as failed and cost no evaluation."""
    try:
        import optuna
    except ImportError:
        warnings.warn("optuna is not installed; strategy 'bayes' falls back to 'budgeted'", stacklevel=2)
        return budgeted(space, objective, rank, seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    valid = space.valid()
    names = list(space.params)
    # optuna's categorical choices must be None/bool/int/float/str; index into the value lists instead.
    dists = {p: optuna.distributions.CategoricalDistribution(list(range(len(v)))) for p, v in space.params.items()}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(warm_start, 5), multivariate=True)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    if rank is not None:
        for c in sorted(valid, key=rank)[:warm_start]:
            study.enqueue_trial({p: space.params[p].index(c[p]) for p in names})
    rng = random.Random(seed)

    def enqueue_fresh() -> None:
        """TPE keeps proposing configurations it has seen or the constraints reject; each such proposal is
        answered and replaced by an unmeasured neighbour of the best (or any unmeasured one), so every ask
        after it measures something new."""
        near = [c for c in space.neighbours(objective.best) if not objective.evaluated(c)] if objective.best else []
        pool = near or [c for c in valid if not objective.evaluated(c)]
        if pool:
            c = rng.choice(pool)
            study.enqueue_trial({p: space.params[p].index(c[p]) for p in names})

    try:
        while not objective.exhausted():
            if all(objective.evaluated(c) for c in valid):
                return
            trial = study.ask(dists)
            config = {p: space.params[p][trial.params[p]] for p in names}
            if not space.is_valid(config):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                enqueue_fresh()
                continue
            seen = objective.evaluated(config)
            value = objective(config)
            study.tell(trial, value if math.isfinite(value) else 1e30)
            if seen:
                enqueue_fresh()
    except BudgetExhausted:
        return


STRATEGIES: dict[str, Callable[..., None]] = {
    "budgeted": budgeted,
    "exhaustive": exhaustive,
    "bayes": bayes,
    "random": random_search,
}


def get_strategy(name: str) -> Callable[..., None]:
    if name not in STRATEGIES:
        from qlab.errors import unknown

        raise unknown("strategy", name, STRATEGIES)
    return STRATEGIES[name]
