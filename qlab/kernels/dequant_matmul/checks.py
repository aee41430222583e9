"""The dequantizing matmul's check for the kernel registry's validate(): an impl against the fp32 reference."""

from __future__ import annotations

from qlab.kernels.registry import Impl

# formats checked by validate(): one per block family, those the impl reads
_CHECK_FORMATS = ("Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "INT4-G128")


def check(rec: Impl, device: str) -> list[dict]:
    """rec against the fp32 reference on fresh random weights (N=64, K=512) at M = 1 and 3, on `device`."""
    import torch

    from qlab.testing import rel_rms_error

    from .api import matmul
    from .weight import SUPPORTED, quantize

    gen = torch.Generator().manual_seed(42)
    rows = []
    fmts = [f for f in _CHECK_FORMATS if f in SUPPORTED and rec.reads(f)]
    tol = 1.5e-2 if "int8_activations" in rec.features else 1e-3   # llama.cpp's ~0.5% activation rounding
    for fmt in fmts:
        qw = quantize(torch.randn(64, 512, generator=gen), fmt)
        for M in (1, 3):
            x = torch.randn(M, 512, generator=gen)
            want = matmul(x, qw, impl="naive")
            got = matmul(x.to(device), qw, impl=rec.name).cpu()
            rows.append({"case": f"{fmt} M={M} N=64 K=512", "rel_rms": rel_rms_error(want, got), "tol": tol})
    return rows
