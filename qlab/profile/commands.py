"""`qlab profile`: measure this machine end to end and predict from what was measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from qlab.validate import float_arg, int_arg, output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure this machine (bandwidth, kernels, decode loop) and predict from it",
                       description="Detect the device, run microbenchmarks, tune the kernels at Qwen3.6-27B shapes, "
                                   "run the decode loop at each quant and context, and write a profile (JSON) "
                                   "with calibrated predictions. Safe to interrupt: --resume continues.")
    # --device as in `qlab tune` and `qlab bench`; --gpu, its first name, still works
    p.add_argument("--device", "--gpu", dest="gpu", default="auto", metavar="DEVICE",
                   help="auto (default), cpu, cuda, mps, or a hwdb id that must be this device (alias: --gpu)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="a 4-layer slice, one context, short tuning (about 5 minutes on a 2-core CPU)")
    mode.add_argument("--full", action="store_const", dest="mode", const="full",
                      help="the whole model where it fits, three contexts, long tuning")
    p.add_argument("--quants", default="Q4_K_M,Q8_0", help="comma-separated quant ids (default Q4_K_M,Q8_0)")
    p.add_argument("--contexts", default=None, help="comma-separated context lengths (default by mode)")
    p.add_argument("--model", default="qwen3.6-27b", help=argparse.SUPPRESS)
    p.add_argument("--out", default="profiles", type=output_dir,
                   help="directory for the profile JSON (default profiles/)")
    p.add_argument("--report", action="store_true", help="also write an HTML report including this profile")
    p.add_argument("--budget", type=float_arg(minimum=0, min_exclusive=True), default=None, metavar="SECONDS",
                   help="time budget for the whole run")
    p.add_argument("--threads", type=int_arg(minimum=1), default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--resume", default=None, metavar="FILE", help="continue an interrupted profile")
    p.set_defaults(func=run, mode="default")


def parse_options(args):
    from qlab.errors import QlabError
    from qlab.profile.options import ProfileOptions

    quants = [q.strip().upper() for q in args.quants.split(",") if q.strip()]
    if not quants:  # an empty selection ran a profile of nothing and exited 0
        raise QlabError(f"--quants {args.quants!r}: expected one or more quant ids, e.g. Q4_K_M,Q8_0")
    try:
        from qlab.models.quant_mix import QUANT_IDS  # validated against the predictor's list when present
    except ImportError:
        QUANT_IDS = None
    if QUANT_IDS is not None:
        from qlab.errors import unknown

        for q in quants:
            if q not in {x.upper() for x in QUANT_IDS}:
                raise unknown("quant", q, QUANT_IDS)
    contexts = None
    if args.contexts is not None:
        try:
            contexts = [int(c.strip().lower().replace("k", "")) * (1024 if "k" in c.lower() else 1)
                        for c in args.contexts.split(",") if c.strip()]
        except ValueError:
            raise QlabError(f"--contexts {args.contexts!r}: expected comma-separated token counts, e.g. 4096,32768") from None
        if not contexts:
            raise QlabError(f"--contexts {args.contexts!r}: expected one or more token counts, e.g. 4096,32768")
        if any(c < 0 for c in contexts):
            raise QlabError(f"--contexts {args.contexts!r}: context lengths must be ≥ 0")
    if args.budget is not None and args.budget <= 0:
        raise QlabError(f"--budget {args.budget:g}: expected a positive number of seconds")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise QlabError(f"--out {out}: exists and is not a directory")
    if args.resume and not Path(args.resume).is_file():
        raise QlabError(f"--resume {args.resume}: no such profile file")
    return ProfileOptions(gpu=args.gpu, mode=args.mode, quants=quants, contexts=contexts, out=Path(args.out),
                          budget_s=args.budget, report=args.report,
                          resume=Path(args.resume) if args.resume else None, model=args.model, threads=args.threads)


def resume_flags(opts) -> str:
    """The options a `--resume` must repeat (the runner refuses other ones)."""
    flags = [f"--{opts.mode}"] if opts.mode != "default" else []
    flags.append(f"--quants {','.join(opts.quants)}")
    flags.append(f"--contexts {','.join(map(str, opts.contexts))}")
    return " ".join(flags)


def run(args) -> int:
    opts = parse_options(args)
    from rich.console import Console
    from rich.markup import escape

    from qlab.profile.runner import ProfileInterrupted, run_profile
    from qlab.profile.summary import print_summary

    console = Console()
    try:
        doc, path = run_profile(opts, Console(stderr=True))
    except ProfileInterrupted as e:
        import sys

        if e.path is None:
            print("interrupted before the device was detected: nothing was saved", file=sys.stderr)
        else:
            print(f"interrupted: the finished stages are saved in {e.path}; continue with "
                  f"`qlab profile {resume_flags(opts)} --resume {e.path}`", file=sys.stderr)
        return 130
    print_summary(doc, console)
    console.print(f"profile written to [bold]{escape(str(path))}[/bold]")  # a path is not markup
    if opts.report:
        from qlab.report.build import write_report

        out = Path(opts.out).parent / "reports" / f"{path.stem}.html" if opts.out else Path(f"{path.stem}.html")
        write_report(out, hw_ids=None, vendor=None, all_devices=False, model=opts.model, profiles=[doc])
        console.print(f"report written to [bold]{escape(str(out))}[/bold]")
    failed = [n for n, s in doc["stages"].items() if s["status"] == "failed"]
    return 1 if failed else 0
