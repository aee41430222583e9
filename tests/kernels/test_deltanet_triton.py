"""Gated DeltaNet Triton kernels under TRITON_INTERPRET=1 on CPU tensors at small shapes, against naive.

Triton picks the interpreter when it is imported (its standard library is @jit code too), so these tests
need a process that set TRITON_INTERPRET=1 before importing triton. In any other process (the whole
suite, where other tests import triton for the AOT compile) the one test `test_in_interpreter_subprocess`
runs this file again in such a process and the rest skip; `TRITON_INTERPRET=1 pytest <this file>` runs
them directly."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")

from qlab.kernels.deltanet import gated_delta_rule  # noqa: E402
from qlab.kernels.deltanet.inputs import make_inputs, torch_threads  # noqa: E402
from qlab.kernels.deltanet.inputs import naive_reference as reference  # noqa: E402
from qlab.kernels.deltanet.naive import gate, l2norm  # noqa: E402
from qlab.testing import assert_close, run_file_in_interpreter  # noqa: E402

TOL = {torch.float32: 2e-3, torch.bfloat16: 1e-2}
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in test_in_interpreter_subprocess")


@pytest.mark.skipif(INTERPRETED, reason="already in the interpreter")
def test_in_interpreter_subprocess():
    run_file_in_interpreter(__file__)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield


# (dtype, T, HV, decay, with_state): B = 1, H = 1 (so HV is the GVA ratio), K = V = 32 — interpreter-sized
CASES = ([(torch.float32, 1, HV, "medium", h0) for HV in (1, 3) for h0 in (False, True)]
         + [(torch.float32, 63, 3, "weak", True), (torch.float32, 63, 1, "strong", False),
            (torch.float32, 63, 3, "medium", False), (torch.float32, 63, 1, "medium", True),
            (torch.float32, 130, 3, "medium", True), (torch.float32, 130, 1, "strong", False),
            (torch.bfloat16, 63, 3, "medium", True)])


def case_id(case):
    dtype, T, HV, decay, with_state = case
    return f"{str(dtype)[6:]}-T{T}-gva{HV}-{decay}-{'h0' if with_state else 'zero'}"


@interpreted
@pytest.mark.parametrize("impl,config", [("triton_recurrent", None), ("triton_chunk", {"chunk_size": 16})],
                         ids=["recurrent", "chunk16"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_triton_impls_match_naive(impl, config, case):
    dtype, T, HV, decay, with_state = case
    shape = (1, T, 1, HV, 32, 32)
    o_ref, h_ref = reference(*shape, decay, with_state, dtype)
    x = make_inputs(*shape, decay=decay, with_state=with_state, dtype=dtype)
    o, h = gated_delta_rule(**x, use_qk_l2norm=True, impl=impl, config=config)
    assert o.dtype == dtype and h.dtype == torch.float32
    assert_close(f"{impl} o", o_ref.float(), o.float(), TOL[dtype])
    assert_close(f"{impl} state", h_ref, h, TOL[dtype])


@interpreted
@pytest.mark.parametrize("impl,config", [
    ("triton_recurrent", {"BV": 16, "num_warps": 2}),
    ("triton_chunk", {"chunk_size": 32, "BV": 16}),
    ("triton_chunk", {"chunk_size": 16, "BV": 64, "num_warps": 8}),
], ids=["recurrent-bv16", "chunk32-bv16", "chunk16-bv64"])
def test_configs_batch_and_odd_head_dims(impl, config):
    """Batch 2, two key heads, several V blocks, K and V not powers of two (masked lanes; K > 64: two state
    halves in triton_chunk)."""
    shape = (2, 35, 2, 4, 72, 40)
    o_ref, h_ref = reference(*shape, "medium", True, torch.float32)
    x = make_inputs(*shape, decay="medium", with_state=True)
    o, h = gated_delta_rule(**x, use_qk_l2norm=True, impl=impl, config=config)
    assert_close(f"{impl} o", o_ref, o, 2e-3)
    assert_close(f"{impl} state", h_ref, h, 2e-3)


@interpreted
def test_decode_steps_equal_one_chunked_prefill():
    """T single-token triton_recurrent calls, the state updated in place == one triton_chunk call."""
    x = make_inputs(1, 20, 1, 3, 32, 32, decay="medium")
    o_pre, h_pre = gated_delta_rule(**x, use_qk_l2norm=True, impl="triton_chunk", config={"chunk_size": 16})
    state = x["initial_state"].clone()
    outs = []
    for t in range(20):
        step = {n: x[n][:, t:t + 1].contiguous() for n in ("q", "k", "v", "g", "beta")}
        o, h = gated_delta_rule(**step, initial_state=state, use_qk_l2norm=True, impl="triton_recurrent",
                                inplace_state=True)
        assert h.data_ptr() == state.data_ptr()
        outs.append(o)
    assert_close("o", o_pre, torch.cat(outs, 1), 2e-3)
    assert_close("state", h_pre, state, 2e-3)


@interpreted
def test_fused_gate_and_l2norm_equal_unfused():
    x = make_inputs(1, 9, 1, 3, 32, 32)
    gen = torch.Generator().manual_seed(42)
    a, b = torch.randn(1, 9, 3, generator=gen) * 3, torch.randn(1, 9, 3, generator=gen)
    A_log, dt_bias = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
    g, beta = gate(a, b, A_log, dt_bias)
    unfused = gated_delta_rule(**{**x, "q": l2norm(x["q"]), "k": l2norm(x["k"]), "g": g, "beta": beta},
                               impl="triton_recurrent")
    fused = gated_delta_rule(**{**x, "g": a, "beta": b}, A_log=A_log, dt_bias=dt_bias, use_qk_l2norm=True,
                             impl="triton_recurrent")
    assert_close("o", unfused[0], fused[0], 1e-5)
    assert_close("state", unfused[1], fused[1], 1e-5)
    no_bias = gated_delta_rule(**{**x, "g": a, "beta": b}, A_log=A_log, impl="triton_recurrent")
    ref = gated_delta_rule(**{**x, "g": a, "beta": b}, A_log=A_log, impl="naive")
    assert_close("o (no dt_bias)", ref[0], no_bias[0], 2e-3)


@interpreted
@pytest.mark.parametrize("impl", ["triton_recurrent", "triton_chunk"])
def test_non_contiguous_input_is_refused(impl):
    x = make_inputs(1, 4, 1, 3, 32, 32)
    q = torch.cat([x["q"], x["q"]], dim=-1)[..., :32]  # same values, row stride 64
    with pytest.raises(ValueError, match=r"q: shape \[1, 4, 1, 32\] with strides .* not contiguous"):
        gated_delta_rule(**{**x, "q": q}, impl=impl)
