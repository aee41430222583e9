"""cpu_int8: int8 activations and integer dot products (llama.cpp's CPU numerics).

The kernels must compute exactly `cpu_int8.reference` — the dequantized weight times the activations as the
int8 blocks represent them — up to fp32 summation order (1e-5), in every build (AVX-512/VNNI, AVX2, portable C);
against the fp32 `naive` result the only difference is the activation rounding (~0.5%, bounded at 1.5%).
"""

from __future__ import annotations

import pytest
import torch

from qlab.kernels.dequant_matmul import QuantizedWeight, matmul, quantize
from qlab.kernels.dequant_matmul import cpu_int8
from qlab.testing import assert_close, rel_rms_error

FORMATS = sorted(cpu_int8.INT8_FORMATS)


def weight(fmt, n, k, seed=42):
    return quantize(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), fmt)


def activations(m, k, seed=43):
    return 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed))


# Q4_K / Q6_K run from the row-interleaved copy (x8) by default; x8_max_m = 0 keeps them on the ggml layout
LAYOUTS = {"x8": {}, "ggml": {"x8_max_m": 0}}


CASES = [(f, "x8") for f in FORMATS] + [(f, "ggml") for f in ("Q4_K", "Q6_K")]


@pytest.mark.parametrize(("fmt", "layout"), CASES)
@pytest.mark.parametrize("M", [1, 3, 5, 16])
def test_kernels_compute_their_reference(fmt, M, layout):
    qw = weight(fmt, n=520, k=1024)   # N = 520: two 256-row tasks and a partial one; M = 5: a pass of 4, then 1
    x = activations(M, 1024)
    cfg = LAYOUTS[layout]
    assert cpu_int8.runs_x8(qw, M, cfg) == (layout == "x8" and fmt in ("Q4_K", "Q6_K"))
    out = matmul(x, qw, impl="cpu_int8", config=cfg)
    assert_close(f"cpu_int8 {fmt} M={M} {layout}", cpu_int8.reference(x, qw), out, 1e-5)
    err = rel_rms_error(matmul(x, qw, impl="naive"), out)
    assert 1e-4 < err < 1.5e-2, f"{fmt}: activation rounding error {err:.2e} out of its expected range"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n", [20, 24])   # 24: Q4_K / Q6_K through the x8 copy
def test_long_rows_and_outliers(fmt, n):
    """K = 17408 (ffn_down), one activation much larger than the rest, and an all-zero block."""
    qw = weight(fmt, n=n, k=17408)
    x = activations(2, 17408)
    x[0, 1000] = 400.0          # its block's scale is set by the outlier
    x[1, 256:512] = 0.0         # a zero block: d = 0, no division by zero
    assert_close(f"{fmt} K=17408", cpu_int8.reference(x, qw), matmul(x, qw, impl="cpu_int8"), 1e-5)


@pytest.mark.parametrize("fmt", ["Q4_K", "Q6_K"])
def test_x8_prefill_sizes_and_the_output_is_all_written(fmt):
    """M = 37 (9 passes of 4 and one of 1), N = 8 (one group) and N = 520 (tasks of 256 rows and a partial one);
    outputs poisoned with NaN first."""
    from qlab.kernels.dequant_matmul import cpu_x8, torch_cpu

    for n, m in ((8, 37), (64, 2), (520, 3)):   # 520 rows: three 256-row tasks, the last partial
        qw = weight(fmt, n=n, k=512, seed=n + m)
        x = activations(m, 512, seed=m)
        out = torch.full((m, n), float("nan"))
        cpu_x8.matmul(x, qw, torch_cpu._lib(), 2, out=out)
        assert_close(f"x8 {fmt} {n}x512 M={m}", cpu_int8.reference(x, qw), out, 1e-5)
    assert "cpu_int8_x8" in qw.prepared   # made once, then reused


