"""Build qlab's C kernels for the CPU (the dequantizing GEMVs of dequant_matmul, fp32 and int8, the fused
Gated DeltaNet decode step, and the decode loop's norms) into one shared object, once per machine, with the
system C compiler; load it with ctypes.

Why not torch.utils.cpp_extension: the kernels need no torch headers, and a plain `gcc -O3 -march=native`
of one C file takes about a second, against a minute for a torch extension. The shared object is cached
under ~/.cache/qlab (or $QLAB_CACHE), keyed by the source, the flags and the compiler, and written atomically.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
SOURCES = (HERE / "dequant_matmul" / "cpu_kernels.c", HERE / "dequant_matmul" / "cpu_int8_kernels.c",
           HERE / "dequant_matmul" / "cpu_x8_kernels.c", HERE / "deltanet" / "cpu_recurrent.c",
           HERE / "elementwise_cpu.c")
HEADERS = (HERE / "dequant_matmul" / "cpu_common.h", HERE / "dequant_matmul" / "cpu_int8_quant.h",
           HERE / "cpu_math.h")
# the C entry points (torch_cpu.GEMV_FORMATS maps formats onto them)
GEMV_ENTRY_POINTS = tuple(f"qlab_{f}_gemm" for f in ("q8_0", "q4_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs",
                                                     "fp8", "int4_g128", "mxfp4")) + \
    tuple(f"qlab_{f}_gemm_int8" for f in ("q8_0", "q4_k", "q5_k", "q6_k"))
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-shared", "-fPIC", "-std=c11"]


class BuildError(RuntimeError):
    pass


def _cache_dir() -> Path:
    return Path(os.environ.get("QLAB_CACHE") or Path.home() / ".cache" / "qlab") / "cpu_kernels"


def _flags(cc: str) -> list[str]:
    # -mprefer-vector-width is an x86 option; other targets get the rest
    return [f for f in FLAGS if platform.machine() in ("x86_64", "AMD64") or not f.startswith("-mprefer")]


@functools.lru_cache(maxsize=None)
def load(extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL:
    """The compiled kernels (BuildError with the compiler's message when there is no working C compiler).

    `extra_flags` (and $QLAB_CFLAGS) go last, so they can override: the tests build the AVX2 and the portable
    variants on an AVX-512 machine with ("-mno-avx512f",) and ("-mno-avx512f", "-mno-avx2")."""
    import torch  # noqa: F401  load torch's libgomp first, so the kernels share its OpenMP runtime

    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BuildError("torch_cpu needs a C compiler (gcc or cc on PATH, or $CC) to build cpu_kernels.c")
    src = b"".join(p.read_bytes() for p in SOURCES + HEADERS)
    flags = _flags(cc) + os.environ.get("QLAB_CFLAGS", "").split() + list(extra_flags)
    key = hashlib.sha256(src + " ".join([cc, *flags, platform.machine(), platform.node()]).encode()).hexdigest()
    so = _cache_dir() / f"cpu_kernels-{key[:16]}.so"
    if not so.exists():
        so.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=so.parent)
        os.close(fd)
        proc = subprocess.run([cc, *flags, *map(str, SOURCES), "-o", tmp, "-lm"], capture_output=True, text=True)
        if proc.returncode:
            os.unlink(tmp)
            names = ", ".join(p.name for p in SOURCES)
            raise BuildError(f"building {names} with {cc} failed:\n{proc.stderr[-2000:]}")
        os.replace(tmp, so)  # atomic: a concurrent process sees the old state or the whole file
    lib = ctypes.CDLL(str(so))
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for name in GEMV_ENTRY_POINTS:
        getattr(lib, name).argtypes = [ptr, i64, i64, ptr, i64, ptr, i32]
        getattr(lib, name).restype = None
    lib.qlab_gdn_recurrent.argtypes = [ptr] * 7 + [i64] * 4 + [i32]
    lib.qlab_gdn_recurrent.restype = None
    lib.qlab_conv1d_update.argtypes = [ptr] * 5 + [i64] * 3 + [i32]
    lib.qlab_conv1d_update.restype = None
    lib.qlab_gdn_decode_layer.argtypes = [ptr] * 11 + [i64] * 6 + [ctypes.c_float, i32]
    lib.qlab_gdn_decode_layer.restype = None
    lib.qlab_rms_norm.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, i64, i64, ctypes.c_float]
    lib.qlab_rms_norm.restype = None
    lib.qlab_swiglu.argtypes = [ptr, ptr, ptr, i64]
    lib.qlab_swiglu.restype = None
    for f in ("q4_k", "q6_k"):   # the row-interleaved layout of cpu_x8_kernels.c
        getattr(lib, f"qlab_{f}_x8_gemm_int8").argtypes = [ptr, i64, i64, ptr, i64, ptr, i32]
        getattr(lib, f"qlab_{f}_repack_x8").argtypes = [ptr, i64, i64, ptr, i32]
        for kind in ("x8_gemm_int8", "repack_x8"):
            getattr(lib, f"qlab_{f}_{kind}").restype = None
    lib.qlab_x8_gemm_int8_multi.argtypes = [ptr, i64, i64, i32, ptr, ptr, ptr, ptr, i32]
    lib.qlab_x8_gemm_int8_multi.restype = None
    for name in ("qlab_q8_0_dequant", "qlab_q4_k_dequant"):
        getattr(lib, name).argtypes = [ptr, i64, i64, ptr, i32]
        getattr(lib, name).restype = None
    return lib
