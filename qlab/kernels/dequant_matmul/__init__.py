"""Dequantizing matmul y = x · Wᵀ with W in GGUF block formats (byte-compatible with ggml), INT4-G128 or FP8.

    from qlab.kernels.dequant_matmul import quantize, dequantize, matmul
    qw = quantize(w, "Q4_K")                 # w [N, K] float -> QuantizedWeight (raw: ggml's bytes)
    y = matmul(x, qw, impl="torch_cpu")      # x [M, K] -> y [M, N] fp32
"""

from .api import IMPLS, available_impls, matmul, matmul_many, prepare
from .gguf_io import from_gguf_tensor
from .weight import SUPPORTED, QuantizedWeight, dequantize, quantize

__all__ = ["IMPLS", "SUPPORTED", "QuantizedWeight", "available_impls", "dequantize", "from_gguf_tensor", "matmul",
           "matmul_many", "prepare", "quantize"]
