"""CPU Gated DeltaNet at Qwen3.6-27B shapes (H=16, HV=48, K=V=128): the decode step of one sequence (GB/s of
state + io bytes, cost.recurrent) and a 512-token prefill (GFLOP/s of cost.chunk), against the machine's
measured read bandwidth and fp32 matmul rate.

    python -m pytest benchmarks/bench_deltanet.py --benchmark-enable [-k decode]

A decoded token runs the decode step once per DeltaNet layer (48 times), so its time x 48 is the scan's share
of a token. Inputs are fp32 (bf16 activations are converted to fp32 inside every CPU path anyway).
"""

from __future__ import annotations

import functools
import time

import pytest
import torch

from qlab.kernels import registry
from qlab.kernels.deltanet import cost, gated_delta_rule
from qlab.kernels.deltanet.inputs import make_inputs
from qlab.kernels.deltanet.tunables import DEFAULTS

SHAPE = dict(H=16, HV=48, K=128, V=128)


@functools.lru_cache(maxsize=1)
def machine_peaks() -> dict:
    """Best-of-5 read bandwidth (a sum over 512 MiB) and fp32 matmul rate (2048^3) with torch's threads."""
    x = torch.ones(128 * 2**20)
    a = torch.randn(2048, 2048)
    bw = mm = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x.sum()
        bw = min(bw, time.perf_counter() - t)
        t = time.perf_counter()
        a @ a
        mm = min(mm, time.perf_counter() - t)
    return {"read_gbs": x.numel() * 4 / bw / 1e9, "matmul_gflops": 2 * 2048**3 / mm / 1e9,
            "threads": torch.get_num_threads()}


def _inputs(T):
    x = make_inputs(1, T, SHAPE["H"], SHAPE["HV"], SHAPE["K"], SHAPE["V"], decay="weak")
    x["initial_state"] = x["initial_state"] * 0.1
    return x


@pytest.mark.parametrize("impl", ["naive", "recurrent_torch", "recurrent_cpu"])
def test_decode_step(benchmark, impl):
    x = _inputs(1)
    h0 = x["initial_state"].clone()
    # the decode loop's way: the state buffer is updated in place (the reference keeps its own copy)
    inplace = impl != registry.reference("deltanet").name
    # the state is reset before every round: thousands of steps on the same token would decay the directions
    # it never writes into denormals (slow on x86), which a real token stream does not
    def reset():
        x["initial_state"].copy_(h0)

    benchmark.pedantic(lambda: gated_delta_rule(**x, use_qk_l2norm=True, impl=impl, inplace_state=inplace),
                       setup=reset, rounds=100, warmup_rounds=3)
    c = cost.recurrent(1, 1, **SHAPE, io_bytes=4)
    t = benchmark.stats.stats.median
    peaks = machine_peaks()
    benchmark.extra_info.update(
        bytes=c.bytes, flops=c.flops, median_us=t * 1e6, gbs=c.bytes / t / 1e9,
        read_gbs=peaks["read_gbs"], fraction_of_read_bw=c.bytes / t / 1e9 / peaks["read_gbs"],
        ms_per_token_48_layers=t * 48 * 1e3)


@pytest.mark.parametrize("impl,config", [
    ("chunk_torch", None), ("chunk_torch", {"chunk_size": 128}), ("recurrent_torch", None)],
    ids=["chunk_torch", "chunk_torch-C128", "recurrent_torch"])
def test_prefill_512(benchmark, impl, config):
    x = _inputs(512)
    benchmark.pedantic(lambda: gated_delta_rule(**x, use_qk_l2norm=True, impl=impl, config=config),
                       rounds=5, warmup_rounds=1)
    chunk = (config or DEFAULTS["chunk_torch"])["chunk_size"]
    c = cost.chunk(1, 512, **SHAPE, chunk_size=chunk, io_bytes=4)  # the chunked algorithm's work, for both
    t = benchmark.stats.stats.median
    peaks = machine_peaks()
    benchmark.extra_info.update(
        flops=c.flops, bytes=c.bytes, median_ms=t * 1e3, gflops=c.flops / t / 1e9,
        matmul_gflops=peaks["matmul_gflops"], fraction_of_matmul_peak=c.flops / t / 1e9 / peaks["matmul_gflops"],
        tokens_per_s=512 / t)
