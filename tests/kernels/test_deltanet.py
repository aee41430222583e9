"""Gated DeltaNet, torch paths: recurrent_torch and chunk_torch against the naive reference, decode steps
== one prefill, the conv1d, the gate, bad input. (Triton: test_deltanet_triton.py; CUDA C: test_deltanet_cupy.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qlab.kernels.deltanet import (IMPLS, ImplUnavailableError, available_impls, causal_conv1d,
                                   causal_conv1d_update, gated_delta_rule)
from qlab.kernels.deltanet.naive import gate, l2norm
from qlab.kernels.deltanet.tunables import DEFAULTS, SPACES, valid
from qlab.testing import assert_close
from qlab.kernels.deltanet.inputs import make_inputs, torch_threads
from qlab.kernels.deltanet.inputs import naive_reference as reference

TOL = {torch.float32: 2e-3, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield


CASES = [(dtype, T, HV, decay, with_state)
         for T in (1, 63, 130) for HV in (2, 6) for decay in ("weak", "medium", "strong")
         for with_state in (False, True)
         for dtype in ((torch.float32, torch.bfloat16) if (T == 63 and decay == "medium") else (torch.float32,))]


def case_id(case):
    dtype, T, HV, decay, with_state = case
    return f"{str(dtype)[6:]}-T{T}-gva{HV // 2}-{decay}-{'h0' if with_state else 'zero'}"


@pytest.mark.parametrize("impl", ["recurrent_torch", "recurrent_cpu", "chunk_torch"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_torch_impls_match_naive(impl, case):
    dtype, T, HV, decay, with_state = case
    shape = (2, T, 2, HV, 32, 32)
    o_ref, h_ref = reference(*shape, decay, with_state, dtype)
    x = make_inputs(*shape, decay=decay, with_state=with_state, dtype=dtype)
    o, h = gated_delta_rule(**x, use_qk_l2norm=True, impl=impl)
    assert o.dtype == dtype and h.dtype == torch.float32
    assert_close(f"{impl} o", o_ref.float(), o.float(), TOL[dtype])
    assert_close(f"{impl} state", h_ref, h, TOL[dtype])


@pytest.mark.parametrize("chunk_size", SPACES["chunk_torch"]["chunk_size"])
def test_chunk_torch_every_chunk_size(chunk_size):
    o_ref, h_ref = reference(2, 130, 2, 6, 32, 32, "medium", True, torch.float32)
    x = make_inputs(2, 130, 2, 6, 32, 32)
    o, h = gated_delta_rule(**x, use_qk_l2norm=True, impl="chunk_torch", config={"chunk_size": chunk_size})
    assert_close("o", o_ref, o, 2e-3)
    assert_close("state", h_ref, h, 2e-3)


def test_naive_matches_a_hand_computed_step():
    """One step from a known state, written out by hand (guards the reference itself)."""
    x = make_inputs(1, 1, 1, 1, 4, 3)
    q, k, v, g, beta, S = (x[n][0, 0, 0] if n != "initial_state" else x[n][0, 0] for n in
                           ("q", "k", "v", "g", "beta", "initial_state"))
    S = S * g.exp()
    S = S + torch.outer(k, beta * (v - S.T @ k))
    o, h = gated_delta_rule(**x, scale=0.5)
    assert_close("o", (S.T @ q) * 0.5, o[0, 0, 0], 1e-6)
    assert_close("state", S, h[0, 0], 1e-6)


@pytest.mark.parametrize("impl", ["recurrent_torch", "recurrent_cpu", "chunk_torch"])
def test_decode_steps_equal_one_prefill(impl):
    """T single-token calls threading the state (in place) == one chunked prefill of the T tokens."""
    x = make_inputs(2, 21, 2, 6, 32, 32)
    o_pre, h_pre = gated_delta_rule(**x, use_qk_l2norm=True, impl="chunk_torch", config={"chunk_size": 8})
    state = x["initial_state"].clone()
    outs = []
    for t in range(21):
        step = {n: x[n][:, t:t + 1] for n in ("q", "k", "v", "g", "beta")}
        o, h = gated_delta_rule(**step, initial_state=state, use_qk_l2norm=True, impl=impl, inplace_state=True)
        assert h.data_ptr() == state.data_ptr()
        outs.append(o)
    assert_close("o", o_pre, torch.cat(outs, 1), 2e-3)
    assert_close("state", h_pre, state, 2e-3)


@pytest.mark.parametrize("impl", ["naive", "recurrent_torch", "recurrent_cpu", "chunk_torch"])
def test_gate_from_raw_projections(impl):
    """A_log / dt_bias given: g, beta are the raw a, b; same as computing the gate first."""
    x = make_inputs(1, 9, 2, 6, 32, 32)
    gen = torch.Generator().manual_seed(42)
    a, b = torch.randn(1, 9, 6, generator=gen) * 3, torch.randn(1, 9, 6, generator=gen)
    A_log, dt_bias = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
    g, beta = gate(a, b, A_log, dt_bias)
    assert (g <= 0).all() and ((beta > 0) & (beta < 1)).all()
    ref = gated_delta_rule(**{**x, "g": g, "beta": beta}, use_qk_l2norm=True, impl="naive")
    out = gated_delta_rule(**{**x, "g": a, "beta": b}, A_log=A_log, dt_bias=dt_bias, use_qk_l2norm=True, impl=impl)
    assert_close("o", ref[0], out[0], 2e-3)


def test_l2norm_flag_equals_prenormalised_inputs():
    x = make_inputs(1, 9, 2, 6, 32, 32)
    ref = gated_delta_rule(**{**x, "q": l2norm(x["q"]), "k": l2norm(x["k"])}, impl="recurrent_torch")
    out = gated_delta_rule(**x, use_qk_l2norm=True, impl="recurrent_torch")
    assert_close("o", ref[0], out[0], 1e-5)


def test_no_final_state_when_not_asked():
    o, h = gated_delta_rule(**make_inputs(1, 5, 1, 1, 8, 8), output_final_state=False, impl="chunk_torch")
    assert h is None and o.shape == (1, 5, 1, 8)


# -- conv1d ---------------------------------------------------------------------------------------------------

def _conv_inputs(B=2, T=11, D=24, W=4):
    gen = torch.Generator().manual_seed(42)
    return (torch.randn(B, T, D, generator=gen), torch.randn(D, W, generator=gen), torch.randn(D, generator=gen),
            torch.randn(B, D, W - 1, generator=gen))


def test_conv1d_prefill_matches_torch_conv():
    x, w, bias, state = _conv_inputs()
    y, final = causal_conv1d(x, w, bias, conv_state=state)
    xp = torch.cat([state, x.transpose(1, 2)], dim=2)                      # [B, D, W - 1 + T]
    ref = F.silu(F.conv1d(xp, w[:, None, :], bias, groups=w.shape[0])).transpose(1, 2)
    assert_close("y", ref, y, 1e-5)
    assert_close("final state", xp[:, :, -3:], final, 1e-6)
    y0, _ = causal_conv1d(x, w, bias)                                     # no state: zeros in the past
    ref0 = F.silu(F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), w[:, None, :], bias, groups=w.shape[0]))
    assert_close("y (no state)", ref0.transpose(1, 2), y0, 1e-5)


def test_conv1d_decode_steps_equal_prefill():
    x, w, bias, state = _conv_inputs()
    y_pre, final = causal_conv1d(x, w, bias, conv_state=state)
    rolling = state.clone()
    ys = [causal_conv1d_update(x[:, t], rolling, w, bias) for t in range(x.shape[1])]
    assert_close("y", y_pre, torch.stack(ys, 1), 1e-5)
    assert_close("state", final, rolling, 1e-6)


@pytest.mark.parametrize("with_bias,activation", [(True, "silu"), (False, "silu"), (True, None)])
def test_conv1d_update_c_path_equals_torch_path(with_bias, activation, monkeypatch):
    """The fused C decode update (fp32 CPU tensors) and the torch ops it replaces: same y, same rolled state."""
    from qlab.kernels.deltanet import conv1d

    x, w, bias, state = _conv_inputs(D=40)
    bias = bias if with_bias else None
    s_c, s_t = state.clone(), state.clone()
    y_c = causal_conv1d_update(x[:, 0], s_c, w, bias, activation)
    assert conv1d._c_update(x[:, 1], state.clone(), w, bias, activation) is not None, "the C path did not run"
    monkeypatch.setattr(conv1d, "_c_update", lambda *a: None)
    y_t = causal_conv1d_update(x[:, 0], s_t, w, bias, activation)
    assert_close("y", y_t, y_c, 1e-6)
    assert torch.equal(s_c, s_t)


def test_conv1d_bad_input():
    x, w, bias, state = _conv_inputs()
    with pytest.raises(ValueError, match=r"conv_state: shape \[2, 24, 4\]"):
        causal_conv1d(x, w, bias, conv_state=torch.randn(2, 24, 4))
    with pytest.raises(ValueError, match=r"weight: shape \[25, 4\]"):
        causal_conv1d(x, torch.randn(25, 4), bias)


# -- bad input, availability, tunables ------------------------------------------------------------------------

def test_bad_shapes_name_the_argument():
    x = make_inputs(1, 5, 2, 6, 8, 8)
    cases = [
        ({"q": x["q"][0]}, r"q: shape \[5, 2, 8\], expected \[B, T, H, K\]"),
        ({"k": x["k"][:, :4]}, r"k: shape \[1, 4, 2, 8\], expected .* = \[1, 5, 2, 8\]"),
        ({"v": torch.randn(1, 5, 5, 8)}, r"v: shape \[1, 5, 5, 8\] has HV=5 .* not a multiple of H=2"),
        ({"g": x["g"][..., :3]}, r"g: shape \[1, 5, 3\], expected \[B, T, HV\] = \[1, 5, 6\]"),
        ({"beta": x["beta"][:, :, None]}, r"beta: shape"),
        ({"initial_state": torch.randn(1, 6, 8, 4)}, r"initial_state: shape \[1, 6, 8, 4\], .* = \[1, 6, 8, 8\]"),
        ({"initial_state": x["initial_state"].double()}, r"initial_state: dtype float64, expected one of float32"),
        ({"q": x["q"].to(torch.int32)}, r"q: dtype int32"),
        ({"v": x["v"].bfloat16()}, r"v: dtype bfloat16, expected one of float32"),
    ]
    for change, msg in cases:
        with pytest.raises(ValueError, match=msg):
            gated_delta_rule(**{**x, **change})


def test_unknown_and_unavailable_impls():
    x = make_inputs(1, 2, 1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"impl: unknown 'chunk_trch'.*closest: chunk_torch"):
        gated_delta_rule(**x, impl="chunk_trch")
    assert {"naive", "recurrent_torch", "chunk_torch"} <= set(available_impls()) <= set(IMPLS)
    if "cupy_recurrent" not in available_impls():
        with pytest.raises(ImplUnavailableError, match=r"'cupy_recurrent' is not available .*available: naive"):
            gated_delta_rule(**x, impl="cupy_recurrent")
    if "triton_chunk" not in available_impls():  # no GPU and no TRITON_INTERPRET
        with pytest.raises(ImplUnavailableError, match=r"'triton_chunk' is not available .*no CUDA device"):
            gated_delta_rule(**x, impl="triton_chunk")


def test_inplace_needs_a_contiguous_state():
    x = make_inputs(1, 2, 1, 1, 8, 8)
    with pytest.raises(ValueError, match="initial_state: None"):
        gated_delta_rule(**{**x, "initial_state": None}, inplace_state=True)
    bad = torch.randn(1, 1, 8, 8).transpose(2, 3)
    with pytest.raises(ValueError, match=r"initial_state: .* not contiguous"):
        gated_delta_rule(**{**x, "initial_state": bad}, inplace_state=True)


def test_tunable_defaults_are_in_their_spaces_and_valid():
    for impl, cfg in DEFAULTS.items():
        assert all(v in SPACES[impl][p] for p, v in cfg.items()), impl
        assert valid(impl, cfg), impl
    assert not valid("triton_recurrent", {"BV": 64, "num_warps": 1})      # [128, 64] fp32 on 32 threads
    assert not valid("triton_recurrent", {"nope": 1})
    assert not valid("cupy_recurrent", {"KSPLIT": 3}, {"K": 128})
