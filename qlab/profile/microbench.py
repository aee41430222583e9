"""Microbenchmarks: what this device's memory and compute really deliver.

Read bandwidth: a sum over a buffer far larger than the last-level cache (bytes read once).
Copy bandwidth: dst.copy_(src) (bytes read + bytes written).
Matmul rate: square GEMMs per dtype, 2·n³ FLOPs each.
Launch overhead (GPU only): the time of an empty-ish kernel, back to back.
Every figure is the median of several repeats after a warm-up; on GPUs timed with device events.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from qlab.kernels.cost import OpCost


def _timer(device: str) -> Callable[[Callable[[], object], int, int], list[float]]:
    import torch

    def time_cpu(fn, warmup: int, repeats: int) -> list[float]:
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    def time_cuda(fn, warmup: int, repeats: int) -> list[float]:
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        out = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        return out

    return time_cuda if device.startswith("cuda") else time_cpu


def _result(name: str, cost: OpCost, times: list[float], **extra) -> dict:
    t = statistics.median(times)
    return {"name": name, "time_s": t, "bytes": cost.bytes, "flops": cost.flops,
            "gbs": cost.bytes / t / 1e9, "tflops": cost.flops / t / 1e12,
            "spread": (max(times) - min(times)) / t if t else 0.0, "repeats": len(times), **extra}


def read_bandwidth(device: str = "cpu", nbytes: int = 1 << 30, repeats: int = 7) -> dict:
    """GB/s of a streaming read (a float32 sum over `nbytes`)."""
    import torch

    x = torch.rand(nbytes // 4, device=device)
    return _result("read", OpCost(x.numel() * 4, x.numel()), _timer(device)(lambda: x.sum(), 2, repeats))


def copy_bandwidth(device: str = "cpu", nbytes: int = 1 << 29, repeats: int = 7) -> dict:
    """GB/s of dst.copy_(src), counting bytes read plus bytes written."""
    import torch

    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    return _result("copy", OpCost(2 * src.numel() * 4, 0), _timer(device)(lambda: dst.copy_(src), 2, repeats))


def matmul_rate(device: str = "cpu", dtype: str = "float32", n: int = 2048, repeats: int = 5) -> dict:
    """TFLOPS of an n×n×n GEMM in `dtype`."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n, device=device).to(dt)
    b = torch.randn(n, n, device=device).to(dt)
    cost = OpCost(3 * n * n * a.element_size(), 2 * n**3)
    return _result(f"matmul_{dtype}", cost, _timer(device)(lambda: a @ b, 1, repeats), dtype=dtype, n=n)


def launch_overhead(device: str = "cuda", repeats: int = 200) -> dict:
    """Seconds per tiny kernel launched back to back (what bounds a decode step of many small ops)."""
    import torch

    x = torch.zeros(1, device=device)
    batch = 100
    times = _timer(device)(lambda: [x.add_(1) for _ in range(batch)], 5, repeats // batch + 3)
    return {"name": "launch", "time_s": statistics.median(times) / batch, "repeats": len(times) * batch}


def run_all(device: str = "cpu", quick: bool = False) -> dict:
    """All microbenchmarks for `device`; each figure also says how it was measured."""
    import torch

    nbytes = (1 << 29) if quick else (1 << 30)
    dtypes = ["float32", "bfloat16"] + (["float16"] if device != "cpu" else [])
    n = 1024 if quick and device == "cpu" else 2048 if device == "cpu" else 8192
    out = {
        "read": read_bandwidth(device, nbytes),
        "copy": copy_bandwidth(device, nbytes // 2),
        "matmul": {d: matmul_rate(device, d, n) for d in dtypes},
        "threads": torch.get_num_threads() if device == "cpu" else None,
    }
    if device.startswith("cuda"):
        out["launch"] = launch_overhead(device)
    out["read_gbs"] = out["read"]["gbs"]
    out["copy_gbs"] = out["copy"]["gbs"]
    out["matmul_tflops"] = {d: r["tflops"] for d, r in out["matmul"].items()}
    return out
