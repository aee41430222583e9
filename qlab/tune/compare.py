"""Compare the strategies on synthetic surfaces (qlab.tune.synthetic): how often each lands within 5% of the
true optimum with a given fraction of the space's evaluations. No timing; seconds to run (bayes: a minute).

    python -m qlab.tune.compare --frac 0.3 --seeds 100:200 --strategies budgeted,bayes,exhaustive,random
"""

from __future__ import annotations

import argparse
import random
import time

from qlab.tune.strategies import STRATEGIES, Objective
from qlab.tune.synthetic import make_surface


def success_rate(strategy: str, frac: float, seeds: range, use_model: bool = True, tol: float = 0.05) -> dict:
    hits, gaps, t0 = 0, [], time.perf_counter()
    for seed in seeds:
        s = make_surface(seed)
        n = len(s.space.valid())
        obj = Objective(s.measure(random.Random(1000 + seed)), max_evals=max(1, int(frac * n)))
        STRATEGIES[strategy](s.space, obj, s.model if use_model else None, seed=seed)
        gap = s.true(obj.best) / s.optimum() - 1
        gaps.append(gap)
        hits += gap <= tol
    gaps.sort()
    return {"strategy": strategy, "model": use_model, "frac": frac, "success": hits / len(gaps),
            "median_gap": gaps[len(gaps) // 2], "worst_gap": gaps[-1], "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frac", type=float, default=0.3)
    p.add_argument("--seeds", default="0:50", help="start:stop")
    p.add_argument("--strategies", default="budgeted,bayes,exhaustive,random")
    p.add_argument("--no-model", action="store_true", help="give the strategies no cost model")
    a = p.parse_args(argv)
    start, stop = (int(x) for x in a.seeds.split(":"))
    for name in a.strategies.split(","):
        r = success_rate(name, a.frac, range(start, stop), not a.no_model)
        print(f"{name:>10}: within 5% on {r['success']:.0%} of seeds {a.seeds} with {a.frac:.0%} of evaluations; "
              f"median gap {r['median_gap']:.3f}, worst {r['worst_gap']:.3f} ({r['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
