"""One place that checks numbers (and output paths) from files and flags: right type, finite, in range.

Every failure is a `QlabError` (exit 2) with one line that names where the value came from and what was
expected, e.g. ``device file ~/.qlab/devices/x.toml: field 'mem_bandwidth_gbs': expected a finite number > 0,
got nan``. Sources are plain strings; build them with `field_source(file, field)` or `flag_source("--threads")`.

In files (TOML, JSON, CSV cells already parsed):

    number(raw["layer_overhead_us"], field_source(path, "layer_overhead_us"), minimum=0)
    integer(entry["block_n"], field_source(cache, "block_n"), minimum=1)

For argparse flags, use the `type=` factories; argparse then reports a bad value as a usage error (exit 2):

    p.add_argument("--threads", type=int_arg(minimum=1))
    p.add_argument("--width-scale", type=float_arg(minimum=1.0))
    p.add_argument("-o", "--output", type=output_file)

Text from a flag can also be checked after parsing with `parse_number(text, flag_source("--context"), ...)`.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qlab.errors import OutputPathError, QlabError


def field_source(file: str | os.PathLike, field: str, kind: str = "") -> str:
    """`field_source("p.json", "layer_overhead_us", "profile")` -> "profile p.json: field 'layer_overhead_us'"."""
    lead = f"{kind} {file}" if kind else str(file)
    return f"{lead}: field {field!r}"


def flag_source(flag: str) -> str:
    return f"flag {flag}"


def _range_text(minimum: float | None, maximum: float | None, min_exclusive: bool, max_exclusive: bool) -> str:
    def fmt(v: float) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"  # an integer bound exactly, not as 9.22337e+18

    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_exclusive else '>='} {fmt(minimum)}")
    if maximum is not None:
        parts.append(f"{'<' if max_exclusive else '<='} {fmt(maximum)}")
    return " and ".join(parts)


def _expected(what: str, minimum, maximum, min_exclusive, max_exclusive) -> str:
    rng = _range_text(minimum, maximum, min_exclusive, max_exclusive)
    return f"{what} {rng}" if rng else what


def _fail(source: str, expected: str, got: Any) -> QlabError:
    return QlabError(f"{source}: expected {expected}, got {got!r}")


def _check_range(value: float, source: str, expected: str, minimum, maximum, min_exclusive, max_exclusive) -> None:
    if minimum is not None and (value < minimum or (min_exclusive and value == minimum)):
        raise _fail(source, expected, value)
    if maximum is not None and (value > maximum or (max_exclusive and value == maximum)):
        raise _fail(source, expected, value)


def is_number(value: Any) -> bool:
    """An int or float (bool is not a number here: `true` in a TOML file is a mistake, not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any, source: str, *, minimum: float | None = None, maximum: float | None = None,
           min_exclusive: bool = False, max_exclusive: bool = False) -> float:
    """`value` as a finite float within the bounds; strings, bools, None, NaN and inf are errors."""
    expected = _expected("a finite number", minimum, maximum, min_exclusive, max_exclusive)
    if not is_number(value):
        raise _fail(source, expected, value)
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float
        raise _fail(source, expected, value) from None
    if not math.isfinite(f):
        raise _fail(source, expected, value)
    _check_range(f, source, expected, minimum, maximum, min_exclusive, max_exclusive)
    return f


def positive(value: Any, source: str) -> float:
    return number(value, source, minimum=0, min_exclusive=True)


def integer(value: Any, source: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within the bounds; a float with no fraction (4.0) is accepted, 4.5 and "4" are not."""
    expected = _expected("an integer", minimum, maximum, False, False)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(source, expected, value)
    _check_range(value, source, expected, minimum, maximum, False, False)
    return value


def parse_number(text: str, source: str, *, minimum: float | None = None, maximum: float | None = None,
                 min_exclusive: bool = False, max_exclusive: bool = False) -> float:
    """A number written as text (a flag, a CSV cell): "1e3" -> 1000.0; "", "nan", "1.0e400" are errors."""
    expected = _expected("a finite number", minimum, maximum, min_exclusive, max_exclusive)
    try:
        f = float(str(text).strip())
    except ValueError:
        raise _fail(source, expected, text) from None
    if not math.isfinite(f):
        raise _fail(source, expected, text)
    return number(f, source, minimum=minimum, maximum=maximum, min_exclusive=min_exclusive,
                  max_exclusive=max_exclusive)


def parse_integer(text: str, source: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer written as text: "12" or "1_000" -> int; "1.5", "", "-" are errors (no silent rounding)."""
    expected = _expected("an integer", minimum, maximum, False, False)
    try:
        n = int(str(text).strip())
    except ValueError:
        raise _fail(source, expected, text) from None
    return integer(n, source, minimum=minimum, maximum=maximum)


def _argparse_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap a parser so argparse turns its QlabError into a usage error (exit 2) naming the flag."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except QlabError as e:
            # argparse prefixes "argument --flag:", so drop our own source from the message
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def int_arg(*, minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse `type=` for an integer flag in [minimum, maximum], e.g. `--threads`."""
    return _argparse_type(lambda t: parse_integer(t, "flag", minimum=minimum, maximum=maximum), "int")


def float_arg(*, minimum: float | None = None, maximum: float | None = None, min_exclusive: bool = False,
              max_exclusive: bool = False) -> Callable[[str], float]:
    """An argparse `type=` for a finite float flag in range (NaN, inf and "" are usage errors)."""
    return _argparse_type(lambda t: parse_number(t, "flag", minimum=minimum, maximum=maximum,
                                                 min_exclusive=min_exclusive, max_exclusive=max_exclusive), "float")


def check_output_file(path: str | os.PathLike, source: str = "output") -> Path:
    """`path` can be written as a file: not an existing directory, and no part of its parent path is a file.
    Called before a long run so that a bad `-o` fails in a second, not after the work is done."""
    p = Path(path)
    if str(path).strip() == "":
        raise OutputPathError(f"{source}: expected a file path, got ''")
    if p.is_dir():
        example = str(p / "out.json")
        raise OutputPathError(f"{source}: {str(path)!r} is a directory; expected a file path (e.g. {example!r})")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{source}: {str(path)!r} lies inside {str(parent)!r}, which is a file, "
                                "not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputPathError(f"{source}: cannot write into directory {str(parent)!r} (permission denied)")
            break
    return p


def check_replaceable_file(path: str | os.PathLike, source: str = "output") -> Path:
    """`check_output_file`, and `path` is not a device, pipe or socket either: for writers that rename a finished
    temp file over `path` (renaming over /dev/null would replace the device with a file)."""
    p = check_output_file(path, source)
    if p.exists() and not p.is_file() or str(p).startswith(("/dev/", "/proc/")):
        raise OutputPathError(f"{source}: {str(path)!r} is not a regular file; expected a file path such as "
                              "model.gguf")
    return p


def check_output_dir(path: str | os.PathLike, source: str = "output directory") -> Path:
    """`path` can be used as a directory: it is one, or nothing (not a file) is there yet."""
    p = Path(path)
    if str(path).strip() == "":
        raise OutputPathError(f"{source}: expected a directory path, got ''")
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{source}: {str(path)!r} is a file; expected a directory")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{source}: {str(path)!r} lies inside {str(parent)!r}, which is a file")
            break
    return p


output_file = _argparse_type(lambda t: check_output_file(t, "output"), "output file")
output_dir = _argparse_type(lambda t: check_output_dir(t, "output directory"), "output directory")
