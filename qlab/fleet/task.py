"""The body of one fleet task: the ordinary `qlab profile` run, on whatever node Ray placed it.

It parses the same flags as `qlab profile` with the profile command's own parser, writes the profile into a
node-local temporary folder (the driver writes the fleet's copy), and returns the document.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import tempfile
import time


def profile_parser() -> argparse.ArgumentParser:
    from qlab.profile import commands

    parser = argparse.ArgumentParser(prog="qlab fleet profile", add_help=False)
    commands.register(parser.add_subparsers(dest="command"))
    return parser


# `qlab profile` flags that mean something else for a fleet (where the fleet writes, how it resumes).
FLEET_OWNED = {"help", "out", "resume", "report"}


def profile_actions() -> list[argparse.Action]:
    """The `qlab profile` options a fleet passes through to every node."""
    parser = profile_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["profile"]
    return [a for a in sub._actions if a.dest not in FLEET_OWNED]


def profile_argv_from(args: argparse.Namespace) -> list[str]:
    """The passed-through options as `qlab profile` flags, only those given a non-default value."""
    argv: list[str] = []
    for action in profile_actions():
        value = getattr(args, action.dest, action.default)
        if value == action.default or value is None:
            continue
        if isinstance(action, argparse._StoreConstAction):
            # several flags may share a dest (--quick/--full -> mode): take the one whose const it is
            if action.const == value:
                argv.append(action.option_strings[-1])
            continue
        argv += [action.option_strings[-1], str(value)]
    return argv


def parse_profile_args(profile_argv: list[str]):
    """`qlab profile` flags -> ProfileOptions, validated exactly as `qlab profile` would (QlabError if bad)."""
    from qlab.errors import QlabError
    from qlab.profile.commands import parse_options

    try:
        args = profile_parser().parse_args(["profile", *profile_argv])
    except SystemExit:
        raise QlabError(f"profile flags {' '.join(profile_argv)!r}: not valid for `qlab profile` "
                        f"(see `qlab profile --help`)") from None
    for flag in ("resume", "report"):
        if getattr(args, flag):
            raise QlabError(f"--{flag} is a `qlab fleet` option here, not a per-node profile flag")
    return parse_options(args)


def run_profile_here(profile_argv: list[str], key: str) -> dict:
    """Run one profile on this node; returns the document and where and how it ran."""
    from rich.console import Console

    from qlab import __version__
    from qlab.profile.runner import run_profile

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qlab-fleet-") as tmp:
        opts = parse_profile_args(profile_argv)
        opts.out = type(opts.out)(tmp)
        # The node's progress display would interleave in the driver's output: Ray forwards worker output.
        doc, _ = run_profile(opts, Console(file=io.StringIO(), force_terminal=False))
    gpu_ids = []
    try:
        import ray

        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # not inside a Ray worker (the tests call this directly)
        pass
    return {"key": key, "host": socket.gethostname(), "pid": os.getpid(), "gpu_ids": gpu_ids,
            "qlab_version": __version__, "seconds": round(time.monotonic() - t0, 2), "profile": doc}
