"""The row-interleaved copy of Q4_K / Q6_K weights that `cpu_int8` decodes from (cpu_x8_kernels.c explains it).

A weight is repacked once, on its first cpu_int8 matmul, and the copy is cached on it (`qw.prepared`). Where
the ggml bytes are a file's memory map (a GGUF), each repacked slice of the map is handed back to the kernel
right away (madvise DONTNEED: the pages stay in the page cache, out of this process's RSS, and fault back in if
anything reads them again), so a loaded model costs its x8 copy, not twice its size. Synthetic weights (plain
memory) keep both copies.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np

from qlab.kernels import hugepages

from .weight import QuantizedWeight

# format -> bytes per group (8 rows x 256 weights), the C prefix of its entry points
X8_FORMATS = {"Q4_K": (1184, "qlab_q4_k"), "Q6_K": (1680, "qlab_q6_k")}
MULTI_CODES = {"Q4_K": 0, "Q6_K": 1}   # qlab_x8_gemm_int8_multi's format codes
MAX_MULTI = 8                           # matrices per qlab_x8_gemm_int8_multi call
_REPACK_CHUNK_BYTES = 1 << 26   # ggml bytes repacked (and their file pages released) per call: bounds the RSS bump


def packable(qw: QuantizedWeight) -> bool:
    return copy_nbytes(qw.fmt, *qw.shape) > 0


def copy_nbytes(fmt: str, N: int, K: int) -> int:
    """Bytes of the x8 copy of an [N, K] weight in `fmt` (0: it gets none)."""
    if fmt not in X8_FORMATS or N % 8 or K % 256:
        return 0
    return N // 8 * (K // 256) * X8_FORMATS[fmt][0]


def _file_backed(a: np.ndarray) -> bool:
    """A view of a read-only file map (np.memmap mode "r", as the gguf reader opens files): dropping its pages
    loses nothing. Copy-on-write maps (mode "c") are not: their written pages would revert to the file."""
    b = a
    while b is not None:
        if isinstance(b, np.memmap):
            return b.mode == "r"
        b = getattr(b, "base", None)
    return False


def release_pages(a: np.ndarray) -> None:
    """Drop the whole pages of a file-mapped array from this process (Linux; elsewhere a no-op). Only ever for
    file-backed maps: on anonymous memory the same call would zero the data."""
    if not sys.platform.startswith("linux") or not _file_backed(a) or a.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = a.ctypes.data
    lo, hi = -(-start // page) * page, (start + a.nbytes) // page * page
    if hi > lo:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED


def packed(qw: QuantizedWeight, lib, threads: int):
    """The x8 copy of qw (a torch uint8 tensor), built on first use."""
    x8 = qw.prepared.get("cpu_int8_x8")
    if x8 is not None:
        return x8
    N, K = qw.shape
    gbytes, prefix = X8_FORMATS[qw.fmt]
    raw = qw.raw if qw.raw.flags.c_contiguous else np.ascontiguousarray(qw.raw)
    x8 = hugepages.empty_bytes(copy_nbytes(qw.fmt, N, K))   # streamed every token: 2 MB pages
    rows = max(8, _REPACK_CHUNK_BYTES // raw.shape[1] // 8 * 8)
    repack = getattr(lib, f"{prefix}_repack_x8")
    for n0 in range(0, N, rows):
        n1 = min(N, n0 + rows)
        repack(raw[n0].ctypes.data, n1 - n0, K, x8[n0 // 8 * (K // 256) * gbytes:].data_ptr(), threads)
        release_pages(raw[n0:n1])
    qw.prepared["cpu_int8_x8"] = x8
    return x8


def matmul(x, qw: QuantizedWeight, lib, threads: int, out=None):
    """y [M, N] fp32 from x [M, K] fp32 contiguous, through the x8 copy (any M: passes of 4 activation rows)."""
    import torch

    M, K = x.shape
    y = out if out is not None else torch.empty((M, qw.shape[0]), dtype=torch.float32)
    x8 = packed(qw, lib, threads)
    getattr(lib, f"{X8_FORMATS[qw.fmt][1]}_x8_gemm_int8")(x.data_ptr(), M, K, x8.data_ptr(), qw.shape[0],
                                                           y.data_ptr(), threads)
    return y


def matmul_many(x, qws: list[QuantizedWeight], lib, threads: int) -> list:
    """[y_i [M, N_i]] for x [M, K] fp32 contiguous and up to MAX_MULTI packable weights of that K, in one C call
    (one quantization of x, one parallel region over all their row groups)."""
    import torch

    M, K = x.shape
    n = len(qws)
    if not 0 < n <= MAX_MULTI:
        raise ValueError(f"qws: {n} weights, expected 1 to {MAX_MULTI}")
    ys = [torch.empty((M, qw.shape[0]), dtype=torch.float32) for qw in qws]
    packs = [packed(qw, lib, threads) for qw in qws]
    lib.qlab_x8_gemm_int8_multi(x.data_ptr(), M, K, n, (ctypes.c_int32 * n)(*(MULTI_CODES[q.fmt] for q in qws)),
                                (ctypes.c_void_p * n)(*(p.data_ptr() for p in packs)),
                                (ctypes.c_int64 * n)(*(q.shape[0] for q in qws)),
                                (ctypes.c_void_p * n)(*(y.data_ptr() for y in ys)), threads)
    return ys
