"""The `qlab` command: parses arguments and hands off to each subcommand's module.

Every subcommand lives in a `commands` module that imports nothing heavy at module level (no torch,
no triton), so that `qlab hw`, `qlab predict` and `qlab report` answer in well under a second.
A module exposes `register(subparsers)`, which adds its parser and sets `func` to a callable
`(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback

from qlab import __version__
from qlab.errors import ERROR_KINDS, EXIT_BAD_INPUT, EXIT_INTERNAL, QlabError, save_traceback

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


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error under `--json` also prints the JSON error object on stdout
    (subcommand parsers are made with the same class, so this holds for every command)."""

    json_errors = False

    def error(self, message: str):
        if _Parser.json_errors:
            _print_json_error(f"{self.prog}: {message}", EXIT_BAD_INPUT)
        super().error(message)  # usage and the message on stderr, exit 2


def _print_json_error(message: str, code: int, log: str | None = None) -> None:
    err = {"message": message, "exit_code": code, "kind": ERROR_KINDS.get(code, "error")}
    if log:
        err["log"] = log
    try:
        print(json.dumps({"error": err}), flush=True)
    except (BrokenPipeError, OSError):
        pass


def _register(module_name: str, sub: argparse._SubParsersAction) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:  # a subcommand whose module is not built yet is left out
        if e.name and module_name.startswith(e.name):
            return
        raise
    module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


def _fail(args: argparse.Namespace, message: str, code: int, log: str | None = None) -> int:
    """One line on stderr; with `--json`, the same error as `{"error": {...}}` on stdout. Returns `code`."""
    print(f"qlab: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        _print_json_error(message, code, log)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 internal error (the
    traceback goes to a log file whose path is printed; the screen gets one line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_errors = "--json" in argv
    args = argparse.Namespace(json=_Parser.json_errors)  # until parsed: a crash while building the parser
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except QlabError as e:
        return _fail(args, str(e), e.exit_code)
    except KeyboardInterrupt:
        print("qlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not the user's input: keep the traceback, show one line
        log = save_traceback(e, argv)
        where = f"the traceback is in {log}" if log else "the traceback could not be saved (no writable log dir)"
        if log is None:  # the last resort: better on the screen than lost
            traceback.print_exc()
        return _fail(args, f"internal error ({type(e).__name__}: {_first_line(e)}); {where}", EXIT_INTERNAL,
                     str(log) if log else None)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "no message"


if __name__ == "__main__":
    sys.exit(main())
