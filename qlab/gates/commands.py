"""`qlab bench gate`: the regression gates — timing (pytest-benchmark, normalised within each run),
the AOT compile report and the golden predictions."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from qlab.validate import output_file

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "benchmarks" / "baseline" / "cpu-host.json"
# Set from the run-to-run spread measured on the 2-core CI machine (see README: "Regression gates").
DEFAULT_THRESHOLD = 1.6
CONFIRM_RERUNS = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="regression gates: benchmark times vs a baseline, compile report, golden predictions",
                       description="Run the benchmark suites and compare with a pytest-benchmark baseline, each "
                                   "benchmark normalised by a reference from the same run; check the AOT compile report "
                                   "and the golden predictions against their snapshots. Exit 1 on a regression.")
    p.add_argument("--baseline", default=str(DEFAULT_BASELINE), help="pytest-benchmark JSON to compare against")
    p.add_argument("--current", default=None, help="compare this saved run instead of running the suites")
    p.add_argument("--suites", default=None, help="comma-separated benchmark files (default: qlab's own suites)")
    p.add_argument("-k", dest="keyword", default=None, help="only benchmarks matching this pytest -k expression")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"fail when a benchmark is this factor slower (default {DEFAULT_THRESHOLD})")
    p.add_argument("--normalise", choices=("median", "probe", "none"), default="median",
                   help="reference for each run: the suite's median ratio (default), the in-run probes, or none")
    p.add_argument("--no-confirm", action="store_true", help="fail on the first run (no re-run of suspects)")
    p.add_argument("--save", default=None, type=output_file,
                   help="also write the current run's JSON here (e.g. a new baseline)")
    p.add_argument("--only", default="timing,compile,golden", help="which gates: timing,compile,golden")
    p.add_argument("--update-snapshots", action="store_true", help="rewrite the compile and golden snapshots")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from qlab.errors import QlabError

    console = Console()
    gates = {g.strip() for g in args.only.split(",") if g.strip()}
    unknown_gates = gates - {"timing", "compile", "golden"}
    if unknown_gates:
        raise QlabError(f"--only {args.only!r}: unknown gate(s) {', '.join(sorted(unknown_gates))}; "
                        "expected timing, compile, golden")
    if args.threshold <= 1.0:
        raise QlabError(f"--threshold {args.threshold:g}: expected a factor > 1 (e.g. 1.5)")
    failed = False
    if "timing" in gates:
        failed |= _timing_gate(args, console)
    for kind in ("compile", "golden"):
        if kind in gates:
            failed |= _snapshot_gate(kind, args.update_snapshots, console)
    console.print("[red]gate: FAILED[/red]" if failed else "[green]gate: passed[/green]")
    return 1 if failed else 0


def _timing_gate(args, console) -> bool:
    import shutil

    from rich.table import Table

    from qlab.gates.compare import compare, load_run
    from qlab.gates.run import default_suites, run_suites, temp_json

    baseline = load_run(args.baseline)
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
        # A regression must show in every run: re-run only the suspects and keep each one's best factor, so a
        # load spike on a shared machine does not fail the gate but a real slowdown still does.
        suspects = [r.name for r in rows if r.status == "regressed"]
        if not suspects:
            break
        console.print(f"re-running {len(suspects)} suspect benchmark(s) to confirm ({attempt + 1}/{CONFIRM_RERUNS})")
        again = load_run(run_suites(suspects, temp_json()))
        rerun = {b.get("fullname") or b["name"]: b for b in again["benchmarks"]}
        merged = dict(current, benchmarks=[rerun.get(b.get("fullname") or b["name"], b) for b in current["benchmarks"]])
        confirm = {r.name: r for r in compare(baseline, merged, args.threshold, normalise=args.normalise)}
        rows = [confirm[r.name] if r.name in confirm and confirm[r.name].factor < r.factor else r for r in rows]
    t = Table(title=f"timing gate vs {args.baseline} (threshold ×{args.threshold:g}"
                    f", normalised: {args.normalise})")
    for c in ("benchmark", "bound", "baseline", "current", "factor", "limit", "status"):
        t.add_column(c)
    for r in rows:
        colour = {"regressed": "red", "improved": "green"}.get(r.status, "")
        fmt = (lambda s: "-" if math.isnan(s) else f"{s * 1e3:.3f} ms")
        t.add_row(r.name.split("::")[-1], r.bound, fmt(r.baseline_s), fmt(r.current_s),
                  "-" if math.isnan(r.factor) else f"×{r.factor:.2f}", "-" if math.isnan(r.threshold) else f"×{r.threshold:.2f}",
                  f"[{colour}]{r.status}[/{colour}]" if colour else r.status)
    console.print(t)
    bad = [r for r in rows if r.status == "regressed"]
    for r in bad:
        console.print(f"[red]regressed: {r.name} is ×{r.factor:.2f} slower than the baseline "
                      f"(threshold ×{r.threshold:.2f})[/red]")
    return bool(bad)


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
