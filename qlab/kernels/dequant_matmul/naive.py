"""`naive`: the reference — dequantize the whole weight to fp32, then one fp32 matmul.

    y [M, N] = x [M, K] · W [N, K]ᵀ,   W = dequantize(qw)
"""

from __future__ import annotations

from .weight import QuantizedWeight, dequantize


def matmul(x, qw: QuantizedWeight, config: dict | None = None):
    if config:
        raise ValueError(f"dequant_matmul impl 'naive' has no tunables; got {sorted(config)}")
    return x.float() @ dequantize(qw).t()
