"""The yardsticks measured once per gate run (qlab.gates.probes: a 320 MiB read, a fixed 512³ GEMM on all threads and on one),
sharing no code with what the gate times. Each product benchmark also samples its own probe between its rounds
(bench_product.py) and the gate prefers that one; these run-level ones normalise runs saved without it."""

from qlab.gates import probes


def _probe(benchmark, kind: str) -> None:
    fn, cost = probes.make(kind)
    benchmark.pedantic(fn, rounds=60, warmup_rounds=3)
    t = benchmark.stats.stats.min
    benchmark.extra_info.update(bound=kind, bytes=cost.bytes, gbs=cost.bytes / t / 1e9)
    if cost.flops and kind.startswith("compute"):
        benchmark.extra_info.update(flops=cost.flops, gflops=cost.flops / t / 1e9)


def test_probe_bandwidth(benchmark):
    _probe(benchmark, "memory")


def test_probe_matmul(benchmark):
    _probe(benchmark, "compute")



def test_probe_matmul_1thread(benchmark):
    _probe(benchmark, "compute_1thread")
