"""The yardsticks of the timing gate: small fixed workloads that share no code with what the gate times.

- "memory": a read of 320 MiB (a sum), ten times the 32 MiB last-level cache of the CI machines;
- "compute": a fixed 512³ fp32 BLAS GEMM on torch's threads, for the multi-threaded compute-bound paths;
- "compute_1thread": the same GEMM on one thread, for the single-threaded element-wise C ops (when a neighbour
  takes one of a 2-vCPU machine's cores, a 2-thread probe slows and a 1-thread op does not).

The read streams ten times the cache, and every memory-bound benchmark at least eight times (bench_product.py's
STREAM_BYTES), so that neither is served in part from a cache whose share depends on the VM's neighbours: decode
streams gigabytes a token, all from DRAM.

Each product benchmark names the kind its own work is (`bound`) and samples that probe right before each of its
own rounds (benchmarks/bench_product.py), so the two see the same moment of a shared machine: on these VMs the
read bandwidth drifts by a third over seconds, and a probe timed once per run, a minute away, does not follow it.
A sample is a few to ~12 milliseconds, as the benchmarks' are.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qlab.kernels.cost import OpCost

PROBE_MIB = 320
GEMM_N = 512
KINDS = ("memory", "compute", "compute_1thread")


def make(kind: str) -> tuple[Callable[[], object], OpCost]:
    """A probe of `kind` (its buffers allocated now, once) and what one call moves and computes."""
    import torch

    if kind == "memory":
        src = torch.rand(PROBE_MIB * 2**20 // 4)
        return src.sum, OpCost(src.numel() * 4, src.numel())
    if kind in ("compute", "compute_1thread"):
        g = torch.Generator().manual_seed(42)
        a, b = torch.randn(GEMM_N, GEMM_N, generator=g), torch.randn(GEMM_N, GEMM_N, generator=g)
        cost = OpCost(3 * GEMM_N * GEMM_N * 4, 2 * GEMM_N**3)
        if kind == "compute":
            return (lambda: torch.mm(a, b)), cost
        return (lambda: _on_one_thread(torch.mm, a, b)), cost
    raise ValueError(f"probe kind {kind!r}: expected one of {', '.join(KINDS)}")


def _on_one_thread(fn, *args):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
