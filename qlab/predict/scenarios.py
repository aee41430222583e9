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
    ints: dict[tuple[str, str], int] = {}  # (text, column) -> int: 100k rows repeat a few contexts and batches

    def as_int(text: str, column: str, where: str) -> int:
        n = ints.get((text, column))
        if n is None:
            n = ints[(text, column)] = parse_int(text, column, where)
        return n

    try:
        cols = _header(path, next(reader, None))
        width = len(cols)
        at = {c: cols.index(c) for c in cols}
        i_hw, i_model, i_quant, i_ctx = (at[c] for c in REQUIRED)
        i_batch, i_kv = at.get("batch"), at.get("kv_dtype")
        for row in reader:
            if len(row) > width:
                raise QlabError(f"{path}: line {reader.line_num}: {len(row)} fields, but the header names {width} "
                                f"({','.join(cols)})")
            row = [v.strip() for v in row] + [""] * (width - len(row))
            if not any(row):
                continue
            where = f"{path}: line {reader.line_num}: "
            for c, i in zip(REQUIRED, (i_hw, i_model, i_quant, i_ctx)):
                if not row[i]:
                    raise QlabError(f"{where}empty {c}")
            s = {"hw": row[i_hw], "model": row[i_model], "quant": row[i_quant],
                 "context": as_int(row[i_ctx], "context", where),
                 "batch": as_int((row[i_batch] if i_batch is not None else "") or "1", "batch", where)}
            if i_kv is not None and row[i_kv]:
                s["kv_dtype"] = row[i_kv]
            s["_where"] = where
            out.append(s)
    except csv.Error as e:
        raise QlabError(f"{path}: line {reader.line_num}: not valid CSV: {e}") from None
    if not out:
        raise QlabError(f"{path}: no scenarios: the file has a header but no rows (e.g. rtx-3090,qwen3.6-27b,"
                        "Q4_K_M,4096)")
    return out
