"""`qlab hw list|show|detect`: the hardware database for people (rich tables) and machines (--json).

Imports nothing heavy: rich is imported inside the printers, torch never.
"""

from __future__ import annotations

import argparse
import json
import sys

from qlab.errors import QlabError
from qlab.tables import Column, add_table_options, print_table

RATE_COLUMNS = (("fp16_tflops", "FP16"), ("bf16_tflops", "BF16"), ("fp8_tflops", "FP8"), ("int8_tops", "INT8"),
                ("fp4_tflops", "FP4"), ("fp32_tflops", "FP32"))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hw", help="hardware database: list, show and detect devices",
                              description="The hardware database (sourced specs of every device) and detection.")
    sub = p.add_subparsers(dest="hw_command", metavar="COMMAND")
    ls = sub.add_parser("list", help="list devices")
    ls.add_argument("--vendor", help="only this vendor: nvidia, amd, apple, intel")
    ls.add_argument("--json", action="store_true", help="every field of every device, with sources")
    add_table_options(ls)
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", help="one device's specs and sources")
    show.add_argument("device", metavar="ID", help="id or alias, e.g. rtx-3090, 'Apple M4 Max', m4-max-40c@64")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)
    det = sub.add_parser("detect", help="which device this machine is (NVML, Apple sysctl, else the CPU)")
    det.add_argument("--prefer", default="auto", choices=("auto", "nvml", "apple", "cpu"))
    det.add_argument("--json", action="store_true")
    det.set_defaults(func=run_detect)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _fmt(v) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _console():
    from rich.console import Console

    return Console(file=sys.stdout, width=max(120, Console(file=sys.stdout).width))


def run_list(args) -> int:
    from qlab.hwdb import all_devices, device_to_dict
    from qlab.hwdb.loader import VENDORS

    devices = all_devices()
    if args.vendor:
        vendor = args.vendor.lower()
        if vendor not in VENDORS:
            raise QlabError(f"unknown vendor {args.vendor!r}; expected one of {', '.join(VENDORS)}")
        devices = [d for d in devices if d.vendor == vendor]
    if args.json:
        print(json.dumps([device_to_dict(d) for d in devices], indent=1))
        return 0
    from qlab.hwdb.prices import price_for, prices_for

    rows = []
    for d in devices:
        opts = d.memory_options_gb
        price = price_for(d)
        other = None if price else min(prices_for(d.id), key=lambda q: q.usd, default=None)
        rows.append({"id": d.id, "name": d.name,
                     "memory_gb": _fmt(d.memory_gb) if len(opts) <= 1 else "/".join(f"{o:g}" for o in opts),
                     "bandwidth_gbs": _fmt(d.mem_bandwidth_gbs), "bf16_tflops": _fmt(d.bf16_tflops or d.fp16_tflops),
                     "fp8_tflops": _fmt(d.fp8_tflops), "fp32_tflops": _fmt(d.fp32_tflops), "tdp_w": _fmt(d.tdp_w),
                     "price_usd": f"{price.usd:,.0f}" if price else f"{other.usd:,.0f}@{other.memory_gb:g}" if other else "-",
                     "price_kind": f"{(price or other).kind} {(price or other).date[:4]}" if price or other else "-",
                     "launch": _fmt(d.launch_date)})
    print_table(rows, LIST_COLUMNS, args, title=f"qlab hwdb: {len(devices)} devices (dense rates; GB = 10^9 bytes; "
                                              "price of the largest memory option, else $@GB of a smaller one)")
    return 0


LIST_COLUMNS = [
    Column("id", "id", keep=True), Column("name", "name", wrap=True, priority=3, min_width=14),
    Column("memory_gb", "GB", right=True, priority=1), Column("bandwidth_gbs", "GB/s", right=True, priority=1),
    Column("bf16_tflops", "BF16", right=True, priority=2), Column("fp8_tflops", "FP8", right=True, priority=6),
    Column("fp32_tflops", "FP32", right=True, priority=6), Column("tdp_w", "W", right=True, priority=5),
    Column("price_usd", "$", right=True, priority=3), Column("price_kind", "price", priority=4),
    Column("launch", "launch", priority=7),
]


