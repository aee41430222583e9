"""The report's figures: matplotlib (Agg) drawn to inline SVG strings, text kept as text so it stays sharp in
print and searchable. Each function takes plain numbers already taken from predict() and returns markup."""

from __future__ import annotations

import html
import io
import itertools
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from qlab.report.fmt import context as fmt_context  # noqa: E402
from qlab.report.fmt import seconds as fmt_seconds  # noqa: E402

VENDOR_COLORS = {"nvidia": "#5e9400", "amd": "#d0202a", "apple": "#6b6b6b", "intel": "#0068b5", "cpu": "#7a4fa0"}
QUANT_COLORS = {"BF16": "#1b2f5e", "Q8_0": "#2e86c1", "Q6_K": "#17a589", "Q5_K_M": "#8e44ad", "Q4_K_M": "#e67e22",
                "IQ4_XS": "#b7950b", "Q3_K_M": "#c0392b", "Q2_K": "#6e2c00"}
DENSE_COLOR = "#555555"
_counter = itertools.count()

plt.rcParams.update({
    "svg.fonttype": "none",        # text as <text>, not paths: small files, crisp print
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "legend.fontsize": 7.5,
})


def to_svg(fig, tight: bool = True, label: str = "") -> str:
    """Close `fig` and return its SVG element, ready to inline in HTML (no XML prolog, no metadata, ids
    salted per figure so several inline SVGs never share an id); `label` becomes its accessible name."""
    plt.rcParams["svg.hashsalt"] = f"qlab-fig-{next(_counter)}"
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight" if tight else None,
                pad_inches=0.05)
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # the namespaces the metadata needed; an HTML parser treats them as attributes, harmless but noisy
    svg = re.sub(r'\s+xmlns:(?:dc|cc|rdf)="[^"]*"', "", svg)
    name = html.escape(label or (fig.axes[0].get_title(loc="left") if fig.axes else "") or "figure", quote=True)
    svg = svg.replace("<svg ", f'<svg class="fig" role="img" aria-label="{name}" ', 1)
    return svg


def _ctx_axis(ax, contexts):
    ax.set_xscale("log", base=2)
    ax.set_xticks(contexts)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_context(int(round(v)))))


def _log_ticks(axis, lo: float, hi: float, formatter) -> None:
    """1-2-5 ticks between lo and hi on a log axis (decades only where that would be more than 9 ticks, so
    labels never pile up), labelled by `formatter`, no minor labels (matplotlib's defaults print 2×10^3 on
    short log ranges)."""
    def ticks_of(mults):
        return [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                for m in mults if lo / 1.6 <= m * 10.0 ** e <= hi * 1.6]

    ticks = ticks_of((1, 2, 5))
    if len(ticks) > 9:
        ticks = ticks_of((1,))
        step = max(1, math.ceil(len(ticks) / 9))
        ticks = ticks[::step]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: formatter(v)))


