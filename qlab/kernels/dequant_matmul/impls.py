"""The dequantizing matmul's impls, as records of the kernel registry (qlab/kernels/registry.py).

Formats are read from each kernel module's own table (the Triton GEMV's FMT_CODE, the CuPy GEMV's KERNELS,
cpu_int8's FORMATS), so a format added to a kernel shows up here without an edit."""

from __future__ import annotations

from qlab.kernels.registry import Impl, OpSpec

OPS = (OpSpec("dequant_matmul", {"M": 1, "N": 17408, "K": 5120, "fmt": "Q4_K"}, ("M",),
              "qlab.kernels.dequant_matmul"),)

_CPU_FEATURES = frozenset({"host_weights"})   # reads the weight's bytes where they lie (a file map), no upload
IMPLS = (
    Impl("dequant_matmul", "naive", "torch", "naive:matmul", ("cpu", "cuda", "mps"),
         "dequantize the whole weight on the host, fp32 matmul (the reference)", reference=True,
         features=_CPU_FEATURES),
    Impl("dequant_matmul", "cpu_fp32", "c", "torch_cpu:matmul", ("cpu",),
         "fp32 activations: C GEMV over the blocks for M <= gemv_max_m, else dequantized row tiles + BLAS "
         "(tiles dequantized in numpy where no C compiler is present)",
         rank=10, tunables="tunables", prepare="impls:prepare_cpu", aliases=("torch_cpu",),
         features=_CPU_FEATURES),
    Impl("dequant_matmul", "cpu_int8", "c", "cpu_int8:matmul", ("cpu",),
         "int8 activations per block and integer dot products in C (llama.cpp's numerics, ~0.5% from fp32); "
         "at every M; F16/BF16: activations rounded to the weight's type, then cpu_fp32; Q4_K/Q6_K read from a "
         "row-interleaved copy",
         formats="cpu_int8:FORMATS", dtypes=("fp32",), rank=20, batches=True,
         entry_many="cpu_int8:matmul_many", tunables="tunables", prepare="impls:prepare_cpu", delegates="cpu_fp32",
         features=_CPU_FEATURES | {"x8_repack", "int8_activations"}),
    Impl("dequant_matmul", "triton", "triton", "triton_gemv:matmul", ("cuda",),
         "fused dequant GEMV/GEMM in Triton, fp32 accumulate, split-K", formats="triton_gemv:FMT_CODE",
         rank=30, tunables="tunables", prepare="impls:prepare_triton", features=frozenset({"contiguous_inputs"})),
    Impl("dequant_matmul", "cupy", "cupy", "cupy_gemv:matmul", ("cuda",),
         "CUDA C GEMV (M <= 8) through cupy.RawModule", formats="cupy_gemv:KERNELS", rank=20,
         tunables="tunables", prepare="impls:prepare_cupy", features=frozenset({"contiguous_inputs"})),
)


def prepare_cpu(qw, device=None):
    """Build qlab's C kernels and wrap the bytes (no copy, no repack)."""
    from qlab.kernels.cpu_build import load

    from .torch_cpu import prepare

    load()
    prepare(qw)


def prepare_triton(qw, device=None):
    """Copy the bytes to the GPU once (cached on the weight)."""
    from .triton_gemv import prepare

    prepare(qw, device or "cuda")


def prepare_cupy(qw, device=None):
    """Copy the bytes to the GPU once (cached on the weight)."""
    from .cupy_gemv import prepare

    prepare(qw)
