"""`qlab fleet profile|report`: profile many machines on a Ray cluster, then compare them in one report.

    qlab fleet profile --address auto --quick --out profiles/fleet-lab
    qlab fleet report --profiles profiles/fleet-lab
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qlab.validate import output_dir, output_file


def register(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="profile many machines on a Ray cluster and compare them",
                           description="Run the same `qlab profile` on every node (or GPU) of a Ray cluster and "
                                       "compare the measured profiles in one report. Needs Ray: "
                                       "pip install -e '.[fleet]'.")
    fsub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND")
    p = fsub.add_parser("profile", help="one `qlab profile` per node or GPU, collected into --out",
                        description="The `qlab profile` flags (--gpu, --quick, --full, --quants, --contexts, "
                                    "--budget, --threads) are passed to every node.")
    from qlab.fleet.task import profile_actions

    for action in profile_actions():  # the profile command's own options, so the two never drift apart
        p._add_action(action)
    p.add_argument("--address", default="auto",
                   help="auto (RAY_ADDRESS or a `ray start` on this machine), local (a one-node Ray started "
                        "here), ray://HOST:10001 (Ray Client) or HOST:6379 (the head node)")
    p.add_argument("--nodes", default="all", help="all (default), or a node label (value or key=value), "
                                                  "a custom resource name, or a host name")
    p.add_argument("--out", default=None, type=output_dir,
                   help="folder for the profiles and fleet.json (default profiles/fleet-<date>)")
    p.add_argument("--resume", action="store_true", help="re-run only the slots of --out without a complete profile")
    p.add_argument("--retries", type=int, default=1, help="re-submissions after a crash on a live node (default 1)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up on a slot after this long")
    p.set_defaults(func=run_profile_cmd)
    r = fsub.add_parser("report", help="compare the profiles of a fleet run in one HTML report")
    r.add_argument("--profiles", required=True, help="the fleet's --out folder (or any folder of profile JSONs)")
    r.add_argument("--out", default=None, type=output_file, help="HTML file (default <profiles>/fleet-report.html)")
    r.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a summary")
    r.set_defaults(func=run_report_cmd)
    fleet.set_defaults(func=lambda args: (fleet.print_help(), 2)[1])


def _profile_device(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a in ("--device", "--gpu") and i + 1 < len(argv):  # profile's option, and its old name
            return argv[i + 1]
        if a.startswith(("--device=", "--gpu=")):
            return a.split("=", 1)[1]
    return "auto"


def run_profile_cmd(args) -> int:
    from datetime import datetime, timezone

    from qlab.errors import QlabError
    from qlab.fleet.driver import FleetOptions, run_fleet

    if args.retries < 0:
        raise QlabError(f"--retries {args.retries}: expected 0 or more")
    if args.timeout is not None and not args.timeout > 0:
        raise QlabError(f"--timeout {args.timeout}: expected a positive number of seconds")
    out = Path(args.out or f"profiles/fleet-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
    if out.exists() and not out.is_dir():
        raise QlabError(f"--out {out}: exists and is not a directory")
    from qlab.fleet.task import profile_argv_from

    argv = profile_argv_from(args)
    opts = FleetOptions(address=args.address, profile_argv=argv, out=out, nodes=args.nodes, resume=args.resume,
                        retries=args.retries, timeout_s=args.timeout, device=_profile_device(argv))
    try:
        doc = run_fleet(opts, emit=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"fleet: interrupted; continue with: qlab fleet profile --resume --out {out} {' '.join(argv)}")
        return 130
    bad = {k: s for k, s in doc["slots"].items() if s.get("status") != "done"}
    print(f"fleet: {len(doc['slots']) - len(bad)} of {len(doc['slots'])} profiles in {out}; "
          f"report: qlab fleet report --profiles {out}")
    if bad:
        listed = ", ".join(f"{k} ({s.get('status')})" for k, s in bad.items())
        print(f"fleet: not complete: {listed}; "
              f"continue with: qlab fleet profile --resume --out {out} {' '.join(argv)}")
        return 1
    return 0


def run_report_cmd(args) -> int:
    import json

    from qlab.fleet.report import compare_fleet, load_fleet, write_fleet_report

    fleet = load_fleet(Path(args.profiles))
    comparison = compare_fleet(fleet)
    if args.json:
        print(json.dumps(comparison, indent=1))
        return 0
    out = Path(args.out) if args.out else Path(args.profiles) / "fleet-report.html"
    write_fleet_report(out, comparison)
    n = len(comparison["machines"])
    print(f"fleet report of {n} machine(s) ({len(comparison['failed'])} failed or lost) written to {out}")
    return 0
