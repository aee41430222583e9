"""`cupy`: the decode GEMV (M <= 8) as CUDA C (`gemv.cu`, beside this file) through cupy.RawModule."""

from __future__ import annotations

import functools
from pathlib import Path

from .tunables import resolve

SOURCE = Path(__file__).with_name("gemv.cu")
KERNELS = {"Q8_0": "gemv_q8_0", "Q4_K": "gemv_q4_k", "Q5_K": "gemv_q5_k", "Q6_K": "gemv_q6_k",
           "INT4-G128": "gemv_int4_g128"}
MAX_M = 8  # gemv.cu's MAX_M


def _need_gpu():
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError("dequant_matmul impl 'cupy' needs CuPy (pip install 'qlab[cupy]') and an NVIDIA "
                           "GPU") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        raise RuntimeError(f"dequant_matmul impl 'cupy' needs an NVIDIA GPU; CUDA says: {e}") from e
    if count == 0:
        raise RuntimeError("dequant_matmul impl 'cupy' needs an NVIDIA GPU; none is visible")
    return cupy


@functools.lru_cache(maxsize=1)
def _module():
    cupy = _need_gpu()
    return cupy.RawModule(code=SOURCE.read_text(), options=("-std=c++17",))


def prepare(qw):
    """The raw bytes on the GPU, copied once per weight and cached on it."""
    import torch

    _need_gpu()
    if "cupy" not in qw.prepared:
        qw.prepared["cupy"] = torch.from_numpy(qw.raw).cuda()
    return qw.prepared["cupy"]


def matmul(x, qw, config: dict | None = None):
    """y [M, N] fp32 (a torch CUDA tensor) = x [M, K] · dequantize(qw)ᵀ for M <= 8."""
    import torch

    cfg = resolve("cupy", config)
    if qw.fmt not in KERNELS:
        raise ValueError(f"cupy dequant_matmul supports {', '.join(KERNELS)}, not {qw.fmt}")
    M, K = x.shape
    if M > MAX_M:
        raise ValueError(f"cupy dequant_matmul is a GEMV: M={M} > {MAX_M}; use impl='triton' for larger M")
    cupy = _need_gpu()
    N = qw.shape[0]
    w = prepare(qw)
    x = x.to(device="cuda", dtype=torch.float32).contiguous()
    y = torch.empty((M, N), dtype=torch.float32, device="cuda")
    rows = cfg["ROWS_PER_BLOCK"]
    kernel = _module().get_function(KERNELS[qw.fmt])
    kernel(((N + rows - 1) // rows,), (32 * rows,),
           (cupy.asarray(x), cupy.asarray(w), cupy.asarray(y), cupy.int32(M), cupy.int32(N), cupy.int32(K)))
    return y
