"""The `qlab` command: parses arguments and hands off to each subcommand's module.

Every subcommand lives in a `commands` module that imports nothing heavy at module level (no torch,
no triton), so that `qlab hw`, `qlab predict` and `qlab report` answer in well under a second.
A module exposes `register(subparsers)`, which adds its parser and sets `func` to a callable
`(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qlab import __version__
from qlab.errors import QlabError

# name -> module with register(); a tuple of modules makes a group (`qlab bench decode|gate`).
COMMANDS: dict[str, str | tuple[str, ...]] = {
    "hw": "qlab.hwdb.commands",
    "models": "qlab.models.commands",
    "predict": "qlab.predict.commands",
    "kernels": "qlab.kernels.commands",
    "gguf": "qlab.engine.gguf_commands",
    "bench": ("qlab.engine.bench_commands", "qlab.gates.commands"),
    "tune": "qlab.tune.commands",
    "profile": "qlab.profile.commands",
    "report": "qlab.report.commands",
    "selftest": "qlab.selftest.commands",
    "fleet": "qlab.fleet.commands",
}
GROUP_HELP = {"bench": "benchmarks: decode loop (`bench decode`), regression gate (`bench gate`)"}


def _register(module_name: str, sub: argparse._SubParsersAction) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:  # a subcommand whose module is not built yet is left out
        if e.name and module_name.startswith(e.name):
            return
        raise
    module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qlab",
        description="Profile, tune and predict Qwen3.6-27B inference on this machine and any device in the hwdb.",
    )
    parser.add_argument("--version", action="version", version=f"qlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, target in COMMANDS.items():
        if isinstance(target, tuple):
            group = sub.add_parser(name, help=GROUP_HELP.get(name, name), description=GROUP_HELP.get(name))
            group_sub = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
            for module_name in target:
                _register(module_name, group_sub)
            group.set_defaults(func=lambda args, g=group: (g.print_help(), 2)[1])
        else:
            _register(target, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except QlabError as e:
        print(f"qlab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("qlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
