"""Compare two pytest-benchmark runs, each benchmark normalised by a reference measured in the same run.

Raw times on shared machines drift by 10-30 % run to run, and a faster or slower machine moves them all.
So a regression is a change in *relative* speed:

    factor = (t_current / t_baseline) / reference

and the gate fails where factor > threshold. Two references:
- "median" (default): the median of t_current / t_baseline over all benchmarks of the run — the run's own
  composite workload. Measured here, it is the steadier one: a single 256 MiB probe swung by up to 1.7x
  between runs that the kernels did not follow, while the suite median moved by at most 12 %.
- "probe": the probe of the benchmark's kind from the same run (memory-bandwidth or matmul, by
  `extra_info["bound"]`), which also catches a slowdown of every benchmark at once.
Files are pytest-benchmark's own JSON, so a user's saved runs (`--benchmark-save`, `--benchmark-json`) work
as baselines.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from qlab.errors import QlabError

PROBES = {"memory": "test_probe_bandwidth", "compute": "test_probe_matmul"}


@dataclass(frozen=True)
class Comparison:
    name: str
    baseline_s: float
    current_s: float
    factor: float          # > 1: slower than the baseline, relative to the probe
    bound: str
    status: str            # "ok" | "regressed" | "improved" | "new" | "missing" | "ungated"
    threshold: float = float("nan")  # the limit applied to this benchmark


def load_run(path: str | Path) -> dict:
    """A pytest-benchmark JSON file; errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise QlabError(f"benchmark file {path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise QlabError(f"benchmark file {path}: not a pytest-benchmark JSON file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise QlabError(f"benchmark file {path}: expected pytest-benchmark JSON with a 'benchmarks' list")
    return doc


def medians(run: dict) -> dict[str, tuple[float, str]]:
    """name -> (median seconds, bound) for every benchmark of a run."""
    out = {}
    for b in run["benchmarks"]:
        bound = bound_of(b.get("extra_info") or {})
        out[b.get("fullname") or b["name"]] = (float(b["stats"]["median"]), bound)
    return out


def spread_limit(extra: dict, margin: float = 1.1) -> float:
    """A baseline made of several runs records each run's median (`baseline_medians_of_runs`): a benchmark
    whose own medians spread by more than the global threshold (e.g. a bimodal sub-millisecond step) gets
    that spread × `margin` as its limit, so its noise alone cannot fail the gate."""
    runs = [float(v) for v in extra.get("baseline_medians_of_runs") or [] if v]
    return margin * max(runs) / min(runs) if len(runs) >= 2 else 0.0


def bound_of(extra: dict) -> str:
    """A benchmark's kind: as it says (`bound`), else compute when it reports only a FLOP rate."""
    if extra.get("bound") in PROBES:
        return extra["bound"]
    return "compute" if "gflops" in extra and "gbs" not in extra else "memory"


def _probe(times: dict[str, tuple[float, str]], bound: str) -> float | None:
    for name, (t, _) in times.items():
        if name.endswith(PROBES[bound]):
            return t
    return None


# Reference implementations are benchmarked for comparison, not gated: their speed is not the product's, and
# the naive DeltaNet step (a Python loop over sub-millisecond torch ops) is bimodal on this machine.
UNGATED = ("[naive",)


def compare(baseline: dict, current: dict, threshold: float = 1.6, normalise: str | bool = "median",
            ungated: tuple[str, ...] = UNGATED) -> list[Comparison]:
    """`normalise`: "median" (the run's median ratio), "probe" (the in-run probe of each benchmark's kind),
    or "none"/False (raw times: same machine, quiet)."""
    if normalise is True:
        normalise = "median"
    if normalise not in ("median", "probe", "none", False):
        raise QlabError(f"normalise {normalise!r}: expected median, probe or none")
    base, cur = medians(baseline), medians(current)
    base_extra = {b.get("fullname") or b["name"]: b.get("extra_info") or {} for b in baseline["benchmarks"]}
    gated = [n for n in sorted(set(base) | set(cur)) if not any(n.endswith(p) for p in PROBES.values())]
    shared = [n for n in gated if n in base and n in cur]
    run_scale = statistics.median(cur[n][0] / base[n][0] for n in shared) if shared else 1.0
    rows = []
    for name in gated:
        if name not in cur:
            rows.append(Comparison(name, base[name][0], float("nan"), float("nan"), base[name][1], "missing"))
            continue
        if name not in base:
            rows.append(Comparison(name, float("nan"), cur[name][0], float("nan"), cur[name][1], "new"))
            continue
        (tb, bound), (tc, _) = base[name], cur[name]
        factor = tc / tb
        if normalise == "median":
            factor /= run_scale
        elif normalise == "probe":
            pb, pc = _probe(base, bound), _probe(cur, bound)
            if pb and pc:
                factor /= pc / pb
        limit = max(threshold, spread_limit(base_extra.get(name, {})))
        status = "regressed" if factor > limit else "improved" if factor < 1 / limit else "ok"
        if any(u in name for u in ungated):
            status = "ungated"
        rows.append(Comparison(name, tb, tc, factor, bound, status, limit))
    return rows
