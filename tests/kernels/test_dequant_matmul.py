"""Every matmul impl that can run here agrees with `naive` (rel RMS <= 1e-3, fp32 accumulate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab.kernels.dequant_matmul import IMPLS, available_impls, dequantize, matmul, quantize
from qlab.kernels.dequant_matmul import torch_cpu as tcpu
from qlab.kernels.dequant_matmul.tunables import DEFAULTS, SPACES, valid
from qlab.testing import assert_close

FORMATS = ["Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K", "IQ4_XS", "MXFP4", "INT4-G128", "FP8", "F16", "BF16",
           "F32"]
MS = [1, 3, 16, 100]


def weight(fmt, n=72, k=768, seed=42):
    g = torch.Generator().manual_seed(seed)
    return quantize(torch.randn(n, k, generator=g), fmt)


def activations(m, k, seed=43):
    return torch.randn(m, k, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("M", MS)
def test_torch_cpu_matches_naive(fmt, M):
    # K = 768: 3 K-quant super-blocks, 24 Q8_0 blocks; N = 72 is not a multiple of the 16-row tasks
    qw = weight(fmt)
    x = activations(M, 768)
    assert_close(f"torch_cpu {fmt} M={M}", matmul(x, qw, impl="naive"), matmul(x, qw, impl="torch_cpu"), 1e-3)


def test_naive_is_x_times_dequantized_weight():
    qw = weight("Q4_K", n=8, k=256)
    x = activations(2, 256)
    ref = x.double() @ torch.from_numpy(np.asarray(dequantize(qw))).double().t()
    assert_close("naive", ref, matmul(x, qw), 1e-6)


@pytest.mark.parametrize("fmt", sorted(tcpu.GEMV_FORMATS))
def test_torch_cpu_gemv_with_long_k_spans_several_x_chunks(fmt):
    qw = weight(fmt, n=40, k=6144)  # Q8_0 x chunk = 4096 weights at M=1: K is split in two, unevenly
    for M in (1, 5):
        x = activations(M, 6144)
        assert_close(f"{fmt} M={M}", matmul(x, qw), matmul(x, qw, impl="torch_cpu"), 1e-3)


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_K", "Q6_K"])
def test_torch_cpu_tiled_path_bounds_its_scratch(fmt, monkeypatch):
    """Large M goes through tiles of at most tile_bytes of fp32: never the whole weight dequantized."""
    qw = weight(fmt, n=64, k=512)
    x = activations(20, 512)
    seen = []
    real = tcpu._tile_rows
    monkeypatch.setattr(tcpu, "_tile_rows", lambda q, a, b, out: (seen.append(b - a), real(q, a, b, out)))
    cfg = {"gemv_max_m": 4, "tile_bytes": 16 * 512 * 4}
    assert_close(fmt, matmul(x, qw), matmul(x, qw, impl="torch_cpu", config=cfg), 1e-3)
    assert seen and max(seen) <= 16 and sum(seen) == 64


@pytest.mark.parametrize("flags", [("-mno-avx512f",), ("-mno-avx512f", "-mno-avx2")], ids=["avx2", "portable"])
def test_cpu_kernel_variants_for_other_cpus(flags):
    """The AVX2 and the portable-C builds of cpu_kernels.c (what a machine without AVX-512 runs) agree too."""
    from qlab.kernels.cpu_build import BuildError, load

    try:
        lib = load(flags)
    except BuildError as e:
        pytest.skip(f"compiler cannot build the variant: {e}")
    for fmt in tcpu.GEMV_FORMATS:
        qw = weight(fmt, n=40, k=768)
        for M in (1, 6):
            x = activations(M, 768)
            y = torch.empty(M, 40)
            getattr(lib, tcpu.GEMV_FORMATS[fmt])(x.data_ptr(), M, 768, qw.raw.ctypes.data, 40, y.data_ptr(), 2)
            if fmt == "FP8":  # the kernel leaves the per-channel scale (times 256) to the caller
                y *= torch.from_numpy(qw.scale * 256)
            assert_close(f"{flags} {fmt} M={M}", matmul(x, qw), y, 1e-3)


def test_every_available_impl_matches_naive_on_q8_0():
    for impl in available_impls():
        # cpu_int8 rounds the activations to int8 (llama.cpp's numerics): its own reference is checked at 1e-5
        # in test_dequant_cpu_int8.py; the fp32-accumulate impls are held to 1e-3
        tol = 1.5e-2 if impl == "cpu_int8" else 1e-3
        for M in MS:
            qw = weight("Q8_0", n=32, k=256)
            x = activations(M, 256)
            assert_close(f"{impl} M={M}", matmul(x, qw), matmul(x, qw, impl=impl), tol)


def test_bad_input_errors():
    qw = weight("Q8_0", n=8, k=64)
    with pytest.raises(ValueError, match="x has K=32 but weight .* shape \\(8, 64\\)"):
        matmul(activations(1, 32), qw)
    with pytest.raises(ValueError, match="2-D float tensor"):
        matmul(torch.ones(1, 64, dtype=torch.int32), qw)
    with pytest.raises(ValueError, match="unknown dequant_matmul impl 'fast'; impls: naive, cpu_fp32"):
        matmul(activations(1, 64), qw, impl="fast")
    with pytest.raises(ValueError, match="QuantizedWeight"):
        matmul(activations(1, 64), torch.ones(8, 64))
    with pytest.raises(ValueError, match="no tunable 'BLOCK_Q'"):
        matmul(activations(1, 64), qw, impl="torch_cpu", config={"BLOCK_Q": 1})
    with pytest.raises(ValueError, match="'triton' does not support MXFP4"):
        matmul(activations(1, 256), weight("MXFP4", n=4, k=256), impl="triton")


def test_tunables_interface():
    for impl, space in SPACES.items():
        assert impl in IMPLS and set(space) == set(DEFAULTS[impl])
        for key, value in DEFAULTS[impl].items():
            assert value in space[key], (impl, key)
    assert valid("triton", DEFAULTS["triton"], (1, 5120, 17408, "Q4_K"))
    assert not valid("triton", {"BLOCK_N": 64, "BLOCK_K": 256}, (1, 5120, 17408, "Q4_K"))  # 128 values/thread
    assert not valid("triton", {"SPLIT_K": 16}, (1, 64, 512, "Q8_0"))  # 4 K steps for 16 splits
    assert not valid("triton", {}, (1, 64, 512, "MXFP4"))  # no triton kernel for MXFP4
    assert valid("cpu_fp32", DEFAULTS["cpu_fp32"], (1, 5120, 17408, "Q8_0"))


def test_torch_cpu_without_a_compiler_falls_back_to_tiles(monkeypatch):
    from qlab.kernels import cpu_build

    def broken(extra_flags=()):
        raise cpu_build.BuildError("no C compiler")

    monkeypatch.setattr(cpu_build, "load", broken)
    monkeypatch.setattr(tcpu._lib, "warned", False, raising=False)
    qw = weight("Q4_K", n=16, k=256)
    x = activations(1, 256)
    with pytest.warns(UserWarning, match="C kernels unavailable"):
        out = matmul(x, qw, impl="torch_cpu")
    assert_close("fallback", matmul(x, qw), out, 1e-3)
