"""`matmul(x, qw, impl=...)`: one entry point over the impls, with the input checks they share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from . import cost as _cost
from .tunables import TRITON_FORMATS
from .weight import QuantizedWeight


def _naive(x, qw, config):
    from .naive import matmul
    return matmul(x, qw, config)


def _torch_cpu(x, qw, config):
    from .torch_cpu import matmul
    return matmul(x, qw, config)


def _cpu_int8(x, qw, config):
    from .cpu_int8 import matmul
    return matmul(x, qw, config)


def _triton(x, qw, config):
    from .triton_gemv import matmul
    return matmul(x, qw, config)


def _cupy(x, qw, config):
    from .cupy_gemv import matmul
    return matmul(x, qw, config)


@dataclass(frozen=True)
class Impl:
    name: str
    fn: Callable
    formats: tuple[str, ...] | None  # None: every format
    note: str

    def cost(self, M: int, N: int, K: int, fmt: str):
        """Bytes and FLOPs of one call (weights read once, x read, y written): qlab.kernels.cost.OpCost."""
        return _cost.matmul(M, N, K, fmt, io_bytes=4)


CUPY_FORMATS = ("Q8_0", "Q4_K", "INT4-G128")
IMPLS = {
    "naive": Impl("naive", _naive, None, "dequantize the whole weight, fp32 matmul (reference)"),
    "torch_cpu": Impl("torch_cpu", _torch_cpu, None, "C GEMV for Q8_0/Q4_K (M<=16); tiled dequant + BLAS"),
    "cpu_int8": Impl("cpu_int8", _cpu_int8, None, "int8 activations + integer dot for Q8_0/Q4_K/Q5_K/Q6_K "
                     "(llama.cpp's numerics, ~0.5% error); other formats as torch_cpu"),
    "triton": Impl("triton", _triton, TRITON_FORMATS, "fused dequant GEMV/GEMM, split-K"),
    "cupy": Impl("cupy", _cupy, CUPY_FORMATS, "CUDA C GEMV (M<=8) through cupy.RawModule"),
}


def available_impls() -> list[str]:
    """Impls that can run here: triton needs a CUDA GPU or TRITON_INTERPRET=1, cupy needs cupy and a GPU."""
    out = ["naive", "torch_cpu", "cpu_int8"]
    try:
        import torch
        gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        gpu = False
    try:
        import triton  # noqa: F401
        if gpu or os.environ.get("TRITON_INTERPRET") == "1":
            out.append("triton")
    except ImportError:
        pass
    if gpu:
        try:
            import cupy  # noqa: F401
            out.append("cupy")
        except ImportError:
            pass
    return out


def prepare(qw: QuantizedWeight, impl: str = "torch_cpu", device=None) -> QuantizedWeight:
    """Do `impl`'s load-time work for qw now rather than on its first matmul (cached on qw.prepared):
    torch_cpu builds its C kernels and wraps the bytes (no copy, no repack); triton and cupy copy the bytes to
    the GPU (`device`, default "cuda"); naive has nothing to do."""
    if impl not in IMPLS:
        raise ValueError(f"unknown dequant_matmul impl {impl!r}; impls: {', '.join(IMPLS)}")
    if impl in ("torch_cpu", "cpu_int8"):
        from qlab.kernels.cpu_build import load
        from .torch_cpu import prepare as prep

        load()
        prep(qw)
    elif impl == "triton":
        from .triton_gemv import prepare as prep

        prep(qw, device or "cuda")
    elif impl == "cupy":
        from .cupy_gemv import prepare as prep

        prep(qw)
    return qw


def matmul_many(x, qws: list[QuantizedWeight], *, impl: str = "naive", config: dict | None = None) -> list:
    """[matmul(x, qw, impl=impl) for qw in qws]: several weights applied to one input. cpu_int8 runs them as
    one call where it can (cpu_int8.matmul_many); the other impls one by one."""
    for qw in qws:
        _check(x, qw, impl)
    if impl == "cpu_int8":
        from .cpu_int8 import matmul_many as many

        return many(x, list(qws), config)
    return [IMPLS[impl].fn(x, qw, config) for qw in qws]


def matmul(x, qw: QuantizedWeight, *, impl: str = "naive", config: dict | None = None):
    """y [M, N] (fp32) = x [M, K] · dequantize(qw)ᵀ with the chosen impl (see IMPLS)."""
    _check(x, qw, impl)
    return IMPLS[impl].fn(x, qw, config)


def _check(x, qw, impl: str) -> None:
    import torch

    if impl not in IMPLS:
        raise ValueError(f"unknown dequant_matmul impl {impl!r}; impls: {', '.join(IMPLS)}")
    if not isinstance(qw, QuantizedWeight):
        raise ValueError(f"matmul: qw must be a QuantizedWeight, got {type(qw).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.dtype.is_floating_point:
        got = f"{x.dtype} with shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"matmul: x must be a 2-D float tensor [M, K], got {got}")
    if x.shape[1] != qw.shape[1]:
        raise ValueError(f"matmul: x has K={x.shape[1]} but weight {qw.name or ''} has shape {qw.shape} (N, K)")
    entry = IMPLS[impl]
    if entry.formats is not None and qw.fmt not in entry.formats:
        raise ValueError(f"dequant_matmul impl {impl!r} does not support {qw.fmt}; it supports "
                         f"{', '.join(entry.formats)}")
