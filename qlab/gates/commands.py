"""`qlab bench gate`: the regression gates — timing (the product paths against the baseline of this machine
class, normalised by in-run probes), peer (qlab's decode against llama.cpp's, side by side), the AOT compile
report and the golden predictions."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from qlab.gates.peer import PAIRS   # light: the peer gate's constants (its measuring runs a subprocess)
from qlab.validate import float_arg, int_arg, output_file

GATES = ("timing", "peer", "compile", "golden")
CONFIRM_RERUNS = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="regression gates: product-path times and decode vs llama.cpp against this "
                                    "machine class's baseline, compile report, golden predictions",
                       description="Run the product-path benchmarks and compare with the baseline of this machine "
                                   "class (benchmarks/baseline/CLASS.json), each normalised by an in-run probe; "
                                   "decode a GGUF slice with qlab and llama.cpp side by side and compare the ratio "
                                   "with the stored one; check the AOT compile report and the golden predictions. "
                                   "Exit 1 when a gate fails, 2 on bad input, 3 when a benchmark itself crashes.")
    p.add_argument("--class", dest="machine_class", default=None,
                   help="machine class whose baseline applies (default: this CPU's, e.g. x86_64-avx512)")
    p.add_argument("--baseline", default=None, help="pytest-benchmark JSON to compare against (default: the class's)")
    p.add_argument("--current", default=None, help="compare this saved run instead of running the suites")
    p.add_argument("--suites", default=None, help="comma-separated benchmark files (default: the product paths)")
    p.add_argument("-k", dest="keyword", default=None, help="only benchmarks matching this pytest -k expression")
    p.add_argument("--threshold", type=float_arg(minimum=1.0, min_exclusive=True), default=None,
                   help="one limit for every benchmark, a factor > 1 (default: each benchmark's own, from its "
                        "measured spread)")
    p.add_argument("--normalise", choices=("probe", "none"), default="probe",
                   help="divide by the in-run probe of each benchmark's kind (default), or compare raw times")
    p.add_argument("--no-confirm", action="store_true", help="fail on the first run (no re-run of suspects)")
    p.add_argument("--save", default=None, type=output_file, help="also write the current run's JSON here")
    p.add_argument("--pairs", type=int_arg(minimum=1, maximum=20), default=PAIRS,
                   help=f"alternating qlab/llama.cpp process pairs per quant in the peer gate (default {PAIRS})")
    p.add_argument("--peer-json", default=None, help=argparse.SUPPRESS)   # tests: a saved peer measurement
    p.add_argument("--only", default=",".join(GATES), help=f"which gates: {','.join(GATES)}")
    p.add_argument("--update-snapshots", action="store_true", help="rewrite the compile and golden snapshots")
    p.set_defaults(func=run)


def selected_gates(only: str) -> list[str]:
    from qlab.errors import QlabError

    gates = [g.strip() for g in only.split(",") if g.strip()]
    if not gates:
        raise QlabError(f"--only {only!r}: no gate selected; expected one or more of {', '.join(GATES)}")
    unknown = sorted(set(gates) - set(GATES))
    if unknown:
        raise QlabError(f"--only {only!r}: unknown gate(s) {', '.join(unknown)}; expected {', '.join(GATES)}")
    return [g for g in GATES if g in gates]


def run(args) -> int:
    from rich.console import Console

    from qlab.gates.machine import machine_class

    console = Console()
    gates = selected_gates(args.only)
    cls = args.machine_class or machine_class()
    failed = False
    if "timing" in gates:
        failed |= _timing_gate(args, cls, console)
    if "peer" in gates:
        failed |= _peer_gate(args, cls, console)
    for kind in ("compile", "golden"):
        if kind in gates:
            failed |= _snapshot_gate(kind, args.update_snapshots, console)
    console.print("[red]gate: FAILED[/red]" if failed else "[green]gate: passed[/green]")
    return 1 if failed else 0


def provisional(doc: dict | None, gate: str = "timing") -> bool:
    """Whether `gate` ("timing" or "peer") of a baseline was measured too noisily to bind (README: most benchmarks
    too noisy; a peer ratio spread over more than the 15 % the peer gate allows): shown, not enforced.
    `qlab_baseline.provisional` names the gates (a list), or is true for both."""
    flag = ((doc or {}).get("qlab_baseline") or {}).get("provisional")
    return gate in flag if isinstance(flag, list) else bool(flag)


def too_noisy_here(doc: dict | None) -> set[str]:
    """The benchmarks a baseline's rebuild found too noisy to gate at 1.5x: shown, never failing the gate."""
    return set(((doc or {}).get("qlab_baseline") or {}).get("too_noisy") or [])


