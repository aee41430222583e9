"""One table printer for every CLI listing: it fits the terminal, never cuts the id column, and speaks csv,
json and markdown like llama-bench (`--format csv|json|md`, `--wide`).

    cols = [Column("id", "id", keep=True), Column("name", "name", wrap=True, priority=2), ...]
    print_table(rows, cols, args, title="...")          # rows: dicts keyed by Column.key

In `table` format the width is the terminal's (`COLUMNS` wins, as in every shell tool; a pipe without it gets 200).
When the columns do not fit, wrappable columns wrap first, then the least important columns (highest `priority`)
are dropped, and a last line names them and says `--wide` shows everything. Kept columns (ids) are never cut.
Pure standard library: importable from any commands module.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import textwrap
from dataclasses import dataclass

FORMATS = ("table", "csv", "json", "md")
GAP = "  "


@dataclass(frozen=True)
class Column:
    key: str                 # the row dict's key (and the csv/json field name)
    header: str              # what a person reads
    right: bool = False      # right-align (numbers)
    keep: bool = False       # never dropped, never cut (ids: the thing people type)
    priority: int = 1        # 1 = most important; the highest numbers go first when space runs out
    wrap: bool = False       # may wrap onto several lines (names, notes) down to min_width
    min_width: int = 10


def add_table_options(parser) -> None:
    """`--wide` and `--format` for a command that prints a table."""
    parser.add_argument("--wide", action="store_true", help="every column, whatever the terminal width")
    parser.add_argument("--format", dest="table_format", choices=FORMATS, default="table",
                        help="table (default, fits the terminal), csv, json or md (markdown, all columns)")


def terminal_width() -> int:
    return shutil.get_terminal_size((200, 24)).columns


def _text(v) -> str:
    if v is None or v == "":
        return "-"
    return str(v)


def render(rows: list[dict], columns: list[Column], fmt: str = "table", width: int | None = None,
           wide: bool = False, title: str | None = None) -> str:
    """The table as text in `fmt`; `width` None means the terminal's."""
    if fmt == "json":
        return json.dumps([{c.key: r.get(c.key) for c in columns} for r in rows], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c.key for c in columns])
        for r in rows:
            w.writerow(["" if r.get(c.key) is None else r.get(c.key) for c in columns])
        return buf.getvalue().rstrip("\n")
    if fmt == "md":
        def esc(s: str) -> str:
            return s.replace("|", "\\|")
        out = ([f"**{esc(title)}**", ""] if title else [])
        out.append("| " + " | ".join(esc(c.header) for c in columns) + " |")
        out.append("|" + "|".join("---:" if c.right else "---" for c in columns) + "|")
        out += ["| " + " | ".join(esc(_text(r.get(c.key))) for c in columns) + " |" for r in rows]
        return "\n".join(out)
    if fmt != "table":
        raise ValueError(f"table format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return _plain(rows, columns, None if wide else (width or terminal_width()), title)


def _plain(rows, columns, width, title) -> str:
    cells = [[_text(r.get(c.key)) for c in columns] for r in rows]
    natural = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    widths = dict(enumerate(natural))

    def total() -> int:
        return sum(widths[i] for i in shown) + len(GAP) * (len(shown) - 1)

    if width is not None:
        for i in shown:  # wrap first: a name on two lines beats a column gone
            if total() > width and columns[i].wrap:
                widths[i] = max(columns[i].min_width, len(columns[i].header), widths[i] - (total() - width))
        droppable = sorted((i for i in shown if not columns[i].keep), key=lambda i: (-columns[i].priority, -i))
        while total() > width and droppable:
            shown.remove(droppable.pop(0))
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]

    def line(parts: list[str]) -> str:
        return GAP.join(p.rjust(widths[i]) if columns[i].right else p.ljust(widths[i])
                        for i, p in zip(shown, parts)).rstrip()

    out = textwrap.wrap(title, width) if title and width else ([title] if title else [])
    out.append(line([columns[i].header for i in shown]))
    out.append(GAP.join("-" * widths[i] for i in shown))
    for row in cells:
        pieces = [textwrap.wrap(row[i], widths[i], break_on_hyphens=False) or [""] if len(row[i]) > widths[i]
                  else [row[i]] for i in shown]
        for k in range(max(len(p) for p in pieces)):
            out.append(line([p[k] if k < len(p) else "" for p in pieces]))
    if hidden:
        note = f"(not shown for lack of width: {', '.join(hidden)}; --wide shows every column)"
        out += textwrap.wrap(note, width) if width else [note]
    return "\n".join(out)


