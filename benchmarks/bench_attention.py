"""CPU attention at Qwen3.6-27B shapes (HQ=24, HKV=4, D=256, bf16): decode GB/s of KV read against the
machine's measured read bandwidth, prefill GFLOP/s.

    python -m pytest benchmarks/bench_attention.py --benchmark-enable [-k "decode and 32768"]

Each case records in `benchmark.extra_info` the bytes / FLOPs of one call (qlab.kernels.attention.cost), the
achieved GB/s or GFLOP/s from the median time, and for decode the read bandwidth (a large torch sum, measured
once) and the fraction of it reached. A decoded token calls decode once per attention layer (16 times).
"""

from __future__ import annotations

import functools
import time

import pytest
import torch

from qlab.kernels import attention as A
from qlab.kernels.attention import cost

HQ, HKV, D = 24, 4, 256


@functools.lru_cache(maxsize=1)
def read_bandwidth_gbs() -> float:
    """Best of 5 sums over 512 MiB of fp32 with torch's threads: the read rate a streaming kernel can hope for."""
    x = torch.ones(128 * 2**20, dtype=torch.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


THREADS = sorted({1, torch.get_num_threads()})


@pytest.fixture(params=THREADS, ids=lambda n: f"t{n}")
def threads(request):
    """Both 1 thread and torch's default: on a shared machine one thread often wins (no OpenMP waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _median(benchmark) -> float:
    return benchmark.stats.stats.median


def _decode_inputs(S: int, kv: str):
    g = torch.Generator().manual_seed(42)
    q = torch.randn(1, HQ, D, generator=g).bfloat16()
    k = torch.randn(1, HKV, S, D, generator=g).bfloat16()
    v = torch.randn(1, HKV, S, D, generator=g).bfloat16()
    kw = {}
    if kv == "fp8":
        ks = k.float().abs().amax(dim=(2, 3)) / 448
        vs = v.float().abs().amax(dim=(2, 3)) / 448
        k = (k.float() / ks[:, :, None, None]).to(torch.float8_e4m3fn)
        v = (v.float() / vs[:, :, None, None]).to(torch.float8_e4m3fn)
        kw = {"k_scale": ks, "v_scale": vs}
    return q, k, v, torch.tensor([S]), kw


@pytest.mark.parametrize("S", [4096, 32768, 131072])
@pytest.mark.parametrize("impl,kv", [("sdpa", "bf16"), ("sdpa", "fp8")])
def test_decode_cpu(benchmark, impl, kv, S, threads):
    q, k, v, lengths, kw = _decode_inputs(S, kv)
    benchmark.pedantic(A.decode, args=(q, k, v, lengths), kwargs=dict(impl=impl, scale=1 / 16, **kw),
                       rounds=5 if S <= 32768 else 3, iterations=1, warmup_rounds=1)
    c = cost.decode(1, HQ, HKV, D, S, kv_bytes=1 if kv == "fp8" else 2)
    gbs = c.bytes / _median(benchmark) / 1e9
    bw = read_bandwidth_gbs()
    benchmark.extra_info.update(threads=threads, bytes=c.bytes, flops=c.flops, gbs=round(gbs, 2),
                                read_bw_gbs=round(bw, 2),
                                frac_of_bw=round(gbs / bw, 3), ms_per_token_16_layers=round(
                                    16 * _median(benchmark) * 1e3, 1))


@pytest.mark.parametrize("T", [512, 4096])
@pytest.mark.parametrize("impl", ["sdpa"])
def test_prefill_cpu(benchmark, impl, T, threads):
    g = torch.Generator().manual_seed(42)
    q = torch.randn(1, T, HQ, D, generator=g).bfloat16()
    k = torch.randn(1, T, HKV, D, generator=g).bfloat16()
    v = torch.randn(1, T, HKV, D, generator=g).bfloat16()
    benchmark.pedantic(A.prefill, args=(q, k, v), kwargs=dict(impl=impl, scale=1 / 16),
                       rounds=3 if T <= 512 else 1, iterations=1, warmup_rounds=1 if T <= 512 else 0)
    c = cost.prefill(1, T, HQ, HKV, D)
    benchmark.extra_info.update(threads=threads, bytes=c.bytes, flops=c.flops,
                                gflops=round(c.flops / _median(benchmark) / 1e9, 1))
