"""llama.cpp's own CPU kernels through a small ctypes binding: the timing gate's second yardstick.

Beside its probe (qlab.gates.probes), each product benchmark can time llama.cpp's ggml doing the same work — the
same quant format's GEMV over the same weight bytes where the layout allows, the same delta-rule update, the same
norm — alternately with qlab's call, round by round (benchmarks/llamacpp_peers.py). A yardstick with the same
mix of memory traffic and arithmetic slows by the same factor when a neighbour on the host takes bandwidth or a
core's throughput, which a plain read or a BLAS GEMM does not always do. Which of the two yardsticks a benchmark
is divided by is chosen by `benchmarks/rebuild_baseline.py` from the spreads it measures (README "Regression
gates").

ggml ships inside llama-cpp-python (a dev dependency: the reference peer); this module reaches its C API through
ctypes (libggml-base, libggml-cpu). A `Graph` holds one ggml context of tensor headers whose data are the caller's
own numpy/torch buffers (no copy: ggml reads the very bytes qlab reads), the result buffers it allocates, and a
work buffer; `run()` computes it on `threads` threads. `available()` says why not where llama-cpp-python or a
symbol is missing.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

# enum ggml_type (ggml.h)
TYPES = {"F32": 0, "F16": 1, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ4_XS": 23, "BF16": 30}
GRAPH_NODES = 8192


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class GgmlTensor(ctypes.Structure):   # ggml.h's struct ggml_tensor, the fields up to its name
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64)]


class _CPlan(ctypes.Structure):
    _fields_ = [("work_size", ctypes.c_size_t), ("work_data", ctypes.c_void_p), ("n_threads", ctypes.c_int),
                ("threadpool", ctypes.c_void_p), ("abort_callback", ctypes.c_void_p),
                ("abort_callback_data", ctypes.c_void_p), ("use_ref", ctypes.c_bool)]


_P, _I64, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {   # name: (restype, argtypes)
    "ggml_init": (_P, [_InitParams]),
    "ggml_free": (None, [_P]),
    "ggml_new_tensor_1d": (_P, [_P, ctypes.c_int, _I64]),
    "ggml_new_tensor_2d": (_P, [_P, ctypes.c_int, _I64, _I64]),
    "ggml_new_tensor_3d": (_P, [_P, ctypes.c_int, _I64, _I64, _I64]),
    "ggml_new_tensor_4d": (_P, [_P, ctypes.c_int, _I64, _I64, _I64, _I64]),
    "ggml_get_data": (_P, [_P]),
    "ggml_nbytes": (ctypes.c_size_t, [_P]),
    "ggml_mul_mat": (_P, [_P, _P, _P]),
    "ggml_add": (_P, [_P, _P, _P]),
    "ggml_mul": (_P, [_P, _P, _P]),
    "ggml_rms_norm": (_P, [_P, _P, _F]),
    "ggml_l2_norm": (_P, [_P, _P, _F]),
    "ggml_swiglu_split": (_P, [_P, _P, _P]),
    "ggml_gated_delta_net": (_P, [_P, _P, _P, _P, _P, _P, _P, _I64]),
    "ggml_view_1d": (_P, [_P, _P, _I64, ctypes.c_size_t]),
    "ggml_reshape_2d": (_P, [_P, _P, _I64, _I64]),
    "ggml_new_graph_custom": (_P, [_P, ctypes.c_size_t, ctypes.c_bool]),
    "ggml_build_forward_expand": (None, [_P, _P]),
    "ggml_graph_plan": (_CPlan, [_P, ctypes.c_int, _P]),
    "ggml_graph_compute": (ctypes.c_int, [_P, ctypes.POINTER(_CPlan)]),
    "ggml_cpu_init": (None, []),
}


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL | str:
    """The bound ggml C API, or a sentence saying why it cannot be had."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python is not installed (pip install -e '.[dev]')"
    libdir = Path(llama_cpp.__file__).resolve().parent / "lib"
    try:
        ctypes.CDLL(str(libdir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        return f"llama-cpp-python's ggml libraries did not load from {libdir} ({e})"
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(cpu, name)
        except AttributeError:
            return f"llama-cpp-python's ggml has no {name} (version {llama_cpp.__version__})"
        fn.restype, fn.argtypes = restype, argtypes
    cpu.ggml_cpu_init()
    return cpu


def available() -> str | None:
    """None when llama.cpp's ggml can be called here, else why not."""
    lib = _lib()
    return None if isinstance(lib, ctypes.CDLL) else lib


class Graph:
    """One ggml context: tensors made by `tensor()`, outputs added by `output()`, run by `run()`."""

    def __init__(self, threads: int):
        lib = _lib()
        if not isinstance(lib, ctypes.CDLL):
            raise RuntimeError(lib)
        self.lib, self.threads = lib, threads
        # no_alloc: the context holds only tensor headers and the graph; every tensor's data is a numpy or torch
        # buffer the caller owns (kept alive here), so ggml reads the very bytes qlab's kernel reads
        self.ctx = lib.ggml_init(_InitParams(GRAPH_NODES * 1024, None, True))
        if not self.ctx:
            raise MemoryError("ggml_init failed")
        self.graph = lib.ggml_new_graph_custom(self.ctx, GRAPH_NODES, False)
        self._plan, self._keep, self.outputs = None, [], []

    def tensor(self, type_name: str, *ne: int, data=None) -> int:
        """A tensor of ggml type `type_name`, dimensions `ne` (ggml order: fastest first), on `data` (a C-contiguous
        numpy array or torch tensor of exactly its bytes, used in place: no copy) or on a new zeroed buffer."""
        maker = getattr(self.lib, f"ggml_new_tensor_{len(ne)}d")
        t = maker(self.ctx, TYPES[type_name], *ne)
        n = self.lib.ggml_nbytes(t)
        if data is None:
            data = np.zeros(n, np.uint8)
        ptr, size = (data.data_ptr(), data.numel() * data.element_size()) if hasattr(data, "data_ptr") else \
            (data.ctypes.data, data.nbytes)
        if size != n or not (data.is_contiguous() if hasattr(data, "is_contiguous") else data.flags.c_contiguous):
            raise ValueError(f"ggml tensor {type_name}{ne}: a contiguous buffer of {n} bytes expected, got {size}")
        self._keep.append(data)
        ctypes.cast(t, ctypes.POINTER(GgmlTensor)).contents.data = ptr
        return t

    def op(self, name: str, *args) -> int:
        """`g.op("mul_mat", a, b)` -> ggml_mul_mat(ctx, a, b): a result tensor, given a buffer of its own."""
        t = getattr(self.lib, f"ggml_{name}")(self.ctx, *args)
        h = ctypes.cast(t, ctypes.POINTER(GgmlTensor)).contents
        if not h.data and not h.view_src:
            buf = np.zeros(self.lib.ggml_nbytes(t), np.uint8)
            self._keep.append(buf)
            h.data = buf.ctypes.data
        return t

    def array(self, t: int, dtype=np.float32) -> np.ndarray:
        """A view of tensor `t`'s data (valid while the graph lives)."""
        n = self.lib.ggml_nbytes(t)
        buf = (ctypes.c_uint8 * n).from_address(self.lib.ggml_get_data(t))
        return np.frombuffer(buf, dtype=dtype)

    def output(self, t: int) -> int:
        """Make `t` a result the graph computes (kept in `outputs`)."""
        self.outputs.append(t)
        self.lib.ggml_build_forward_expand(self.graph, t)
        self._plan = None
        return t

    def run(self) -> None:
        if self._plan is None:
            plan = self.lib.ggml_graph_plan(self.graph, self.threads, None)
            self._work = np.empty(max(plan.work_size, 1), np.uint8)
            plan.work_data = self._work.ctypes.data
            self._plan = plan
        status = self.lib.ggml_graph_compute(self.graph, ctypes.byref(self._plan))
        if status != 0:
            raise RuntimeError(f"ggml_graph_compute failed (status {status})")

    def close(self) -> None:
        if self.ctx:
            self.lib.ggml_free(self.ctx)
            self.ctx = None

    def __del__(self):
        if getattr(self, "ctx", None):
            self.close()

