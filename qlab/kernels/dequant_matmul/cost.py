"""Bytes and FLOPs of the dequantizing matmul y[M, N] = x[M, K] · Wᵀ, W stored in a block format (torch-free)."""

from __future__ import annotations

from qlab.formats import get_format
from qlab.kernels.cost import OpCost


def matmul(M: int, N: int, K: int, fmt: str, io_bytes: int = 2) -> OpCost:
    """Weights read once (their stored bytes, scales included), x read and y written once; 2·M·N·K FLOPs."""
    weights = N * get_format(fmt).nbytes(K)
    return OpCost(weights + M * K * io_bytes + M * N * io_bytes, 2 * M * N * K)
