"""The yardsticks measured in every gate run, sharing no code with what the gate times: a read over 256 MiB
(memory-bound benchmarks are divided by it) and a fixed fp32 BLAS GEMM (compute-bound ones). Like the product
benchmarks, each reports its fastest sample (load only ever adds time)."""

import torch

from qlab.kernels.cost import OpCost


def test_probe_bandwidth(benchmark):
    x = torch.rand(64 * 2**20)  # 256 MiB of fp32: far beyond any last-level cache
    cost = OpCost(x.numel() * 4, x.numel())
    benchmark.pedantic(x.sum, rounds=20, warmup_rounds=2)
    benchmark.extra_info.update(bound="memory", bytes=cost.bytes, gbs=cost.bytes / benchmark.stats.stats.min / 1e9)


def test_probe_matmul(benchmark):
    g = torch.Generator().manual_seed(42)
    a, b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    cost = OpCost(3 * 1024 * 1024 * 4, 2 * 1024**3)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=20, warmup_rounds=3)
    benchmark.extra_info.update(bound="compute", flops=cost.flops,
                                gflops=cost.flops / benchmark.stats.stats.min / 1e9)
