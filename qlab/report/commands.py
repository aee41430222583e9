"""`qlab report`: write the self-contained HTML report for choosing hardware.

    qlab report                                   # a default set of popular devices
    qlab report --hw rtx-3090,rtx-5090,m4-max-40c --out reports/three.html
    qlab report --vendor apple --budget 4000
    qlab report --all                             # every device, plus profiles/ and $QLAB_HOME/profiles

Light at import (no matplotlib, jinja2 or predictor): the work happens in `run`.
`qlab profile --report` calls `write_report(path, profiles=[profile], ...)` from `qlab.report.build`.
"""

from __future__ import annotations

import argparse

DEFAULT_OUT = "reports/qlab-report.html"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="write the HTML report: fit, speed per quant and context, price, measured vs predicted",
        description="Write one self-contained HTML report (figures inline, no network, no JavaScript) for the chosen "
                    "devices: best setup per context, fit matrix, decode and prefill speed, tok/s per dollar and per "
                    "watt, multi-GPU options, measured profiles, and how the numbers were made.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--hw", metavar="IDS", help="comma-separated device ids or names (see `qlab hw list`)")
    which.add_argument("--vendor", metavar="V", help="every device of one vendor: nvidia, amd, apple, intel")
    which.add_argument("--all", dest="all_devices", action="store_true", help="every device in the hardware database")
    p.add_argument("--model", default="qwen3.6-27b", help="model id (default: qwen3.6-27b)")
    p.add_argument("--profiles", metavar="DIR", help="directory of measured profiles (*.json) to include "
                                                    "(default with --all: this machine's profiles in profiles/ and "
                                                    "$QLAB_HOME/profiles)")
    p.add_argument("--no-profiles", action="store_true", help="with --all: leave the default profile directories out")
    p.add_argument("--budget", metavar="USD", type=float, help="grey devices and setups above this price (or unpriced)")
    p.add_argument("--out", metavar="FILE", default=DEFAULT_OUT, help=f"output HTML file (default: {DEFAULT_OUT})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qlab.report.build import write_report
    from qlab.report.select import load_profiles_dir

    hw_ids = args.hw.split(",") if args.hw is not None else None
    if args.profiles:
        profiles = load_profiles_dir(args.profiles, check_machine=True)
    elif args.all_devices and not args.no_profiles:
        from qlab.report.select import default_profiles

        profiles, foreign = default_profiles()  # what this machine measured, here or in $QLAB_HOME
        if foreign:
            import sys

            print(f"left out {len(foreign)} profile(s) measured on another machine (name them with --profiles "
                  f"to see why): {', '.join(foreign)}", file=sys.stderr)
    else:
        profiles = []
    path = write_report(args.out, hw_ids=hw_ids, vendor=args.vendor, all_devices=args.all_devices, model=args.model,
                        profiles=profiles, budget_usd=args.budget)
    print(f"wrote {path}")
    return 0
