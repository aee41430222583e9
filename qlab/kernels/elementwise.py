"""The decode loop's element-wise ops with a C path on the CPU (elementwise_cpu.c): RMSNorm, the residual add
fused with the norm after it, and SwiGLU. Each falls back to torch where the C path does not apply (another
device or dtype, rows that are not evenly strided, no C compiler), with the same result up to float rounding.
elementwise_cpu.c says why these tiny ops are worth C: after a large matmul, a torch call costs its cold
dispatch, ~5x a ctypes call."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def c_kernels(*tensors: torch.Tensor):
    """qlab's C kernels if every tensor is an fp32 CPU tensor without autograd and they build here, else None."""
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or t.requires_grad for t in tensors):
        return None
    from qlab.kernels.cpu_build import BuildError, load

    try:
        return load()
    except BuildError:
        return None


def _row_stride(x: torch.Tensor) -> int | None:
    """The element stride between consecutive rows of x viewed as [-1, D], or None if its rows are not evenly
    strided (or its last dim is)."""
    if x.stride(-1) != 1 and x.shape[-1] > 1:
        return None
    lead = [d for d in range(x.dim() - 1) if x.shape[d] > 1]   # size-1 dims have no meaningful stride
    if not lead:
        return x.shape[-1]
    for d, e in zip(lead, lead[1:]):   # the leading dims must collapse into one
        if x.stride(d) != x.stride(e) * x.shape[e]:
            return None
    return x.stride(lead[-1])


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """y = s / sqrt(mean(s²) + eps) · weight over the last dim, s = x (+ residual). Returns y, or (s, y) when a
    residual is given. fp32 math; results in x's dtype."""
    D = x.shape[-1]
    lib = c_kernels(x, weight) if residual is None else c_kernels(x, weight, residual)
    ld = _row_stride(x) if lib is not None else None
    if ld is None or (residual is not None and (residual.shape != x.shape or not residual.is_contiguous())):
        s = x if residual is None else x + residual
        y = F.rms_norm(s.float(), (D,), weight.float(), eps).to(x.dtype)
        return y if residual is None else (s, y)
    weight = weight.contiguous()
    y = torch.empty(x.shape, dtype=torch.float32)
    s = torch.empty(x.shape, dtype=torch.float32) if residual is not None else None
    lib.qlab_rms_norm(x.data_ptr(), ld, residual.data_ptr() if residual is not None else None, weight.data_ptr(),
                      s.data_ptr() if s is not None else None, y.data_ptr(), x.numel() // D, D, eps)
    return y if residual is None else (s, y)


def silu(x: torch.Tensor) -> torch.Tensor:
    """x · sigmoid(x), through the C path's exp (cpu_math.h: llama.cpp's rounding) where it applies."""
    lib = c_kernels(x)
    if lib is None or not x.is_contiguous():
        return F.silu(x)
    y = torch.empty_like(x)
    lib.qlab_silu(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up (same shapes)."""
    if gate.shape != up.shape:
        raise ValueError(f"up: shape {list(up.shape)} != gate shape {list(gate.shape)}")
    lib = c_kernels(gate, up)
    if lib is None or not gate.is_contiguous() or not up.is_contiguous():
        return F.silu(gate) * up
    y = torch.empty_like(gate)
    lib.qlab_swiglu(gate.data_ptr(), up.data_ptr(), y.data_ptr(), gate.numel())
    return y
