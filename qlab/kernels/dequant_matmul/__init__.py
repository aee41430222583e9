"""Dequantizing matmul y = x · Wᵀ with W in GGUF block formats (byte-compatible with ggml), INT4-G128 or FP8.

    from qlab.kernels.dequant_matmul import quantize, dequantize, matmul
    qw = quantize(w, "Q4_K")                 # w [N, K] float -> QuantizedWeight (raw: ggml's bytes)
    y = matmul(x, qw, impl="cpu_fp32")       # x [M, K] -> y [M, N] fp32

The impls are declared in impls.py (records of qlab.kernels.registry).
"""

from . import api
from .api import available_impls, matmul, matmul_many, prepare
from .gguf_io import from_gguf_tensor
from .weight import SUPPORTED, QuantizedWeight, dequantize, quantize


def __getattr__(name):   # IMPLS: the registry's records, read on use
    if name == "IMPLS":
        return api.IMPLS
    raise AttributeError(name)


__all__ = ["IMPLS", "SUPPORTED", "QuantizedWeight", "available_impls", "dequantize", "from_gguf_tensor", "matmul",
           "matmul_many", "prepare", "quantize"]