def _say_provisional(console, what: str, cls: str) -> None:
    spread = "its benchmarks" if what == "timing" else "its qlab/llama.cpp ratios"
    console.print(f"[yellow]{what}: the {cls} baseline is PROVISIONAL for this gate ({spread} spread too much "
                  "between the rebuild's runs to tell a 1.5x slowdown from noise): advisory until they are steadier "
                  "and `python benchmarks/rebuild_baseline.py` binds them[/yellow]")


def _timing_baseline(args, cls: str, console) -> tuple[dict, str, bool]:
    """(baseline, its label, binding?). Without a baseline for this class, or with a provisional one, the
    comparison is shown, not gated."""
    from qlab.errors import QlabError
    from qlab.gates.baseline import baseline_path, load_class, stored_classes
    from qlab.gates.compare import load_run
    from qlab.gates.machine import cpu_model

    if args.baseline:
        doc = load_run(args.baseline)
        return doc, args.baseline, not provisional(doc, "timing")
    doc = load_class(cls)
    if doc is not None:
        if provisional(doc, "timing"):
            _say_provisional(console, "timing", cls)
        measured_on, here = (doc.get("qlab_baseline") or {}).get("cpu_model"), cpu_model()
        if measured_on and here and measured_on != here:
            console.print(f"[yellow]timing: the {cls} baseline was measured on a {measured_on}, this is a {here}: "
                          "compared for information only (another microarchitecture of the class runs the kernels "
                          "and the yardsticks at other ratios); record it with `python benchmarks/rebuild_baseline.py"
                          " --out FILE` to gate it[/yellow]")
            return doc, f"{cls} baseline (other CPU model: advisory)", False
        return doc, f"{cls} baseline", not provisional(doc, "timing")
    others = stored_classes()
    if not others:
        raise QlabError(f"no timing baseline for machine class {cls} nor any other; record one with "
                        "`python benchmarks/rebuild_baseline.py`")
    console.print(f"[yellow]timing: no baseline for machine class {cls}: compared with {others[0]} for "
                  f"information only (fallback rule, README \"Regression gates\"); the peer gate still applies. "
                  f"Record this class with `python benchmarks/rebuild_baseline.py`.[/yellow]")
    return load_run(baseline_path(others[0])), f"{others[0]} baseline (advisory)", False


def _timing_gate(args, cls: str, console) -> bool:
    import shutil

    from rich.table import Table

    from qlab.gates.compare import compare, load_run
    from qlab.gates.run import default_suites, run_suites, temp_json

    baseline, label, binding = _timing_baseline(args, cls, console)
    if args.current:
        current_path = Path(args.current)
    else:
        suites = args.suites.split(",") if args.suites else default_suites()
        console.print(f"running {len(suites)} benchmark suite(s): {', '.join(suites)}")
        current_path = run_suites(suites, temp_json(), keyword=args.keyword)
    current = load_run(current_path)
    if args.save:
        shutil.copyfile(current_path, args.save)
    rows = compare(baseline, current, args.threshold, normalise=args.normalise)
    for attempt in range(0 if args.current or args.no_confirm else CONFIRM_RERUNS):
        # A regression must show in every run: re-run only the suspects (with the probes) and keep each one's
        # best factor, so a load spike on a shared machine does not fail the gate but a real slowdown does.
        suspects = [r.name for r in rows if r.status == "regressed"]
        if not suspects:
            break
        console.print(f"re-running {len(suspects)} suspect benchmark(s) to confirm ({attempt + 1}/{CONFIRM_RERUNS})")
        again = load_run(run_suites(suspects, temp_json()))
        confirm = {r.name: r for r in compare(baseline, again, args.threshold, normalise=args.normalise)}
        rows = [confirm[r.name] if r.name in confirm and confirm[r.name].factor < r.factor else r for r in rows]
    t = Table(title=f"timing gate vs the {label} (normalised: {args.normalise}; time: fastest sample)")
    t.add_column("benchmark", overflow="fold", min_width=22)
    for c in ("bound", "baseline", "current", "factor", "limit", "status"):
        t.add_column(c)
    for r in rows:
        colour = {"regressed": "red", "improved": "green"}.get(r.status, "")
        fmt = (lambda s: "-" if math.isnan(s) else f"{s * 1e3:.3f} ms")
        t.add_row(r.name.split("::")[-1].removeprefix("test_"), r.bound, fmt(r.baseline_s), fmt(r.current_s),
                  "-" if math.isnan(r.factor) else f"×{r.factor:.2f}",
                  "-" if math.isnan(r.threshold) else f"×{r.threshold:.2f}",
                  f"[{colour}]{r.status}[/{colour}]" if colour else r.status)
    console.print(t)
    noisy = too_noisy_here(baseline)
    bad = [r for r in rows if r.status in ("regressed", "missing") and r.name.split("::")[-1] not in noisy]
    for r in rows:
        if r.status == "regressed" and r.name.split("::")[-1] in noisy:
            console.print(f"[yellow]not gated: {r.name} is ×{r.factor:.2f} but its spread in the baseline's runs "
                          "was too wide to tell a 1.5x slowdown from noise (README \"Regression gates\")[/yellow]")
    for r in bad:
        what = (f"is ×{r.factor:.2f} slower than the baseline (limit ×{r.threshold:.2f})" if r.status == "regressed"
                else "is in the baseline but did not run")
        console.print(f"[red]{r.status}: {r.name} {what}[/red]")
    if bad and not binding:
        console.print("[yellow]timing: advisory only (no binding baseline for this machine class)[/yellow]")
        return False
    return bool(bad)


