"""`qlab selftest --device cuda|cpu`: every kernel checked against its reference on the device, the decode loop
checked, bandwidth fractions measured, a short decode slice timed; one JSON + a one-page summary. Exit 1 on any
wrong answer. On a new GPU, run this first."""

from __future__ import annotations

import argparse
import json

from qlab.validate import output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("selftest", help="check every kernel and the decode loop on a device (run first on a new GPU)",
                       description=__doc__)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="device to test (default cuda)")
    p.add_argument("-o", "--out", default=None, type=output_dir,
                   help="directory for selftest.json and summary.md (default: selftest-<device>)")
    p.add_argument("--only", default="kernels,loop,bandwidth,slice",
                   help="steps to run, comma-separated: kernels, loop, bandwidth, slice (default: all)")
    p.add_argument("--json", action="store_true", help="print the JSON record instead of the progress lines")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from qlab.errors import QlabError

    from qlab.selftest.run import STEPS

    steps = tuple(s.strip() for s in args.only.split(",") if s.strip())
    for s in steps:
        if s not in STEPS:
            raise QlabError(f"--only {s!r}: expected steps among {', '.join(STEPS)}")
    if not steps:  # an empty selection checked nothing and passed
        raise QlabError(f"--only {args.only!r}: expected one or more steps among {', '.join(STEPS)}")
    out = Path(args.out or f"selftest-{args.device}")
    if out.exists() and not out.is_dir():
        raise QlabError(f"--out {out}: exists and is not a directory")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise QlabError("--device cuda: torch sees no CUDA GPU here (use --device cpu to test the CPU paths)")
    from qlab.io import write_atomic, write_json_atomic
    from qlab.selftest.run import run_selftest
    from qlab.selftest.summary import render

    log = (lambda *a, **k: None) if args.json else (lambda msg: print(msg, flush=True))
    rec = run_selftest(args.device, log, steps)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "selftest.json", rec)
    write_atomic(out / "summary.md", render(rec))
    if args.json:
        print(json.dumps(rec, indent=1))
    else:
        verdict = "PASS" if rec["passed"] else f"FAIL ({len(rec['failures'])} mismatches)"
        print(f"selftest {verdict} in {rec['seconds']:.0f} s; wrote {out / 'selftest.json'} and {out / 'summary.md'}")
    return 0 if rec["passed"] else 1
