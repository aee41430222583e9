"""User-facing errors: the CLI prints these as one line and exits with their code, never a traceback.
Also one-line warnings (`warn`) and the crash log (`save_traceback`) that keeps an internal error's traceback off
the screen: $QLAB_HOME/logs/crash-*.log, or <tempdir>/qlab-logs where that cannot be written."""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from pathlib import Path

# Exit codes of every command (README.md, "Exit codes"): a check that failed is not bad input, and neither is a crash.
EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
ERROR_KINDS = {EXIT_CHECK_FAILED: "check_failed", EXIT_BAD_INPUT: "bad_input", EXIT_INTERNAL: "internal"}


class QlabError(Exception):
    """An error caused by the user's input or environment; `exit_code` is what the CLI returns (2 unless a check
    failed: `QlabError(msg, exit_code=1)`)."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class OutputPathError(QlabError, OSError):
    """A file cannot be written where asked (a directory, a path through a file, a full or read-only disk).
    Also an OSError, so code that already handles write failures (the tune cache falls back to memory) still does."""


def closest(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The `n` choices that look most like `value` (case-insensitive), best first."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(value.lower(), list(lowered), n=n, cutoff=0.3)
    if not hits:  # fall back to substring matches, e.g. "4090" -> "rtx-4090"
        hits = [c for c in lowered if value.lower() in c][:n]
    return [lowered[h] for h in hits]


def unknown(kind: str, value: str, choices: Iterable[str]) -> QlabError:
    """`unknown("device", "rtx-4091", ids)` -> an error naming the value and the closest valid ones."""
    near = closest(value, choices)
    hint = f"; closest: {', '.join(near)}" if near else ""
    return QlabError(f"unknown {kind} {value!r}{hint}")


def warn(message: str) -> None:
    """One warning line on stderr (a skipped user file, an ignored alias): the command goes on."""
    print(f"qlab: warning: {message}", file=sys.stderr)


def _log_dirs() -> list[Path]:
    from qlab.paths import qlab_home  # paths imports nothing of ours; kept local so errors stays a leaf

    return [qlab_home() / "logs", Path(tempfile.gettempdir()) / "qlab-logs"]


def save_traceback(exc: BaseException, argv: list[str] | None = None) -> Path | None:
    """Write `exc`'s traceback (and the command line) to a new file under $QLAB_HOME/logs, or the temp dir when
    that cannot be written; the file's path, or None when neither place can be written."""
    text = "".join(traceback.format_exception(exc))
    head = f"qlab {' '.join(argv if argv is not None else sys.argv[1:])}\n{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n\n"
    for d in _log_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=f"crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=d)
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # a new file each time: two crashes never share one
                f.write(head + text)
            return Path(path)
        except OSError:
            continue
    return None
