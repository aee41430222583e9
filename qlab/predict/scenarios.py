"""The scenarios CSV of `qlab predict --scenarios FILE.csv`: one row per prediction.

    hw,model,quant,context[,batch,kv_dtype]
    rtx-3090,qwen3.6-27b,Q4_K_M,32k,1,F16

Every problem is one line naming the file and the line: a file that is not UTF-8 text (a UTF-8 BOM is fine),
only a header, an unknown or repeated column, a row with more fields than the header, an empty required cell.
Nothing heavy is imported (no torch).
"""

from __future__ import annotations

import csv
import io

from qlab.errors import QlabError

REQUIRED = ("hw", "model", "quant", "context")
OPTIONAL = ("batch", "kv_dtype")
COLUMNS = REQUIRED + OPTIONAL


def _header(path: str, fieldnames: list[str] | None) -> list[str]:
    if not fieldnames:
        raise QlabError(f"{path}: empty file; expected a header line {','.join(REQUIRED)}[,batch,kv_dtype]")
    cols = [c.strip() for c in fieldnames]
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise QlabError(f"{path}: line 1: unknown column {unknown[0]!r}; expected columns {', '.join(COLUMNS)}")
    repeated = sorted({c for c in cols if cols.count(c) > 1})
    if repeated:
        raise QlabError(f"{path}: line 1: column {repeated[0]!r} appears more than once")
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise QlabError(f"{path}: line 1: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
    return cols


def _not_utf8(path: str, data: bytes, e: UnicodeDecodeError) -> QlabError:
    line = data[: e.start].count(b"\n") + 1
    return QlabError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8")


def read_scenarios(path: str, parse_int) -> list[dict]:
    """Rows of a scenarios CSV -> predict() keyword dicts (plus "_where", the "file: line N: " prefix for errors
    that predict() raises later). `parse_int(text, what, where)` reads context and batch ("32k" -> 32768)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise QlabError(f"--scenarios {path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")  # a BOM (Excel's "CSV UTF-8") is not part of the first column's name
    except UnicodeDecodeError as e:
        raise _not_utf8(path, data, e) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote is an error
    out = []
    try:
        cols = _header(path, next(reader, None))
        width = len(cols)
        for row in reader:
            where = f"{path}: line {reader.line_num}: "
            if len(row) > width:
                raise QlabError(f"{where}{len(row)} fields, but the header names {width} ({','.join(cols)})")
            cells = dict(zip(cols, (v.strip() for v in row)))
            if not any(cells.values()):
                continue
            for c in REQUIRED:
                if not cells.get(c):
                    raise QlabError(f"{where}empty {c}")
            s = {"hw": cells["hw"], "model": cells["model"], "quant": cells["quant"],
                 "context": parse_int(cells["context"], "context", where),
                 "batch": parse_int(cells.get("batch") or "1", "batch", where)}
            if cells.get("kv_dtype"):
                s["kv_dtype"] = cells["kv_dtype"]
            s["_where"] = where
            out.append(s)
    except csv.Error as e:
        raise QlabError(f"{path}: line {reader.line_num}: not valid CSV: {e}") from None
    if not out:
        raise QlabError(f"{path}: no scenarios: the file has a header but no rows (e.g. rtx-3090,qwen3.6-27b,"
                        "Q4_K_M,4096)")
    return out
