"""`qlab kernels compile-report`: registers, spills and shared memory of every Triton kernel configuration and
every CuPy (CUDA C) kernel, compiled ahead of time for each GPU architecture (no GPU needed; CuPy's need nvcc)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernels", help="kernel tools: AOT compile report")
    ksub = p.add_subparsers(dest="kernels_command", metavar="COMMAND")
    r = ksub.add_parser("compile-report", help="compile every Triton and CuPy kernel for sm_80/86/89/90/120; "
                                               "print resources")
    r.add_argument("--op", default="all", help="deltanet, attention, dequant_matmul or all (default)")
    r.add_argument("--arch", default="80,86,89,90,120", help="compute capabilities, comma-separated")
    r.add_argument("--backend", default="auto",
                   help="triton, cupy or both comma-separated (default: triton, and cupy where nvcc is installed)")
    r.add_argument("--json", action="store_true", help="print JSON rows")
    r.set_defaults(func=run_compile_report)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _parse(args) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...] | None]:
    from qlab.errors import QlabError, unknown
    from qlab.kernels.aot import BACKENDS, OPS, check_archs, nvcc_path

    ops = OPS if args.op == "all" else tuple(args.op.split(","))
    for op in ops:
        if op not in OPS:
            raise unknown("op", op, OPS)
    try:
        archs = tuple(int(a.strip().removeprefix("sm_")) for a in args.arch.split(","))
    except ValueError:
        raise QlabError(f"--arch {args.arch!r}: expected compute capabilities such as 80,86,89,90,120") from None
    try:
        archs = check_archs(archs)  # up front: an unknown arch would abort the compiler inside a worker
    except ValueError as e:
        raise QlabError(f"--arch: {e}") from None
    backends = None if args.backend == "auto" else tuple(b.strip() for b in args.backend.split(","))
    for b in backends or ():
        if b not in BACKENDS:
            raise unknown("backend", b, BACKENDS)
    if backends and "cupy" in backends and nvcc_path() is None:
        raise QlabError("--backend cupy: nvcc not found (install the CUDA toolkit, or put nvcc on PATH)")
    return ops, archs, backends


def run_compile_report(args) -> int:
    ops, archs, backends = _parse(args)
    from qlab.kernels.aot import compile_report

    rows = compile_report(ops, archs, backends=backends)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Triton and CuPy kernels compiled ahead of time (CuPy rows: cupy_*, warps = default launch)")
        for col in ("op", "kernel", "sm", "warps", "stages", "regs", "spills (B)", "shared (B)", "error"):
            table.add_column(col, justify="right" if col not in ("op", "kernel", "error") else "left")
        for r in rows:
            spill = f"[red]{r.spills}[/red]" if r.spills else "0"
            table.add_row(r.op, r.name, str(r.cc), str(r.num_warps), str(r.num_stages), str(r.regs), spill,
                          str(r.shared_bytes), r.error)
        Console().print(table)
        if not rows:
            print("no kernel declares AOT specs yet")
    bad = [r for r in rows if r.error or r.spills]
    return 1 if bad else 0