def test_x8_copy_of_a_file_map_releases_the_map_and_stays_right(tmp_path):
    """A weight over a memory-mapped file: its pages are released after the repack (madvise), and both the copy
    and the file's bytes still read right afterwards."""
    import numpy as np

    src = weight("Q6_K", n=64, k=512)
    path = tmp_path / "w.bin"
    src.raw.tofile(path)
    from qlab.kernels.dequant_matmul import QuantizedWeight, cpu_x8

    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=src.raw.shape)
    qw = QuantizedWeight("Q6_K", src.shape, mm)
    assert cpu_x8._file_backed(qw.raw) and not cpu_x8._file_backed(src.raw)
    assert not cpu_x8._file_backed(np.memmap(path, dtype=np.uint8, mode="c", shape=src.raw.shape))
    x = activations(1, 512)
    assert_close("x8 over a file map", cpu_int8.reference(x, src), matmul(x, qw, impl="cpu_int8"), 1e-5)
    assert np.array_equal(np.asarray(mm), src.raw)


def test_activation_blocks_are_llamacpp_q8():
    x = activations(1, 512)
    for fmt, bs in (("Q4_K", 256), ("Q8_0", 32)):
        xq = cpu_int8.quantize_activations(x, fmt).reshape(-1, bs)
        xb = x.reshape(-1, bs)
        amax = xb.abs().amax(-1, keepdim=True)
        d = amax / 127
        q = xq / (xq.abs().amax(-1, keepdim=True) / 127)
        assert torch.allclose(q, q.round(), atol=1e-3), f"{fmt}: not d times integers"
        assert (xq.abs().amax(-1) <= amax.squeeze(-1) * (1 + 1e-3)).all()
        # Q8_0 stores d in fp16 (relative rounding <= 2^-11) after rounding with the exact scale: up to 127 such steps
        slack = amax * 2.0 ** -11 if fmt == "Q8_0" else 0
        assert ((xq - xb).abs() <= d * 0.5 * (1 + 2e-3) + slack + 1e-7).all(), f"{fmt}: not round to nearest"
    z = cpu_int8.quantize_activations(torch.zeros(1, 256), "Q6_K")
    assert (z == 0).all()


def test_threads_do_not_change_the_result():
    qw = weight("Q4_K", n=512, k=2048)
    x = activations(1, 2048)
    one = matmul(x, qw, impl="cpu_int8", config={"single_thread_bytes": 1 << 40})
    two = matmul(x, qw, impl="cpu_int8", config={"single_thread_bytes": 0})
    assert torch.equal(one, two)


@pytest.mark.parametrize("fmt", ["F16", "BF16"])
@pytest.mark.parametrize("M", [1, 40])
def test_half_weights_take_activations_rounded_to_their_type(fmt, M):
    """As llama.cpp's vec_dot_f16 / vec_dot_bf16: x rounded to the weight's type, products summed in fp32."""
    qw = weight(fmt, n=24, k=512)
    x = activations(M, 512)
    out = matmul(x, qw, impl="cpu_int8")
    half = getattr(torch, cpu_int8.HALF_FORMATS[fmt])
    assert torch.equal(cpu_int8.quantize_activations(x, fmt), x.to(half).float())
    assert_close(f"cpu_int8 {fmt} M={M}", cpu_int8.reference(x, qw), out, 1e-6)
    err = rel_rms_error(matmul(x, qw, impl="naive"), out)
    bound = 2.0 ** -9 if fmt == "F16" else 2.0 ** -6   # the type's unit roundoff, on average well under it
    assert 1e-6 < err < bound, f"{fmt}: activation rounding error {err:.2e}, expected between 1e-6 and {bound:.1e}"


