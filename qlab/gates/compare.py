"""Compare a pytest-benchmark run with the baseline of its machine class, each benchmark normalised by a
yardstick that shares no code with it.

    factor = (t_current / t_baseline) / (yardstick_current / yardstick_baseline)

with t the fastest sample (`min`: load on a shared machine only ever adds time). The yardstick is the one the
baseline chose for the benchmark (`extra_info["yardstick"]`, the one its runs spread least against):
- "llama.cpp": llama.cpp's ggml doing the same work, timed between the benchmark's rounds (`peer_min_ms`), used
  where both runs have it;
- otherwise the probe of the benchmark's kind (qlab.gates.probes; `extra_info["bound"]`: a 320 MiB read for
  "memory", a fixed BLAS GEMM for "compute", the same on one thread for "compute_1thread"): the benchmark's own,
  sampled between its rounds, where both runs have one (`probe_min_ms`), else the run's probe benchmark.
A benchmark regresses where factor > its limit. Limits are set in advance from the spread of the benchmark over
repeated runs (`limit_from_spread`, README "Regression gates") and stored with the baseline; `threshold` overrides
them all. Files are pytest-benchmark's own JSON, so a user's saved runs (`--benchmark-save`, `--benchmark-json`)
work as baselines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from qlab.errors import QlabError

LLAMACPP = "llama.cpp"   # the other yardstick: llama.cpp doing the benchmark's work (benchmarks/llamacpp_peers.py)
PROBES = {"memory": "test_probe_bandwidth", "compute": "test_probe_matmul",
          "compute_1thread": "test_probe_matmul_1thread"}
STAT = "min"

# The rule (README): limit = 1.1 x the spread (max/min over the baseline's runs of the probe-normalised time),
# never below 1.2 nor above 1.45. A benchmark can be gated at 1.5x only if a 1.5x slowdown measured in its
# luckiest run still exceeds the limit: 1.5 / spread > limit. One that fails this is too noisy:
# `rebuild_baseline.py` names it, and it is redesigned (more work per sample), not loosened.
LIMIT_MARGIN, LIMIT_FLOOR, LIMIT_CAP, GATED_SLOWDOWN = 1.1, 1.2, 1.45, 1.5


def limit_from_spread(spread: float) -> float:
    return min(LIMIT_CAP, max(LIMIT_FLOOR, LIMIT_MARGIN * spread))


def too_noisy(spread: float) -> bool:
    """Whether a 1.5x slowdown could hide in this spread (see the rule above)."""
    return GATED_SLOWDOWN / spread <= limit_from_spread(spread)


@dataclass(frozen=True)
class Comparison:
    name: str
    baseline_s: float
    current_s: float
    factor: float          # > 1: slower than the baseline, relative to its yardstick
    bound: str             # the yardstick it was divided by: a probe kind, or "llama.cpp"
    status: str            # "ok" | "regressed" | "improved" | "new" | "missing"
    threshold: float = float("nan")  # the limit applied to this benchmark


def load_run(path: str | Path) -> dict:
    """A pytest-benchmark JSON file; errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise QlabError(f"benchmark file {path}: no such file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise QlabError(f"benchmark file {path}: not a pytest-benchmark JSON file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise QlabError(f"benchmark file {path}: expected pytest-benchmark JSON with a 'benchmarks' list")
    for b in doc["benchmarks"]:
        t = (b.get("stats") or {}).get(STAT) if isinstance(b, dict) else None
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0 or not (b.get("name")):
            raise QlabError(f"benchmark file {path}: a benchmark without a positive finite stats.{STAT}")
    return doc


def key(b: dict) -> str:
    return b.get("fullname") or b["name"]


def times(run: dict) -> dict[str, tuple[float, str]]:
    """name -> (fastest sample in seconds, bound) for every benchmark of a run."""
    return {key(b): (float(b["stats"][STAT]), bound_of(b.get("extra_info") or {})) for b in run["benchmarks"]}


def own_probes(run: dict, field: str = "probe_min_ms") -> dict[str, float]:
    """name -> the fastest sample (s) of the probe a benchmark sampled between its own rounds, where it did
    (`field` "peer_min_ms": of llama.cpp doing the same work)."""
    out = {}
    for b in run["benchmarks"]:
        ms = (b.get("extra_info") or {}).get(field)
        if isinstance(ms, (int, float)) and math.isfinite(ms) and ms > 0:
            out[key(b)] = ms / 1e3
    return out


def own_peers(run: dict) -> dict[str, float]:
    """name -> the fastest sample (s) of llama.cpp doing a benchmark's work between its rounds, where it did."""
    return own_probes(run, "peer_min_ms")


def probes_for(name: str, bound: str, base: tuple[dict, dict], cur: tuple[dict, dict]) -> tuple:
    """The probe times (baseline, current) that normalise benchmark `name`; `base` and `cur` are each run's
    (`times`, `own_probes`). Its own probe where both runs have one, else each run's probe benchmark of its kind."""
    (base_times, base_own), (cur_times, cur_own) = base, cur
    if name in base_own and name in cur_own:
        return base_own[name], cur_own[name]
    return probe_time(base_times, bound), probe_time(cur_times, bound)


def bound_of(extra: dict) -> str:
    """A benchmark's kind: as it says (`bound`), else compute when it reports only a FLOP rate."""
    if extra.get("bound") in PROBES:
        return extra["bound"]
    return "compute" if "gflops" in extra and "gbs" not in extra else "memory"


def is_probe(name: str) -> bool:
    return any(name.endswith(p) for p in PROBES.values())


def probe_time(run_times: dict[str, tuple[float, str]], bound: str) -> float | None:
    for name, (t, _) in run_times.items():
        if name.endswith(PROBES[bound]):
            return t
    return None


def compare(baseline: dict, current: dict, threshold: float | None = None,
            normalise: str = "probe") -> list[Comparison]:
    """`normalise`: "probe" (the in-run probe of each benchmark's kind) or "none" (raw times: same machine,
    quiet). Limits: `threshold` if given, else each baseline benchmark's `extra_info["limit"]`, else 1.45."""
    if normalise not in ("probe", "none"):
        raise QlabError(f"normalise {normalise!r}: expected probe or none")
    base, cur = times(baseline), times(current)
    own_base, own_cur = own_probes(baseline), own_probes(current)
    peer_base, peer_cur = own_peers(baseline), own_peers(current)
    limits = {key(b): (b.get("extra_info") or {}).get("limit") for b in baseline["benchmarks"]}
    yardsticks = {key(b): (b.get("extra_info") or {}).get("yardstick") for b in baseline["benchmarks"]}
    rows = []
    for name in sorted(set(base) | set(cur)):
        if is_probe(name):
            continue
        if name not in cur:
            rows.append(Comparison(name, base[name][0], float("nan"), float("nan"), base[name][1], "missing"))
            continue
        if name not in base:
            rows.append(Comparison(name, float("nan"), cur[name][0], float("nan"), cur[name][1], "new"))
            continue
        (tb, bound), (tc, _) = base[name], cur[name]
        factor = tc / tb
        if normalise == "probe" and yardsticks.get(name) == LLAMACPP and name in peer_base and name in peer_cur:
            factor /= peer_cur[name] / peer_base[name]   # the baseline chose llama.cpp doing the same work
            bound = LLAMACPP
        elif normalise == "probe":
            pb, pc = probes_for(name, bound, (base, own_base), (cur, own_cur))
            if not (pb and pc):
                raise QlabError(f"benchmark {name}: the {bound} probe ({PROBES[bound]}) is missing from the "
                                f"{'baseline' if not pb else 'current run'}; it normalises every {bound}-bound time")
            factor /= pc / pb
        limit = threshold or limits.get(name) or LIMIT_CAP
        status = "regressed" if factor > limit else "improved" if factor < 1 / limit else "ok"
        rows.append(Comparison(name, tb, tc, factor, bound, status, limit))
    return rows