def _default_source(dev) -> str:
    """The source most values share (the file's `[sources] default`); others are printed per field."""
    counts: dict[str, int] = {}
    for src in dev.sources.values():
        counts[src] = counts.get(src, 0) + 1
    return max(counts, key=counts.get) if counts and max(counts.values()) > 2 else ""


def _show_table(dev, title: str):
    from rich.markup import escape  # user device files are text, not markup: "[/]" in a name must print as is
    from rich.table import Table

    from qlab.hwdb import device_to_dict

    data = device_to_dict(dev)
    default = _default_source(dev)
    t = Table(title=escape(title))
    t.add_column("field")
    t.add_column("value", overflow="fold", max_width=44)
    t.add_column("note", overflow="fold", max_width=34)
    t.add_column("source (if not the default below)", overflow="fold")
    skip = {"sources", "value_notes", "estimates", "aliases", "notes", "origin", "id"}
    for key, value in data.items():
        if key in skip or value in (None, "", [], ()):
            continue
        notes = dict.fromkeys(x for x in (dev.estimates.get(key, ""), dev.value_notes.get(key, "")) if x)
        src = dev.sources.get(key, "")
        t.add_row(key, escape(_fmt(value)), escape("; ".join(notes)), "" if src == default else escape(src))
    return t, default


def run_show(args) -> int:
    from qlab.hwdb import device_to_dict, get_device

    dev = get_device(args.device)
    if args.json:
        print(json.dumps(device_to_dict(dev), indent=1))
        return 0
    con = _console()
    from qlab.hwdb.variants import ambiguity

    note = ambiguity(args.device)
    if note:
        con.print(f"note: {note}", markup=False, highlight=False)
    table, default = _show_table(dev, f"{dev.id}: {dev.name}")
    con.print(table)
    if default:
        con.print(f"default source: {default}", markup=False)
    if dev.aliases:
        con.print(f"aliases: {', '.join(dev.aliases)}", markup=False)
    if dev.notes:
        con.print(f"notes: {dev.notes}", markup=False)
    _print_prices(con, dev)
    con.print(f"file: {dev.origin}", markup=False)
    return 0


def _print_prices(con, dev) -> None:
    """Every quote for the device, marking the one its shown memory configuration uses."""
    from qlab.hwdb.prices import price_for, prices_for

    used = price_for(dev)
    quotes = prices_for(dev.id)
    if not quotes:
        con.print("price: none known (unpriced; see qlab/hwdb/prices.toml)", markup=False)
        return
    for q in quotes:
        mark = "*" if q == used else " "
        con.print(f"price{mark} ${q.usd:,.0f} for {q.memory_gb:g} GB, {q.label}: {q.source}"
                  + (f" <{q.url}>" if q.url else ""), markup=False, highlight=False)
    if used is None:
        con.print(f"  (no quote for the {dev.memory_gb:g} GB configuration shown: unpriced)", markup=False)


def run_detect(args) -> int:
    from qlab.hwdb import device_to_dict
    from qlab.hwdb.detect import detect_device

    d = detect_device(prefer=args.prefer)
    if args.json:
        print(json.dumps({**d.to_dict(), "device": device_to_dict(d.device)}, indent=1, default=str))
        return 0
    con = _console()
    if d.source == "cpu":
        status = "the host CPU (peak and bandwidth are estimates until `qlab profile` measures them)"
    else:
        status = "a hwdb device" if d.known else "NOT in the hwdb: built from what was read"
    con.print(f"detected [bold]{d.device.id}[/bold] ({d.device.name}) via {d.source}: {status}", highlight=False)
    for k, v in d.details.items():
        con.print(f"  {k}: {_fmt(v)}", highlight=False, markup=False)
    table, default = _show_table(d.device, d.device.id)
    con.print(table)
    if default:
        con.print(f"default source: {default}", markup=False)
    return 0
