"""torch_cpu dequantizing matmul at Qwen3.6-27B shapes: GB/s of weight bytes against the measured read bandwidth.

    python -m pytest benchmarks/bench_dequant_matmul.py --benchmark-enable [-k "cpu_int8 and Q4_K and M1"]

Each case records in `benchmark.extra_info`: the weight bytes (qlab.kernels.dequant_matmul.cost), achieved GB/s,
the machine's read bandwidth (a large torch sum, measured once) and the fraction of it reached.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

from qlab.kernels.dequant_matmul import QuantizedWeight, matmul, quantize
from qlab.kernels.dequant_matmul import cost

SHAPES = {"ffn_up": (17408, 5120), "ffn_down": (5120, 17408), "qkv": (10240, 5120)}  # (N, K): K -> N
FORMATS = ["Q8_0", "Q4_K", "Q6_K", "Q5_K", "Q4_0", "IQ4_XS", "INT4-G128", "FP8", "BF16"]
INT8_FORMATS = ["Q8_0", "Q4_K", "Q6_K", "Q5_K"]


@functools.lru_cache(maxsize=1)
def read_bandwidth_gbs() -> float:
    """Best of 5 sums over 1 GiB of fp32 with torch's threads: the read bandwidth a GEMV can hope for."""
    a = torch.ones(1 << 28)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.numel() * 4 / best / 1e9


@functools.lru_cache(maxsize=4)
def weight(fmt: str, n: int, k: int) -> QuantizedWeight:
    """Valid blocks at full size, cheaply: quantize 64 random rows, then repeat them (GB/s does not care)."""
    g = torch.Generator().manual_seed(42)
    small = quantize(torch.randn(64, k, generator=g), fmt)
    raw = np.ascontiguousarray(np.tile(small.raw, (n // 64, 1)))
    scale = None if small.scale is None else np.tile(small.scale, n // 64)
    return QuantizedWeight(fmt, (n, k), raw, scale)


@pytest.mark.parametrize("M", [1, 8], ids=lambda m: f"M{m}")
@pytest.mark.parametrize("shape", list(SHAPES), ids=str)
@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_cpu(benchmark, fmt, shape, M):
    _run(benchmark, "torch_cpu", fmt, shape, M)


@pytest.mark.parametrize("M", [1, 8], ids=lambda m: f"M{m}")
@pytest.mark.parametrize("shape", list(SHAPES), ids=str)
@pytest.mark.parametrize("fmt", INT8_FORMATS)
def test_cpu_int8(benchmark, fmt, shape, M):
    """The decode loop's CPU default: int8 activations, integer dot products (llama.cpp's numerics)."""
    _run(benchmark, "cpu_int8", fmt, shape, M)


def _run(benchmark, impl, fmt, shape, M):
    N, K = SHAPES[shape]
    qw = weight(fmt, N, K)
    x = torch.randn(M, K, generator=torch.Generator().manual_seed(43))
    matmul(x, qw, impl=impl)  # build the kernels, warm the caches
    benchmark.pedantic(matmul, args=(x, qw), kwargs={"impl": impl}, rounds=5, iterations=1, warmup_rounds=1)
    t = benchmark.stats.stats.min
    weight_bytes = cost.matmul(M, N, K, fmt).bytes - (M * K + M * N) * 2  # the weights alone
    gbs = weight_bytes / t / 1e9
    bw = read_bandwidth_gbs()
    benchmark.extra_info.update({"fmt": fmt, "M": M, "N": N, "K": K, "weight_bytes": weight_bytes,
                                 "gbs": round(gbs, 2), "read_gbs": round(bw, 2), "fraction": round(gbs / bw, 3),
                                 "threads": torch.get_num_threads(), "impl": impl})
