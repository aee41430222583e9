"""A test-only switch that slows one benchmarked product path, so a test can prove the gate catches it.

    QLAB_GATE_SLOWDOWN="matmul_int8[Q4_K]:1.5,deltanet_layer_step"   (factor 1.5 where none is given)

`slowed(name, fn)` returns `fn` itself unless the variable names `name` (or "all"); then a wrapper that runs
`fn`, measures it, and busy-waits (factor - 1) times as long, so every timed call is `factor` times slower
whatever the machine's load. Busy-waiting, not sleeping: a sleeping thread frees the core, which on a 2-core
machine would change what the other thread of the benchmark sees. Never set outside tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

ENV = "QLAB_GATE_SLOWDOWN"


def slowdown_factor(name: str, env: str | None = None) -> float:
    """The factor the switch asks for `name` (1.0: none)."""
    spec = os.environ.get(ENV, "") if env is None else env
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        key, _, factor = item.rpartition(":") if ":" in item else (item, "", "")
        if key in (name, "all"):
            return float(factor or 1.5)
    return 1.0


def slowed(name: str, fn: Callable) -> Callable:
    factor = slowdown_factor(name)
    if factor == 1.0:
        return fn

    def slow(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        until = time.perf_counter() + (factor - 1.0) * (time.perf_counter() - t0)
        while time.perf_counter() < until:
            pass
        return out

    return slow
