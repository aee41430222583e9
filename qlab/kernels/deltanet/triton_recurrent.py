"""The decode kernel: the gated delta rule stepped in time, one program per (V block, batch x value head),
the [K, BV] slice of the state held in registers for all T steps and written back once (in place when the
output buffer is the initial state). Optional in-kernel q/k L2 norm and gate (g from A_log, a, dt_bias;
beta from b). Layout as in naive.py; GVA: value head i_hv reads key head i_hv // (HV // H).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from qlab.kernels.deltanet.tunables import DEFAULTS


@triton.jit(do_not_specialize=["T"])
def gdn_recurrent_fwd_kernel(
    q, k, v, g, beta, A_log, dt_bias, o, h0, ht,
    scale, T,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    USE_QK_L2NORM: tl.constexpr, USE_GATE: tl.constexpr, HAS_DT_BIAS: tl.constexpr,
):
    i_v, i_nh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_h = m_k[:, None] & m_v[None, :]

    p_q = q + (i_n * T * H + i_h) * K + o_k
    p_k = k + (i_n * T * H + i_h) * K + o_k
    p_v = v + (i_n * T * HV + i_hv) * V + o_v
    p_o = o + (i_n * T * HV + i_hv) * V + o_v
    p_g = g + i_n * T * HV + i_hv
    p_beta = beta + i_n * T * HV + i_hv
    p_h = i_nh * K * V + o_k[:, None] * V + o_v[None, :]

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += tl.load(h0 + p_h, mask=m_h, other=0.0).to(tl.float32)
    if USE_GATE:  # per-head constants of the gate, loaded once
        b_A = -tl.exp(tl.load(A_log + i_hv).to(tl.float32))
        b_dt = 0.0
        if HAS_DT_BIAS:
            b_dt = tl.load(dt_bias + i_hv).to(tl.float32)

    for _ in range(0, T):
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v, mask=m_v, other=0.0).to(tl.float32)
        b_g = tl.load(p_g).to(tl.float32)
        b_beta = tl.load(p_beta).to(tl.float32)
        if USE_QK_L2NORM:
            b_q = b_q / tl.sqrt(tl.sum(b_q * b_q) + 1e-6)
            b_k = b_k / tl.sqrt(tl.sum(b_k * b_k) + 1e-6)
        if USE_GATE:  # g = -exp(A_log) softplus(a + dt_bias) (torch's threshold 20), beta = sigmoid(b)
            b_a = b_g + b_dt
            b_g = b_A * tl.where(b_a > 20.0, b_a, tl.log(1.0 + tl.exp(tl.minimum(b_a, 20.0))))
            b_beta = tl.sigmoid(b_beta)
        b_q = b_q * scale
        b_h *= tl.exp(b_g)
        b_v = b_beta * (b_v - tl.sum(b_h * b_k[:, None], 0))       # delta [BV]
        b_h += b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v)
        p_q += H * K
        p_k += H * K
        p_v += HV * V
        p_o += HV * V
        p_g += HV
        p_beta += HV

    if STORE_FINAL_STATE:
        tl.store(ht + p_h, b_h.to(ht.dtype.element_ty), mask=m_h)


def triton_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                      use_qk_l2norm=False, A_log=None, dt_bias=None, state_out=None, config=None):
    """Returns (o [B, T, HV, V] in v's dtype, final state [B, HV, K, V] fp32 or None). With A_log given,
    g and beta are the raw projections a and b and the gate is computed in the kernel. `state_out`: the
    fp32 buffer for the final state (pass `initial_state` itself for the in-place decode update).
    `config`: {"BV", "num_warps"} (tunables.py)."""
    cfg = {**DEFAULTS["triton_recurrent"], **(config or {})}
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    BK, BV = triton.next_power_of_2(K), min(int(cfg["BV"]), triton.next_power_of_2(V))
    scale = K ** -0.5 if scale is None else scale
    o = torch.empty_like(v)
    ht = None
    if output_final_state:
        ht = state_out if state_out is not None else torch.empty(B, HV, K, V, dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(V, BV), B * HV)
    gdn_recurrent_fwd_kernel[grid](
        q, k, v, g, beta,
        A_log if A_log is not None else g, dt_bias if dt_bias is not None else g,
        o, initial_state if initial_state is not None else o, ht if ht is not None else o,
        float(scale), T,
        H=H, HV=HV, K=K, V=V, BK=BK, BV=BV,
        USE_INITIAL_STATE=initial_state is not None, STORE_FINAL_STATE=ht is not None,
        USE_QK_L2NORM=use_qk_l2norm, USE_GATE=A_log is not None, HAS_DT_BIAS=dt_bias is not None,
        num_warps=int(cfg["num_warps"]), num_stages=1,
    )
    return o, ht
