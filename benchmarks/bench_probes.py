"""The yardsticks measured in every gate run, sharing no code with what the gate times: a read over 96 MiB
(memory-bound benchmarks are divided by it) and a fixed 512³ fp32 BLAS GEMM (compute-bound ones). Like the
product benchmarks each reports its fastest sample, and each sample is a few milliseconds, as theirs are: on a
shared machine a short sample finds a quiet moment more often than a long one, so a probe of long samples would
be slowed by load more than the benchmarks it normalises."""

import torch

from qlab.kernels.cost import OpCost


def test_probe_bandwidth(benchmark):
    x = torch.rand(24 * 2**20)  # 96 MiB of fp32: three times the largest last-level cache of the CI machines
    cost = OpCost(x.numel() * 4, x.numel())
    benchmark.pedantic(x.sum, rounds=60, warmup_rounds=3)
    benchmark.extra_info.update(bound="memory", bytes=cost.bytes, gbs=cost.bytes / benchmark.stats.stats.min / 1e9)


def test_probe_matmul(benchmark):
    g = torch.Generator().manual_seed(42)
    a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
    cost = OpCost(3 * 512 * 512 * 4, 2 * 512**3)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=60, warmup_rounds=3)
    benchmark.extra_info.update(bound="compute", flops=cost.flops,
                                gflops=cost.flops / benchmark.stats.stats.min / 1e9)
