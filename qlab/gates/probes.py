"""The yardsticks of the timing gate: small fixed workloads that share no code with what the gate times.

- "memory": a read of 96 MiB (a sum), three times the largest last-level cache of the CI machines;
- "memory_rw": a copy of 96 MiB into another 96 MiB (read + write), the pattern of a state updated in place;
- "compute": a fixed 512³ fp32 BLAS GEMM.

Each product benchmark names the kind its own work is (`bound`) and samples that probe right before each of its
own rounds (benchmarks/bench_product.py), so the two see the same moment of a shared machine: on these VMs the
read bandwidth drifts by a third over seconds, and a probe timed once per run, a minute away, does not follow it.
A sample is a few milliseconds, as the benchmarks' are.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qlab.kernels.cost import OpCost

PROBE_MIB = 96
GEMM_N = 512
KINDS = ("memory", "memory_rw", "compute")


def make(kind: str) -> tuple[Callable[[], object], OpCost]:
    """A probe of `kind` (its buffers allocated now, once) and what one call moves and computes."""
    import torch

    if kind in ("memory", "memory_rw"):
        src = torch.rand(PROBE_MIB * 2**20 // 4)
        if kind == "memory":
            return src.sum, OpCost(src.numel() * 4, src.numel())
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), OpCost(2 * src.numel() * 4, 0)
    if kind == "compute":
        g = torch.Generator().manual_seed(42)
        a, b = torch.randn(GEMM_N, GEMM_N, generator=g), torch.randn(GEMM_N, GEMM_N, generator=g)
        return (lambda: torch.mm(a, b)), OpCost(3 * GEMM_N * GEMM_N * 4, 2 * GEMM_N**3)
    raise ValueError(f"probe kind {kind!r}: expected one of {', '.join(KINDS)}")


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