def _peer_gate(args, cls: str, console) -> bool:
    import json

    from rich.table import Table

    from qlab.gates import peer
    from qlab.gates.baseline import load_class, peer_ratios, stored_classes

    doc = load_class(cls)
    stored = peer_ratios(doc) if doc else None
    others = [peer_ratios(load_class(c)) for c in stored_classes()]
    if args.peer_json:
        measured = json.loads(Path(args.peer_json).read_text())
    else:
        console.print(f"peer: decoding the gate's slice with qlab and llama.cpp, {args.pairs} alternating pair(s) "
                      f"per quant ({', '.join(peer.QUANTS)})")
        measured = peer.measure(pairs=args.pairs)
    results = peer.judge(measured, stored, others)
    for attempt in range(0 if args.peer_json or args.no_confirm else CONFIRM_RERUNS):
        # As the timing gate's suspects: a drop must show in every measurement, so a moment of load on a shared
        # machine does not fail the gate; each quant keeps its best ratio.
        suspects = tuple(r.quant for r in results if r.failed)
        if not suspects:
            break
        console.print(f"peer: re-measuring {', '.join(suspects)} to confirm ({attempt + 1}/{CONFIRM_RERUNS})")
        again = peer.measure(quants=suspects, pairs=args.pairs)
        measured |= {q: m for q, m in again.items() if m["ratio"] > measured[q]["ratio"]}
        results = peer.judge(measured, stored, others)
    binding = not provisional(doc, "peer")
    if not binding:
        _say_provisional(console, "peer", cls)
    if any(r.rule == "fallback" for r in results):
        console.print(f"[yellow]peer: no stored qlab/llama.cpp ratio for machine class {cls}: fallback rule, ratio "
                      f">= {peer.FALLBACK_SHARE:g} x the lowest stored for any class (README \"Regression gates\"). "
                      f"Record this class with `python benchmarks/rebuild_baseline.py`.[/yellow]")
    t = Table(title=f"peer gate: qlab/llama.cpp decode ratio on the {peer.WIDTH_SCALE}x-narrow 4-layer slice "
                    f"({cls}; fail below the floor)")
    for c in ("quant", "qlab ms/tok", "llama.cpp ms/tok", "ratio", "stored", "floor", "rule", "status"):
        t.add_column(c)
    for r in results:
        t.add_row(r.quant, f"{r.qlab_ms:.2f}", f"{r.llama_ms:.2f}", f"{r.ratio:.3f}",
                  "-" if r.stored is None else f"{r.stored:.3f}", f"{r.floor:.3f}", r.rule,
                  "[red]regressed[/red]" if r.failed else "ok")
    console.print(t)
    for r in results:
        if r.failed:
            console.print(f"[red]regressed: qlab decode of the {r.quant} slice is {r.ratio:.3f}x llama.cpp's, below "
                          f"the floor {r.floor:.3f} ({r.rule} rule)[/red]")
    if any(r.failed for r in results) and not binding:
        console.print("[yellow]peer: advisory only (provisional baseline)[/yellow]")
        return False
    return any(r.failed for r in results)


def _snapshot_gate(kind: str, update: bool, console) -> bool:
    from qlab.gates.snapshots import check

    label = {"compile": "AOT compile report", "golden": "golden predictions"}[kind]
    lines = check(kind, update=update)
    if update:
        console.print(f"{label}: snapshot rewritten")
        return False
    if lines:
        console.print(f"[red]{label}: {len(lines)} difference(s) from the snapshot:[/red]")
        for line in lines[:50]:
            console.print("  " + line)
        return True
    console.print(f"{label}: matches the snapshot")
    return False
