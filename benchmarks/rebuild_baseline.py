"""Rebuild the gate's baseline for this machine's class: measure every product-path benchmark's spread over
repeated runs, derive each limit from it by the fixed rule (qlab.gates.compare.limit_from_spread), and measure
the qlab/llama.cpp decode ratio of the peer gate. Run it on a quiet machine; it prints how long it took.

    python benchmarks/rebuild_baseline.py [--runs 5] [--peer-runs 3] [--pairs 3] [--out FILE]
                                          [--peer-only | --timing-only]

Writes benchmarks/baseline/<class>.json (qlab.gates.baseline), with a gate marked provisional (advisory) when the
machine was too noisy for it: the timing gate when most benchmarks are too noisy, the peer gate when a peer ratio
spread wider than the 15 % it allows. Per benchmark: the time is the median over runs of
its fastest sample, rescaled to the median yardstick; `extra_info` gets `yardstick` (its probe, or llama.cpp doing
the same work: whichever its runs spread least against), `normalised_runs` (each run's time over that yardstick,
divided by their median), `spread` (max / min of those), `spreads` (against each yardstick) and `limit`. A
benchmark where a 1.5x slowdown could hide in its spread (1.5 / spread <= limit) is listed as too noisy: redesign
it (more work per sample), do not loosen it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qlab.gates import peer  # noqa: E402
from qlab.gates.baseline import baseline_path  # noqa: E402
from qlab.gates.compare import (LIMIT_CAP, LIMIT_FLOOR, LIMIT_MARGIN, LLAMACPP, PROBES, STAT,  # noqa: E402
                                is_probe, key, limit_from_spread, load_run, own_peers, own_probes, probe_time,
                                times, too_noisy)
from qlab.gates.machine import cpu_model, machine_class  # noqa: E402
from qlab.gates.run import default_suites, run_suites, temp_json  # noqa: E402
from qlab.io import write_json_atomic  # noqa: E402


def timing_runs(n: int) -> list[dict]:
    runs = []
    for i in range(n):
        t0 = time.time()
        runs.append(load_run(run_suites(default_suites(), temp_json())))
        print(f"# timing run {i + 1}/{n}: {time.time() - t0:.0f} s", flush=True)
    return runs


def build_timing(runs: list[dict]) -> tuple[dict, list[dict]]:
    """The baseline document (the last run's JSON, times replaced) and one summary row per benchmark. Each run's
    time is divided by each yardstick the gate can use: the probe of its kind (the benchmark's own, sampled
    between its rounds, where every run has one, else the run's probe of that kind, as
    qlab.gates.compare.probes_for) and, where every run timed it, llama.cpp doing the same work. The yardstick
    its runs spread least against is stored (`yardstick`) with that spread and the limit the rule gives it."""
    per_run = [(times(r), own_probes(r), own_peers(r)) for r in runs]
    probes = {b: statistics.median(probe_time(t, b) for t, _, _ in per_run) for b in PROBES
              if all(probe_time(t, b) for t, _, _ in per_run)}
    doc, rows = json.loads(json.dumps(runs[-1])), []
    for b in doc["benchmarks"]:
        name = key(b)
        bound = per_run[-1][0][name][1]
        if is_probe(name):
            t = statistics.median(pt[name][0] for pt, _, _ in per_run)
            b["stats"][STAT] = b["stats"]["median"] = t
            continue
        present = [run for run in per_run if name in run[0]]
        # its own probe only where every run has one (as the gate: own probes where both sides have them)
        own = all(name in run[1] for run in present)
        candidates = {"probe": [(run[0][name][0], run[1][name] if own else probe_time(run[0], bound))
                                for run in present]}
        if all(name in run[2] for run in present):
            candidates[LLAMACPP] = [(run[0][name][0], run[2][name]) for run in present]
        spreads = {k: _spread([t / y for t, y in v]) for k, v in candidates.items()}
        yardstick = min(spreads, key=spreads.get)
        pairs = candidates[yardstick]
        norm = [t / y for t, y in pairs]
        mid, spread = statistics.median(norm), spreads[yardstick]
        limit = limit_from_spread(spread)
        yard_mid = statistics.median(y for _, y in pairs) if (own or yardstick == LLAMACPP) else probes[bound]
        b["stats"][STAT] = b["stats"]["median"] = mid * yard_mid
        extra = b["extra_info"]
        if own:
            extra["probe_min_ms"] = round(statistics.median(y for _, y in candidates["probe"]) * 1e3, 4)
        if LLAMACPP in candidates:
            extra["peer_min_ms"] = round(statistics.median(y for _, y in candidates[LLAMACPP]) * 1e3, 4)
        extra.update(yardstick=yardstick, normalised_runs=[round(v / mid, 4) for v in norm],
                     spread=round(spread, 4), limit=round(limit, 4),
                     spreads={k: round(v, 4) for k, v in spreads.items()})
        rows.append({"name": name.split("::")[-1], "bound": bound, "yardstick": yardstick, "spread": spread,
                     "spreads": spreads, "limit": limit, "too_noisy": too_noisy(spread)})
    return doc, rows


def _spread(values: list[float]) -> float:
    return max(values) / min(values)


def peer_runs(n: int, pairs: int) -> dict:
    measured = []
    for i in range(n):
        t0 = time.time()
        measured.append(peer.measure(pairs=pairs))
        print(f"# peer run {i + 1}/{n}: {time.time() - t0:.0f} s: "
              + ", ".join(f"{q} {m['ratio']:.3f}" for q, m in measured[-1].items()), flush=True)
    out = {}
    for q in measured[0]:
        ratios = [m[q]["ratio"] for m in measured]
        out[q] = {"ratio": round(statistics.median(ratios), 4), "runs": [round(r, 4) for r in ratios],
                  "spread": round(max(ratios) / min(ratios), 4),
                  "qlab_ms": [round(m[q]["qlab_ms"], 3) for m in measured],
                  "llama_ms": [round(m[q]["llama_ms"], 3) for m in measured]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timing runs (the spread is measured over them)")
    ap.add_argument("--peer-runs", type=int, default=3, help="peer-gate measurements (each --pairs pairs)")
    ap.add_argument("--pairs", type=int, default=peer.PAIRS, help=f"process pairs per peer measurement "
                                                                   f"(default {peer.PAIRS}, as the gate)")
    ap.add_argument("--out", default=None, help="default: benchmarks/baseline/<this machine's class>.json")
    ap.add_argument("--note", default="", help="how quiet the machine was, for the record")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--peer-only", action="store_true",
                      help="re-measure only the peer ratios, keeping the stored timing baseline of this class")
    only.add_argument("--timing-only", action="store_true",
                      help="re-measure only the timing baseline (after adding a benchmark), keeping the stored peer "
                           "ratios of this class")
    a = ap.parse_args()
    if a.runs < 2 or a.peer_runs < 1:
        raise SystemExit("--runs must be >= 2 (a spread needs two runs) and --peer-runs >= 1")
    t0, cls = time.time(), machine_class()
    out = Path(a.out) if a.out else baseline_path(cls)
    if a.peer_only:
        return peer_only(out, a)
    kept = stored_peer(out) if a.timing_only else None
    doc, rows = build_timing(timing_runs(a.runs))
    doc["qlab_baseline"] = {
        "class": cls, "cpu": (doc.get("machine_info") or {}).get("cpu", {}).get("brand_raw", platform.processor()),
        "cpu_model": cpu_model(),
        "runs": a.runs, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "note": a.note,
        "rule": f"limit = min({LIMIT_CAP}, max({LIMIT_FLOOR}, {LIMIT_MARGIN} x spread)); spread = max/min over "
                f"{a.runs} runs of the fastest sample over its in-run yardstick (its probe or llama.cpp doing the "
                "same work, whichever spreads less); too noisy where 1.5 / spread <= limit",
        "too_noisy": [r["name"] for r in rows if r["too_noisy"]],
        "peer": kept["peer"] if kept else peer_runs(a.peer_runs, a.pairs),
    }
    if kept:
        doc["qlab_baseline"].update({k: v for k, v in kept.items() if k in ("peer_measured", "peer_note")})
    # Too noisy to bind (README): most benchmarks flagged, or a peer ratio that spread more than the 15 % drop the
    # peer gate fails on. Its gates then print their verdicts without failing, until a quieter rebuild.
    doc["qlab_baseline"]["provisional"] = ((["timing"] if 2 * len(doc["qlab_baseline"]["too_noisy"]) > len(rows)
                                            else []) + (["peer"] if noisy_peer(doc) else []))
    write_json_atomic(out, doc)
    print(f"{'benchmark':32} {'bound':15} {'vs probe':>8} {'vs llama.cpp':>12} {'limit':>6}")
    for r in rows:
        sp = {k: f"x{v:.3f}" for k, v in r["spreads"].items()}
        print(f"{r['name']:32} {r['bound']:15} {sp['probe']:>8} {sp.get(LLAMACPP, '-'):>12} x{r['limit']:5.2f}"
              f"  ({r['yardstick']})" + ("  TOO NOISY to gate at x1.5: redesign" if r["too_noisy"] else ""))
    report(doc, out, cls, t0)


def noisy_peer(doc: dict) -> list[str]:
    """Quants whose peer ratio spread over the runs more than the 15 % drop the peer gate fails on."""
    return [q for q, p in doc["qlab_baseline"]["peer"].items() if p["spread"] > 1 / (1 - peer.MAX_DROP)]


def stored_peer(out: Path) -> dict:
    """The peer part of the stored baseline `out` (its ratios and when they were measured), for --timing-only."""
    if not out.exists():
        raise SystemExit(f"{out}: no stored baseline to keep the peer ratios of; run without --timing-only")
    info = load_run(out).get("qlab_baseline") or {}
    if not info.get("peer"):
        raise SystemExit(f"{out}: no stored peer ratios to keep; run without --timing-only")
    info.setdefault("peer_measured", info.get("measured"))
    return info


def peer_only(out: Path, a) -> None:
    """Re-measure the peer ratios into the stored baseline `out`, its timing part untouched."""
    if not out.exists():
        raise SystemExit(f"{out}: no stored baseline to keep the timing part of; run without --peer-only")
    t0, doc = time.time(), load_run(out)
    info = doc["qlab_baseline"]
    info["peer"] = peer_runs(a.peer_runs, a.pairs)
    info["peer_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if a.note:
        info["peer_note"] = a.note
    info["provisional"] = [g for g in info.get("provisional") or [] if g != "peer"] + \
        (["peer"] if noisy_peer(doc) else [])
    write_json_atomic(out, doc)
    report(doc, out, info["class"], t0)


def report(doc: dict, out: Path, cls: str, t0: float) -> None:
    for q, p in doc["qlab_baseline"]["peer"].items():
        print(f"peer {q}: qlab/llama.cpp {p['ratio']:.3f} (runs {p['runs']}, spread x{p['spread']:.3f})")
    why = {"timing": "most benchmarks too noisy", "peer": "a peer ratio spread > 15 %"}
    for gate in doc["qlab_baseline"]["provisional"]:
        print(f"# PROVISIONAL {gate} gate: too noisy to bind ({why[gate]}); advisory until a rebuild on a quieter "
              "machine")
    print(f"# wrote {out} ({cls}) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
