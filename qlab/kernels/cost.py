"""OpCost: bytes moved and FLOPs done by one call of a kernel. Each op's formulas live in its package's
`cost.py` (torch-free) and are reused by the benchmarks, the autotuner's cost model and the predictor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpCost:
    bytes: float   # minimum bytes read + written from main memory
    flops: float   # floating-point operations (a multiply-add counts 2)

    def __add__(self, other: "OpCost") -> "OpCost":
        return OpCost(self.bytes + other.bytes, self.flops + other.flops)

    def __mul__(self, k: float) -> "OpCost":
        return OpCost(self.bytes * k, self.flops * k)

    __rmul__ = __mul__

    @property
    def intensity(self) -> float:
        """FLOPs per byte: against a device's FLOP/byte ratio, says whether the op is memory- or compute-bound."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def time_s(self, bandwidth_gbs: float, tflops: float) -> float:
        """Roofline time: the larger of bytes over bandwidth and FLOPs over compute."""
        return max(self.bytes / (bandwidth_gbs * 1e9), self.flops / (tflops * 1e12))