@pytest.mark.parametrize("fmt", ["Q4_0", "IQ4_XS"])
def test_other_formats_fall_through_to_torch_cpu(fmt):
    qw = weight(fmt, n=24, k=512)
    for m in (3, 40):
        x = activations(m, 512)
        assert not cpu_int8.runs_int8(qw, m, 512)
        assert_close(f"{fmt} M={m}", matmul(x, qw), matmul(x, qw, impl="cpu_int8"), 1e-3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_prefill_sizes_stay_on_int8_activations(fmt):
    """Above gemv_max_m, without an x8 copy (N % 8 != 0, or M > x8_max_m) and on the ggml layout, the integer
    kernels still run — llama.cpp rounds the activations of every matmul against these formats, prefill too.
    M = 37: nine passes of 4 rows and one of 1 over every 256-row task (outputs NaN-poisoned by conftest)."""
    for n, m, cfg in ((20, 37, {}), (520, 37, {"x8_max_m": 0}), (24, 40, {"x8_max_m": 16})):
        qw = weight(fmt, n=n, k=512, seed=n + m)
        x = activations(m, 512, seed=m)
        assert cpu_int8.runs_int8(qw, m, 512, cfg)
        out = matmul(x, qw, impl="cpu_int8", config=cfg)
        assert_close(f"cpu_int8 {fmt} {n}x512 M={m} {cfg}", cpu_int8.reference(x, qw), out, 1e-5)
        err = rel_rms_error(matmul(x, qw, impl="naive"), out)
        assert 1e-4 < err < 1.5e-2, f"{fmt} M={m}: not int8 activations (error vs fp32 {err:.2e})"


@pytest.mark.parametrize("flags", [("-mno-avx512f",), ("-mno-avx512f", "-mno-avx2")], ids=["avx2", "portable"])
def test_kernel_variants_for_other_cpus(flags):
    """The AVX2 (no VNNI) and portable-C builds compute the same integers."""
    from qlab.kernels.cpu_build import BuildError, load

    try:
        lib = load(flags)
    except BuildError as e:
        pytest.skip(f"compiler cannot build the variant: {e}")
    from qlab.kernels.dequant_matmul import cpu_x8

    for fmt in FORMATS:
        qw = weight(fmt, n=40, k=768)
        for M in (1, 6):
            x = activations(M, 768)
            y = torch.full((M, 40), float("nan"))
            getattr(lib, cpu_int8.INT8_FORMATS[fmt][0])(x.data_ptr(), M, 768, qw.raw.ctypes.data, 40, y.data_ptr(), 2)
            assert_close(f"{flags} {fmt} M={M}", cpu_int8.reference(x, qw), y, 1e-5)
            if fmt in cpu_x8.X8_FORMATS:   # the x8 copy made by this build, read by this build
                y = torch.full((M, 40), float("nan"))
                cpu_x8.matmul(x, QuantizedWeight(fmt, qw.shape, qw.raw), lib, 2, out=y)
                assert_close(f"{flags} x8 {fmt} M={M}", cpu_int8.reference(x, qw), y, 1e-5)


@pytest.mark.parametrize("M", [1, 5])
@pytest.mark.parametrize("threads", [1, 2])
def test_several_weights_in_one_call(M, threads, monkeypatch):
    """matmul_many: mixed Q4_K / Q6_K weights of one input (a DeltaNet layer's qkv, gate, beta, alpha) in one C
    call, each output what its own matmul gives; outputs poisoned first; an unbatchable weight (Q8_0, N % 8 != 0)
    sends the set down the one-by-one path."""
    from qlab.kernels.dequant_matmul import cpu_x8, matmul_many

    qws = [weight("Q6_K", 80, 512, seed=1), weight("Q4_K", 520, 512, seed=2), weight("Q4_K", 8, 512, seed=3),
           weight("Q6_K", 16, 512, seed=4)]   # 520 rows: several tasks in one matrix
    x = activations(M, 512, seed=5)
    real_empty = torch.empty

    def poisoned(*a, **k):
        t = real_empty(*a, **k)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", poisoned)
    calls = []
    real_many = cpu_x8.matmul_many
    monkeypatch.setattr(cpu_x8, "matmul_many", lambda *a: calls.append(1) or real_many(*a))
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    outs = matmul_many(x, qws, impl="cpu_int8", config={"single_thread_bytes": 0})
    assert calls == [1]
    for qw, out in zip(qws, outs):
        assert_close(f"matmul_many {qw.fmt} N={qw.shape[0]}", cpu_int8.reference(x, qw), out, 1e-5)
    mixed = qws[:2] + [weight("Q8_0", 40, 512, seed=6), weight("Q4_K", 12, 512, seed=7)]
    outs = matmul_many(x, mixed, impl="cpu_int8")
    assert calls == [1]
    for qw, out in zip(mixed, outs):
        assert_close(f"one by one {qw.fmt}", cpu_int8.reference(x, qw), out, 1e-5)
