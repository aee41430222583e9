"""Number formatting for the report: one place, so tables, figure labels and the tests agree on digits."""

from __future__ import annotations

import math


def sig(x: float | None, digits: int = 3) -> str:
    """`x` to `digits` significant digits without exponent: 1234 -> '1234', 31.234 -> '31.2', 0.04512 -> '0.0451'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    rounded = round(x, decimals)  # 0.09996 rounds up to 0.100: count digits on the rounded value
    if rounded != 0:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{x:.{decimals}f}"


def tok_s(x: float | None) -> str:
    return sig(x, 3)


def seconds(x: float | None) -> str:
    """A duration for people: '850 ms', '2.31 s', '1.5 min'."""
    if x is None or not math.isfinite(x):
        return "–"
    if x < 1.0:
        return f"{sig(x * 1000.0, 3)} ms"
    if x < 120.0:
        return f"{sig(x, 3)} s"
    return f"{sig(x / 60.0, 3)} min"


def gb(x: float | None) -> str:
    """GB (10^9 bytes) with one decimal: memory amounts are read to 0.1 GB."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.1f}"


def margin(x: float | None) -> str:
    """A signed margin in GB: '+3.1', '−2.4' (a real minus sign, so it reads well in print)."""
    if x is None or not math.isfinite(x):
        return "–"
    text = f"{abs(x):.0f}" if abs(x) >= 9.95 else f"{abs(x):.1f}"  # tenths matter only near the edge
    return ("+" if x >= 0 else "\u2212") + text


def usd(x: float | None) -> str:
    if x is None:
        return "–"
    return f"${x:,.0f}"


def context(n: int) -> str:
    """Token counts as people say them: 4096 -> '4K', 262144 -> '256K', 1000 -> '1000'."""
    if n >= 1024 and n % 1024 == 0:
        k = n // 1024
        return f"{k // 1024}M" if k >= 1024 and k % 1024 == 0 else f"{k}K"
    return str(n)


def pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{round(x)}%"  # an int: -0.4 reads "0%", not "-0%"


FILTERS = {"sig": sig, "tok_s": tok_s, "seconds": seconds, "gb": gb, "margin": margin, "usd": usd,
           "ctx": context, "pct": pct}
