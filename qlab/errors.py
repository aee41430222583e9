"""User-facing errors: the CLI prints these as one line and exits with their code, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QlabError(Exception):
    """An error caused by the user's input or environment; `exit_code` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


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
