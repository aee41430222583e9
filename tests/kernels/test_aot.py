"""The AOT compile path itself: a kernel compiles for every architecture without a GPU, and ptxas's
report is parsed into registers, spills and shared memory (a planted register hog must show spills)."""

import pytest

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from qlab.kernels.aot import ARCHS, compile_spec, parse_ptxas_verbose  # noqa: E402


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
