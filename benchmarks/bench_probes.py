"""Reference workloads measured in every benchmark run, so that the gate can compare like with like:
each suite's times are divided by the probe of their kind (memory- or compute-bound) from the same run."""

import torch

from qlab.kernels.cost import OpCost


def test_probe_bandwidth(benchmark):
    x = torch.rand(64 * 2**20)  # 256 MiB of fp32: far beyond any last-level cache
    cost = OpCost(x.numel() * 4, x.numel())
    benchmark.extra_info.update(bound="memory", bytes=cost.bytes)
    benchmark.pedantic(x.sum, rounds=15, warmup_rounds=2)
    benchmark.extra_info["gbs"] = cost.bytes / benchmark.stats.stats.median / 1e9


def test_probe_matmul(benchmark):
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    cost = OpCost(3 * 512 * 512 * 4, 2 * 512**3)
    benchmark.extra_info.update(bound="compute", flops=cost.flops)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=30, warmup_rounds=3)
    benchmark.extra_info["gflops"] = cost.flops / benchmark.stats.stats.median / 1e9