def print_table(rows: list[dict], columns: list[Column], args=None, title: str | None = None) -> None:
    """Print with the command's `--format` / `--wide` (defaults where the command has neither)."""
    fmt = getattr(args, "table_format", "table") or "table"
    print(render(rows, columns, fmt, wide=bool(getattr(args, "wide", False)), title=title))


# -- qlab predict ----------------------------------------------------------------------------------------

SCENARIO_KEYS = ("hw", "model", "quant", "context", "batch", "kv_dtype")
PREDICT_COLUMNS = [
    Column("decode_tok_s", "decode tok/s", right=True, priority=1), Column("fits", "fits", priority=1),
    Column("total_gb", "total GB", right=True, priority=1), Column("basis", "basis", priority=2),
    Column("ttft_s", "TTFT s", right=True, priority=3), Column("prefill_tok_s", "prefill tok/s", right=True, priority=4),
    Column("bound", "bound", priority=5), Column("weights_gb", "weights GB", right=True, priority=6),
    Column("kv_cache_gb", "KV GB", right=True, priority=6), Column("state_gb", "state GB", right=True, priority=7),
]


def print_predictions(results: list[dict], args=None, asked_hw: list[str] = ()) -> None:
    """`qlab predict`'s table: the scenario fields that vary between rows as kept columns, the rest in the
    title; then each row's warnings, and a note for every device name that could mean several variants."""
    varying = [k for k in SCENARIO_KEYS if len({r.get(k) for r in results}) > 1] or ["hw"]
    fixed = {k: results[0].get(k) for k in SCENARIO_KEYS if k not in varying}
    cols = [Column(k, k, keep=True, right=k in ("context", "batch")) for k in varying] + PREDICT_COLUMNS
    rows = []
    for r in results:
        m = r["memory"]
        rows.append({**{k: r.get(k) for k in varying}, "decode_tok_s": f"{r['decode_tok_s']:.1f}",
                     "prefill_tok_s": f"{r['prefill_tok_s']:.0f}", "ttft_s": f"{r['ttft_s']:.2f}",
                     "weights_gb": f"{m['weights_gb']:.2f}", "kv_cache_gb": f"{m['kv_cache_gb']:.2f}",
                     "state_gb": f"{m['state_gb']:.3f}", "total_gb": f"{m['total_gb']:.2f}",
                     "fits": "yes" if r["fits"] else "NO", "bound": r["bound"],
                     "basis": "guess" if r["basis"] == "roofline" else r["basis"]})
    print_table(rows, cols, args, title=", ".join(f"{k} {v}" for k, v in fixed.items()) or None)
    if getattr(args, "table_format", "table") != "table":
        return
    notes = []
    if any(r["basis"] == "roofline" for r in results):
        notes.append("basis: guess = roofline with pooled efficiencies (no measurement of that device class)")
    notes += [f"note {r['hw']} {r['model']}: {w}" for r in results for w in r.get("warnings", [])]
    from qlab.hwdb.variants import ambiguity

    notes += [f"note: {n}" for n in map(ambiguity, dict.fromkeys(asked_hw)) if n]
    width = None if getattr(args, "wide", False) else terminal_width()
    for n in notes:
        print(textwrap.fill(n, width, subsequent_indent="  ") if width else n)
