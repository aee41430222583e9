"""`torch_cpu`: the fast CPU path of the dequantizing matmul (the decode loop runs on it).

Small M (decode, M <= gemv_max_m): every quantized type (Q8_0, Q4_0, Q2_K..Q6_K, IQ4_XS, MXFP4, FP8,
INT4-G128) goes through the C kernels of `cpu_kernels.c`, which read the
ggml blocks in place (no repack, no weight copy), decode them in vector registers and accumulate in fp32.
Float types (F16/BF16/F32), and large M (prefill), dequantize a bounded tile of rows at a time into one fp32 scratch
buffer (at most `tile_bytes`) and hand it to torch's BLAS matmul: the whole weight is never held dequantized.
"""

from __future__ import annotations

import warnings

import numpy as np

from .tunables import resolve
from .weight import QuantizedWeight, dequantize_rows

# formats with a C GEMV in cpu_kernels.c -> its entry point
GEMV_FORMATS = {f: f"qlab_{f.lower().replace('-', '_')}_gemm"
                for f in ("Q8_0", "Q4_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "MXFP4", "FP8", "INT4-G128")}
TILE_DEQUANT = {"Q8_0": "qlab_q8_0_dequant", "Q4_K": "qlab_q4_k_dequant"}


def _lib():
    """The C kernels, or None (with one warning) where they cannot be built: the tile path still works."""
    from qlab.kernels.cpu_build import BuildError, load

    try:
        return load()
    except BuildError as e:
        if not getattr(_lib, "warned", False):
            warnings.warn(f"torch_cpu: C kernels unavailable, using dequantized tiles + BLAS (slower): {e}")
            _lib.warned = True
        return None


def prepare(qw: QuantizedWeight) -> dict:
    """Per-weight state for this impl, cached on the weight: a torch view of the bytes (no copy)."""
    import torch

    state = qw.prepared.get("torch_cpu")
    if state is None:
        raw = qw.raw if qw.raw.flags.c_contiguous else np.ascontiguousarray(qw.raw)
        with warnings.catch_warnings():  # a read-only GGUF memory map: torch warns, we only ever read it
            warnings.simplefilter("ignore", UserWarning)
            state = {"raw": torch.from_numpy(raw)}
        if qw.scale is not None:  # FP8: per-channel scale, times the 256 the kernel's decode leaves out
            state["fp8_scale"] = torch.from_numpy(qw.scale.astype(np.float32) * np.float32(256))
        qw.prepared["torch_cpu"] = state
    return state


def _tile_rows(qw: QuantizedWeight, start: int, stop: int, out):
    """Dequantize rows start..stop of qw into out[:stop-start] (fp32), with the C decoder when there is one."""
    import torch

    name = TILE_DEQUANT.get(qw.fmt)
    lib = _lib() if name is not None else None
    if lib is not None:
        raw = prepare(qw)["raw"]
        getattr(lib, name)(raw[start].data_ptr(), stop - start, qw.shape[1], out.data_ptr(), torch.get_num_threads())
    else:
        out[: stop - start].copy_(torch.from_numpy(dequantize_rows(qw, start, stop)))


def matmul(x, qw: QuantizedWeight, config: dict | None = None):
    """y [M, N] fp32 = x [M, K] · dequantize(qw)ᵀ."""
    import torch

    cfg = resolve("torch_cpu", config)
    M, K = x.shape
    N = qw.shape[0]
    x = x.detach().to(torch.float32).contiguous()
    y = torch.empty((M, N), dtype=torch.float32)
    lib = _lib() if qw.fmt in GEMV_FORMATS and M <= cfg["gemv_max_m"] and K % 32 == 0 else None
    if lib is not None:
        raw = prepare(qw)["raw"]
        # small weights (the 5120 -> 48 projections) on one thread: waking the OpenMP team costs more than it saves
        threads = 1 if qw.raw.nbytes * M < cfg["single_thread_bytes"] else torch.get_num_threads()
        getattr(lib, GEMV_FORMATS[qw.fmt])(x.data_ptr(), M, K, raw.data_ptr(), N, y.data_ptr(), threads)
        if qw.fmt == "FP8":  # the kernel decodes e4m3·2^-8 (fp16 trick in cpu_kernels.c); scales go on per channel
            y.mul_(prepare(qw)["fp8_scale"])
        return y
    if qw.fmt == "F32":  # the bytes already are the matrix
        w = prepare(qw)["raw"].view(torch.float32).view(N, K)
        return torch.mm(x, w.t(), out=y)
    rows = max(1, min(N, cfg["tile_bytes"] // (4 * K)))
    scratch = torch.empty((rows, K), dtype=torch.float32)
    yt = torch.empty((N, M), dtype=torch.float32)  # yᵀ: each tile writes contiguous rows
    for n0 in range(0, N, rows):
        n1 = min(N, n0 + rows)
        _tile_rows(qw, n0, n1, scratch)
        torch.mm(scratch[: n1 - n0], x.t(), out=yt[n0:n1])
    return y.copy_(yt.t())
