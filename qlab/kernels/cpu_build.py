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
import importlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
# Each package declares the C it contributes (sources, headers, entry-point signatures) in its own c_api module.
C_APIS = ("qlab.kernels.dequant_matmul.c_api", "qlab.kernels.deltanet.c_api", "qlab.kernels.elementwise_c_api")


def _apis() -> list:
    return [importlib.import_module(name) for name in C_APIS]


def _files(attr: str) -> tuple[Path, ...]:
    return tuple(Path(api.__file__).parent / f for api in _apis() for f in getattr(api, attr))


SOURCES = _files("SOURCES")
HEADERS = _files("HEADERS")
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
    types = {"p": ctypes.c_void_p, "i64": ctypes.c_int64, "i32": ctypes.c_int, "f32": ctypes.c_float}
    for api in _apis():
        for name, codes in api.SYMBOLS.items():
            fn = getattr(lib, name)
            fn.argtypes = [types[c] for c in codes]
            fn.restype = None
    return lib