def robust_range(values: list[float], log: bool = False) -> tuple[float, float]:
    """Axis limits that a stray value cannot wreck: the data's range, capped at 3× the 90th percentile (and,
    on a log axis, floored at 1/100 of the 10th percentile). Values beyond are drawn at the limit, marked."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log))
    if not vals:
        return (0.1, 1.0) if log else (0.0, 1.0)
    q = lambda f: vals[min(len(vals) - 1, int(f * (len(vals) - 1) + 0.5))]  # noqa: E731
    hi = min(vals[-1], 3.0 * q(0.9)) if len(vals) >= 4 else vals[-1]
    lo = max(vals[0], q(0.1) / 100.0) if log and len(vals) >= 4 else vals[0]
    return lo, max(hi, lo * 1.0001)


GUESS_HATCH = "////"


def _hatch_guesses(bars, rows) -> None:
    """Hatch the bars of roofline guesses (rows in bar order), so a guess never reads like a calibrated figure."""
    for bar, r in zip(bars, rows):
        if r.get("guess"):
            bar.set_hatch(GUESS_HATCH)
            bar.set_edgecolor("white")


def _duration(v: float) -> str:
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.0f} s" if v < 120 else f"{v / 60:.0f} min"


def overview_bars(rows: list[dict], quant: str, context: int) -> str:
    """Horizontal bars: decode tok/s of each device at one quant and context; devices where it does not fit
    get a label instead of a bar. rows: {name, vendor, tok_s (None = does not fit)} sorted as shown."""
    h = 0.6 + 0.19 * len(rows)
    fig, ax = plt.subplots(figsize=(7.2, h))
    names = [r["name"] for r in rows][::-1]
    values = [r["tok_s"] or 0.0 for r in rows][::-1]
    colors = [VENDOR_COLORS.get(r["vendor"], "#999") for r in rows][::-1]
    top = robust_range([v for v in values if v])[1] if any(values) else 1.0
    bars = ax.barh(range(len(rows)), [min(v, top) for v in values], color=colors, height=0.72)
    _hatch_guesses(bars, rows[::-1])
    for i, (v, r) in enumerate(zip(values, rows[::-1])):
        label = (f"{v:.1f}" + (" ▸ beyond axis" if v > top else "") + (" (roofline guess)" if r.get("guess") else "")
                 if r["tok_s"] else "does not fit")
        v = min(v, top)
        ax.text(v + top * 0.01, i, label, va="center", fontsize=7, color="#333" if r["tok_s"] else "#b03a2e")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=7.5)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, top * 1.12)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"decode tokens/s, batch 1, {quant}, {fmt_context(context)} tokens in context (predicted)")
    vendors = sorted({r["vendor"] for r in rows})
    handles = [plt.Rectangle((0, 0), 1, 1, color=VENDOR_COLORS.get(v, "#999")) for v in vendors]
    ax.legend(handles, vendors, loc="lower right", ncol=len(vendors))
    return to_svg(fig, label=f"Decode tokens/s per device at {quant}, {fmt_context(context)} context")


def decode_curves(title: str, series: dict[str, list[tuple[int, float]]], dense: list[tuple[int, float]],
                  contexts: list[int], note: str) -> str:
    """Decode tok/s against context for one device: one line per quant (only where it fits), and a dashed
    dense-model line for contrast. The legend is shared, in the page (colours from QUANT_COLORS).
    Drawn with fixed margins and fixed limits (no tight bbox, no extra draw): one report has ~70 of these."""
    fig = plt.figure(figsize=(3.5, 2.3))
    ax = fig.add_axes((0.15, 0.2, 0.72, 0.63))
    ys_all = [y for pts in series.values() for _, y in pts] + [y for _, y in dense]
    for quant, pts in series.items():
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=2.6, lw=1.6, color=QUANT_COLORS.get(quant, "#999"))
    if dense:
        xs, ys = zip(*dense)
        ax.plot(xs, ys, ls="--", lw=1.2, marker="x", ms=3, color=DENSE_COLOR)
    _ctx_axis(ax, [c for c in contexts if c in (1024, 4096, 16384, 65536, 262144)])
    ax.set_xlim(contexts[0] / 1.3, contexts[-1] * 1.3)
    ax.set_ylim(0, nice_max(max(ys_all) * 1.05) if ys_all else 1.0)
    ax.set_title(title if len(title) <= 34 else title[:33].rstrip() + "…", loc="left", pad=13)
    ax.text(0.0, 1.015, note, transform=ax.transAxes, ha="left", va="bottom", fontsize=6.8, color="#666")
    ax.set_xlabel("tokens in context", fontsize=7.5)
    ax.set_ylabel("decode tok/s", fontsize=7.5)
    ax.tick_params(labelsize=7)
    _end_labels(ax, [(q, pts[-1]) for q, pts in series.items() if pts])
    if not ys_all:
        ax.text(0.5, 0.5, "does not fit at these quants", transform=ax.transAxes, ha="center", color="#b03a2e")
    return to_svg(fig, tight=False, label=f"{title}: decode tokens/s against context length per quant")


def _end_labels(ax, ends: list[tuple[str, tuple[float, float]]], gap_pt: float = 7.5) -> None:
    """Name each line at its right end, nudging labels apart vertically so close lines stay readable.
    The axes limits must be set already (the data -> display transform is used before drawing)."""
    scale = 72.0 / ax.figure.dpi
    items = sorted(((ax.transData.transform(xy)[1] * scale, q, xy) for q, xy in ends), key=lambda t: t[0])
    placed: list[float] = []
    for y, q, xy in items:
        y_new = max(y, placed[-1] + gap_pt) if placed else y
        placed.append(y_new)
        ax.annotate(q, xy, xytext=(3, y_new - y), textcoords="offset points", fontsize=6.2, va="center",
                    color=QUANT_COLORS.get(q, "#999"))


def value_scatter(points: list[dict], quant: str, context: int) -> str:
    """Launch price against decode tok/s (log price), one labelled point per device; up-left is better value.
    points: {name, vendor, price, tok_s}."""
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    top = robust_range([p["tok_s"] for p in points])[1] * 1.08
    for p in points:
        color = VENDOR_COLORS.get(p["vendor"], "#999")
        ax.scatter(p["price"], min(p["tok_s"], top), s=22, zorder=3, marker="D" if p.get("multi") else "o",
                   facecolors="white" if p.get("guess") else color, edgecolors=color, linewidths=1.2)
    ax.set_xscale("log")
    prices = [p["price"] for p in points]
    ax.set_xlim(min(prices) / 1.25, max(prices) * 1.6)
    _log_ticks(ax.xaxis, min(prices), max(prices), lambda v: f"${v:,.0f}")
    ax.set_xlabel("price of the configuration shown (USD, log scale; launch MSRP, street or used: see the table)")
    ax.set_ylabel(f"decode tok/s ({quant}, {fmt_context(context)} ctx)")
    ax.set_ylim(0, top)
    _scatter_labels(ax, [(p["name"], p["price"], min(p["tok_s"], top), bool(p.get("multi"))) for p in points])
    vendors = sorted({p["vendor"] for p in points})
    handles = [plt.Line2D([], [], marker="o", ls="", color=VENDOR_COLORS.get(v, "#999")) for v in vendors]
    labels = list(vendors)
    if any(p.get("multi") for p in points):
        handles.append(plt.Line2D([], [], marker="D", ls="", color="#999"))
        labels.append("multi-GPU (layer split)")
    if any(p.get("guess") for p in points):
        handles.append(plt.Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#666"))
        labels.append("hollow: roofline guess / multi-GPU prediction")
    ax.legend(handles, labels, loc="upper left")
    return to_svg(fig, label="Price of the configuration shown against decode tokens/s per device")


def _scatter_labels(ax, items: list[tuple[str, float, float, bool]], fontsize: float = 6.3) -> None:
    """Label each point, moving a label up (then down) in steps of one text line until it overlaps no label
    placed before it; labels are sized from their length, in points (no draw needed). Single devices are
    placed first and always labelled; an optional label (a multi-GPU setup, listed in its own table) that
    finds no free place near its point is left out rather than piled on the others."""
    scale = 72.0 / ax.figure.dpi
    placed: list[tuple[float, float, float, float]] = []
    line = fontsize * 1.25
    for name, x, y, optional in sorted(items, key=lambda t: (t[3], -t[2], t[1])):
        px, py = (v * scale for v in ax.transData.transform((x, y)))
        w = 0.56 * fontsize * len(name)
        for k in ((0, 1, -1) if optional else (0, 1, -1, 2, -2, 3, -3, 4, -4)):
            box = (px + 3, py + 2 + k * line, px + 3 + w, py + 2 + k * line + line)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        else:
            if optional:
                continue
        placed.append(box)
        ax.annotate(name, (x, y), xytext=(3, 2 + k * line), textcoords="offset points", fontsize=fontsize,
                    color="#333", arrowprops=None if k == 0 else {"arrowstyle": "-", "color": "#bbb", "lw": 0.5})


def ranked_bars(rows: list[dict], xlabel: str) -> str:
    """Horizontal bars of one ratio (tok/s per $1000, per 100 W) ranked best first. rows: {name, vendor, value}."""
    fig, ax = plt.subplots(figsize=(3.5, 0.55 + 0.17 * len(rows)))
    vals = [r["value"] for r in rows][::-1]
    top = robust_range(vals)[1]
    bars = ax.barh(range(len(rows)), [min(v, top) for v in vals],
                   color=[VENDOR_COLORS.get(r["vendor"], "#999") for r in rows][::-1], height=0.7)
    _hatch_guesses(bars, rows[::-1])
    ax.set_xlim(0, top * 1.08)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["name"] for r in rows][::-1], fontsize=6.8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel, fontsize=7.5)
    ax.tick_params(axis="x", labelsize=7)
    return to_svg(fig, label=xlabel)


def ttft_bars(rows: list[dict], prompt_tokens: int, quant: str) -> str:
    """Time to first token for a prompt, log scale (it spans ms on datacenter GPUs to minutes on CPUs).
    rows: {name, vendor, ttft_s}."""
    fig, ax = plt.subplots(figsize=(7.2, 0.6 + 0.17 * len(rows)))
    vals = [r["ttft_s"] for r in rows][::-1]
    lo, hi = robust_range(vals, log=True)
    shown = [min(max(v, lo), hi) for v in vals]
    bars = ax.barh(range(len(rows)), shown, color=[VENDOR_COLORS.get(r["vendor"], "#999") for r in rows][::-1],
                   height=0.7)
    _hatch_guesses(bars, rows[::-1])
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["name"] for r in rows][::-1], fontsize=7)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(lo / 2.0, hi * 2.5)
    ax.grid(axis="y", visible=False)
    _log_ticks(ax.xaxis, lo / 2.0, hi * 2.0, _duration)
    for i, (v, x) in enumerate(zip(vals, shown)):
        ax.text(x * 1.06, i, fmt_seconds(v) + (" ▸ beyond axis" if v > hi else ""), va="center", fontsize=6.5,
                color="#333")
    ax.set_xlabel(f"time to first token, {fmt_context(prompt_tokens)}-token prompt, {quant} (predicted, log scale)")
    return to_svg(fig, label=f"Time to first token per device, {fmt_context(prompt_tokens)}-token prompt, {quant}")


def measured_vs_predicted(rows: list[dict], title: str) -> str:
    """Grouped bars per decode run: measured, predicted from the profile, predicted from specs alone.
    rows: {label, measured, calibrated (or None), spec (or None)}."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    n = len(rows)
    width = 0.27
    series = [("measured", "measured", "#222222"), ("calibrated", "predicted (with profile)", "#2e86c1"),
              ("spec", "predicted (specs only)", "#bbbbbb")]
    for k, (key, label, color) in enumerate(series):
        xs = [i + (k - 1) * width for i in range(n)]
        ys = [r.get(key) or 0.0 for r in rows]
        ax.bar(xs, ys, width=width, color=color, label=label)
    ax.set_xticks(range(n))
    ax.set_xticklabels([r["label"] for r in rows], fontsize=7, rotation=20 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_ylabel("decode tok/s")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_svg(fig)


def kernel_efficiency(rows: list[dict], title: str) -> str:
    """Achieved share of peak per kernel: bandwidth and compute side by side. rows: {label, bw_pct, flops_pct}."""
    fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.34 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    bw = [r.get("bw_pct") or 0.0 for r in rows]
    fl = [r.get("flops_pct") or 0.0 for r in rows]
    ax.barh([y + 0.18 for y in ys], bw, height=0.34, color="#2e86c1", label="% of peak bandwidth")
    ax.barh([y - 0.18 for y in ys], fl, height=0.34, color="#e67e22", label="% of peak compute")
    ax.set_yticks(ys)
    ax.set_yticklabels([r["label"] for r in rows], fontsize=7)
    ax.set_xlim(0, max(100.0, max(bw + fl + [0.0]) * 1.05))
    ax.axvline(100, color="#999", lw=0.8, ls=":")
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("% of the device's peak (measured by the profile's microbenchmarks, else spec)")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_svg(fig)


def breakdown_bars(rows: list[dict], title: str) -> str:
    """Where a decoded token's time goes: stacked ms per token by part. rows: {label, deltanet, attention,
    matmul, other} in seconds per token."""
    parts = [("matmul", "#2e86c1"), ("deltanet", "#17a589"), ("attention", "#e67e22"), ("other", "#aaaaaa")]
    fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.26 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    left = [0.0] * len(rows)
    for part, color in parts:
        vals = [1000.0 * (r.get(part) or 0.0) for r in rows]
        ax.barh(ys, vals, left=left, color=color, height=0.6, label=part)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(ys)
    ax.set_yticklabels([r["label"] for r in rows], fontsize=7)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("ms per token (measured)")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if not any(left):
        ax.set_xlim(0, 1)
    return to_svg(fig)


def nice_max(x: float) -> float:
    """A round axis limit above x (for callers that want shared scales)."""
    if x <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e


def step_breakdown(rows: list[dict]) -> str:
    """Where one predicted decode step's time goes: each bar is one step split by term, in % of the step,
    with the step's ms per token at its end (devices differ 50× in speed; shares compare, ms do not).
    rows: {label, weights_s, dequant_s, kv_s, state_s, layer_overhead_s, compute_s}."""
    parts = [("weights_s", "weights", "#2e86c1"), ("dequant_s", "dequant", "#85c1e9"), ("kv_s", "KV cache", "#e67e22"),
             ("state_s", "DeltaNet state", "#17a589"), ("layer_overhead_s", "per-layer overhead", "#aaaaaa")]
    fig, ax = plt.subplots(figsize=(6.4, 0.7 + 0.2 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    totals = [sum(r.get(k) or 0.0 for k, _, _ in parts) or 1.0 for r in rows]
    left = [0.0] * len(rows)
    for key, label, color in parts:
        vals = [100.0 * (r.get(key) or 0.0) / t for r, t in zip(rows, totals)]
        ax.barh(ys, vals, left=left, color=color, height=0.7, label=label)
        left = [a + b for a, b in zip(left, vals)]
    for y, t in zip(ys, totals):
        ax.text(101.5, y, f"{t * 1000:.1f} ms", va="center", fontsize=6.5, color="#333")
    ax.set_yticks(ys)
    ax.set_yticklabels([r["label"] for r in rows], fontsize=6.8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, 100)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("% of the time per decoded token (predicted, batch 1, Q4_K_M, KV F16)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.12, 1.0))
    return to_svg(fig, label="Predicted decode time per token by term, hybrid against dense, short against long context")
