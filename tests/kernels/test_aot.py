"""The AOT compile path itself: a kernel compiles for every architecture without a GPU, and ptxas's
report is parsed into registers, spills and shared memory (a planted register hog must show spills)."""

import pytest

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from qlab.kernels.aot import ARCHS, check_archs, compile_spec, parse_nvcc_verbose, parse_ptxas_verbose  # noqa: E402


@triton.jit
def _scale(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 2.0, mask=mask)


@triton.jit
def _hog(x_ptr, y_ptr, BLOCK: tl.constexpr):
    # A [BLOCK, BLOCK] fp32 tile held by one warp cannot fit in 255 registers per thread: it must spill.
    r = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + r[:, None] * BLOCK + r[None, :])
    y = tl.dot(x, x)
    tl.store(y_ptr + r[:, None] * BLOCK + r[None, :], tl.sum(y, axis=1)[:, None] + x)


def _spec(fn, **constexprs):
    sig = {"x_ptr": "*fp32", "y_ptr": "*fp32"}
    if fn is _scale:
        sig["n"] = "i32"
    sig.update({k: "constexpr" for k in constexprs})
    return {"name": fn.__name__, "fn": fn, "signature": sig, "constexprs": constexprs, "num_warps": 1, "num_stages": 1}


def test_parse_ptxas_verbose():
    text = ("ptxas info    : Used 40 registers, used 1 barriers, 16 bytes smem\n"
            "    8 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n")
    assert parse_ptxas_verbose(text) == {"regs": 40, "stack": 8, "spill_stores": 8, "spill_loads": 4, "smem": 16}


@pytest.mark.parametrize("cc", ARCHS)
def test_simple_kernel_compiles_without_spills(cc):
    r = compile_spec(_spec(_scale, BLOCK=256), cc, "test")
    assert r.error == ""
    assert 0 < r.regs <= 255 and r.spills == 0


def test_register_hog_reports_spills():
    r = compile_spec(_spec(_hog, BLOCK=128), 86, "test")
    assert r.error == "" and r.spills > 0, r


def test_bad_spec_is_recorded_not_raised():
    spec = _spec(_scale, BLOCK=256)
    spec["signature"] = {"x_ptr": "*fp32"}  # missing arguments
    r = compile_spec(spec, 80, "test")
    assert r.error


def test_parse_nvcc_verbose_one_row_per_kernel():
    text = ("ptxas info    : 0 bytes gmem\n"
            "ptxas info    : Compiling entry function 'gemv_q6_k' for 'sm_80'\n"
            "ptxas info    : Function properties for gemv_q6_k\n"
            "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
            "ptxas info    : Used 72 registers, used 0 barriers, 388 bytes cmem[0]\n"
            "ptxas info    : Compiling entry function 'gemv_q8_0' for 'sm_90a'\n"
            "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
            "ptxas info    : Used 255 registers, used 1 barriers, 1024 bytes smem, 388 bytes cmem[0]\n")
    rows = parse_nvcc_verbose(text)
    assert rows["gemv_q6_k"] == {"regs": 72, "stack": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0}
    assert rows["gemv_q8_0"] == {"regs": 255, "stack": 16, "spill_stores": 8, "spill_loads": 4, "smem": 1024}


def test_unknown_arch_is_refused_up_front():
    assert check_archs(["80", 120]) == (80, 120)
    with pytest.raises(ValueError, match="compute capability 999"):
        check_archs([80, 999])


def test_cli_unknown_arch_is_one_line_exit_2(capsys):
    from qlab.cli import main

    assert main(["kernels", "compile-report", "--arch", "999"]) == 2
    err = capsys.readouterr().err
    assert "999" in err and "Traceback" not in err and "BrokenProcessPool" not in err
