"""The chunked (WY) prefill in two Triton kernels (the math: README.md, "Chunked form"; chunk_torch.py is
the same algorithm in torch):

1. `gdn_chunk_prep_kernel`, one program per (chunk, batch x value head), all chunks in parallel: the
   within-chunk cumulative decay g_cum, A = strict_lower(beta_i k_i.k_j exp(g_cum_i - g_cum_j)), its inverse
   Tinv = (I + A)^-1 by forward substitution in registers, and W = Tinv (beta exp(g_cum) k), U = Tinv (beta v).
2. `gdn_chunk_fwd_kernel`, one program per (V block, batch x value head), sequential over chunks: with the
   [K, BV] state slice in registers, V' = U - W S, O = scale (q exp(g_cum)) S + lower(q k^T decay) V',
   S <- exp(g_cum_last) S + (k exp(g_cum_last - g_cum))^T V'.
fp32 throughout; the matmuls run in IEEE fp32 for fp32 inputs and in TF32 for 16-bit inputs (tensor cores).
q/k L2 norm, when asked, is applied in torch before the kernels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from qlab.kernels.deltanet.naive import l2norm
from qlab.kernels.deltanet.tunables import DEFAULTS


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision="tf32")


@triton.jit(do_not_specialize=["T"])
def gdn_chunk_prep_kernel(
    k, v, g, beta, gcum, w, u, T,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BD: tl.constexpr, IEEE: tl.constexpr,
):
    i_t, i_nh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    o_d = tl.arange(0, BD)
    rows = tl.arange(0, BT)

    p_g = g + (i_n * T + o_t) * HV + i_hv
    b_gc = tl.cumsum(tl.load(p_g, mask=m_t, other=0.0).to(tl.float32), 0)      # [BT] g_cum
    tl.store(gcum + (i_n * T + o_t) * HV + i_hv, b_gc, mask=m_t)
    b_beta = tl.load(beta + (i_n * T + o_t) * HV + i_hv, mask=m_t, other=0.0).to(tl.float32)

    # A = strict_lower(beta_i k_i.k_j exp(g_cum_i - g_cum_j)), k.k^T accumulated over K in BD-wide slices
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BD)):
        o_k = i_k * BD + o_d
        p_k = k + ((i_n * T + o_t[:, None]) * H + i_h) * K + o_k[None, :]
        b_k = tl.load(p_k, mask=m_t[:, None] & (o_k[None, :] < K), other=0.0).to(tl.float32)
        b_kk += _dot(b_k, tl.trans(b_k), IEEE)
    strict = rows[:, None] > rows[None, :]
    b_A = tl.where(strict, b_kk * b_beta[:, None] * tl.exp(tl.where(strict, b_gc[:, None] - b_gc[None, :], 0.0)),
                   0.0)

    # Tinv = (I + A)^-1, unit lower triangular: row i = e_i - sum_{j<i} A_ij Tinv_j (rows j < i already final)
    b_Ti = tl.where(rows[:, None] == rows[None, :], 1.0, 0.0)
    for i in range(1, BT):
        b_a = tl.sum(tl.where(rows[:, None] == i, b_A, 0.0), 0)                 # row i of A, [BT]
        b_r = tl.sum(b_a[:, None] * b_Ti, 0)                                    # (A_i . Tinv), [BT]
        b_Ti = tl.where(rows[:, None] == i, b_Ti - b_r[None, :], b_Ti)

    b_kw = b_beta * tl.exp(b_gc)                                                # row weights of k for W
    for i_k in range(0, tl.cdiv(K, BD)):
        o_k = i_k * BD + o_d
        m = m_t[:, None] & (o_k[None, :] < K)
        b_k = tl.load(k + ((i_n * T + o_t[:, None]) * H + i_h) * K + o_k[None, :], mask=m, other=0.0)
        b_w = _dot(b_Ti, b_k.to(tl.float32) * b_kw[:, None], IEEE)
        tl.store(w + ((i_n * T + o_t[:, None]) * HV + i_hv) * K + o_k[None, :], b_w, mask=m)
    for i_v in range(0, tl.cdiv(V, BD)):
        o_v = i_v * BD + o_d
        m = m_t[:, None] & (o_v[None, :] < V)
        b_v = tl.load(v + ((i_n * T + o_t[:, None]) * HV + i_hv) * V + o_v[None, :], mask=m, other=0.0)
        b_u = _dot(b_Ti, b_v.to(tl.float32) * b_beta[:, None], IEEE)
        tl.store(u + ((i_n * T + o_t[:, None]) * HV + i_hv) * V + o_v[None, :], b_u, mask=m)


@triton.jit
def _tile(base, rows, cols, row_stride, row0, col0, BR: tl.constexpr, BC: tl.constexpr):
    """The zero-padded [BR, BC] tile at (row0, col0) of a [rows, cols] view with `row_stride`, `base` a
    per-head pointer: offsets stay int32 (half the registers of 64-bit ones; T * HV * V < 2^31)."""
    r, c = row0 + tl.arange(0, BR), col0 + tl.arange(0, BC)
    return tl.load(base + r[:, None] * row_stride + c[None, :], mask=(r[:, None] < rows) & (c[None, :] < cols),
                   other=0.0)


@triton.jit
def _put(base, rows, cols, row_stride, row0, col0, x, BR: tl.constexpr, BC: tl.constexpr):
    r, c = row0 + tl.arange(0, BR), col0 + tl.arange(0, BC)
    tl.store(base + r[:, None] * row_stride + c[None, :], x.to(base.dtype.element_ty),
             mask=(r[:, None] < rows) & (c[None, :] < cols))


@triton.jit(do_not_specialize=["T"])
def gdn_chunk_fwd_kernel(
    q, k, w, u, gcum, o, h0, ht, scale, T,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr, IEEE: tl.constexpr,
):
    # The state slice is held as up to two [BK, BV] halves (K <= 2 BK): every [BT, K] operand is then
    # loaded a half at a time, right before its use, so the live register set stays small (no spills).
    TWO: tl.constexpr = K > BK
    i_v, i_nh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    c_v = i_v * BV
    rows = tl.arange(0, BT)
    causal = rows[:, None] >= rows[None, :]
    # [T, K] / [T, V] views of this sequence and head (row strides: all heads of a token)
    q_, k_ = q + (i_n * T * H + i_h) * K, k + (i_n * T * H + i_h) * K
    w_ = w + (i_n * T * HV + i_hv) * K
    u_, o_ = u + (i_n * T * HV + i_hv) * V, o + (i_n * T * HV + i_hv) * V
    g_ = gcum + i_n * T * HV + i_hv

    b_h1 = tl.zeros([BK, BV], dtype=tl.float32)
    b_h2 = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h1 += _tile(h0 + i_nh * K * V, K, V, V, 0, c_v, BK, BV)
        if TWO:
            b_h2 += _tile(h0 + i_nh * K * V, K, V, V, BK, c_v, BK, BV)
    for i_t in range(0, tl.cdiv(T, BT)):
        t0 = i_t * BT
        m_t = t0 + rows < T
        b_glast = tl.load(g_ + (tl.minimum(t0 + BT, T) - 1) * HV)
        b_gc = tl.load(g_ + (t0 + rows) * HV, mask=m_t, other=0.0)
        b_gc = tl.where(m_t, b_gc, b_glast)  # padded rows: no decay past the last token (no exp overflow)

        # V' = U - W S  (old state)
        b_vn = _tile(u_, T, V, HV * V, t0, c_v, BT, BV) - _dot(_tile(w_, T, K, HV * K, t0, 0, BT, BK), b_h1, IEEE)
        if TWO:
            b_vn -= _dot(_tile(w_, T, K, HV * K, t0, BK, BT, BK), b_h2, IEEE)
        # O = scale ((q e^gc) S + lower(q k^T e^(gc_i - gc_j)) V')
        b_q = _tile(q_, T, K, H * K, t0, 0, BT, BK).to(tl.float32)
        b_att = _dot(b_q, tl.trans(_tile(k_, T, K, H * K, t0, 0, BT, BK).to(tl.float32)), IEEE)
        b_o = _dot(b_q * tl.exp(b_gc)[:, None], b_h1, IEEE)
        if TWO:
            b_q = _tile(q_, T, K, H * K, t0, BK, BT, BK).to(tl.float32)
            b_att += _dot(b_q, tl.trans(_tile(k_, T, K, H * K, t0, BK, BT, BK).to(tl.float32)), IEEE)
            b_o += _dot(b_q * tl.exp(b_gc)[:, None], b_h2, IEEE)
        b_att = tl.where(causal, b_att * tl.exp(tl.where(causal, b_gc[:, None] - b_gc[None, :], 0.0)), 0.0)
        _put(o_, T, V, HV * V, t0, c_v, (b_o + _dot(b_att, b_vn, IEEE)) * scale, BT, BV)

        # S <- e^glast S + (k e^(glast - gc))^T V'
        b_kd = tl.where(m_t, tl.exp(b_glast - b_gc), 0.0)[:, None]
        b_k = _tile(k_, T, K, H * K, t0, 0, BT, BK).to(tl.float32) * b_kd
        b_h1 = b_h1 * tl.exp(b_glast) + _dot(tl.trans(b_k), b_vn, IEEE)
        if TWO:
            b_k = _tile(k_, T, K, H * K, t0, BK, BT, BK).to(tl.float32) * b_kd
            b_h2 = b_h2 * tl.exp(b_glast) + _dot(tl.trans(b_k), b_vn, IEEE)
    if STORE_FINAL_STATE:
        _put(ht + i_nh * K * V, K, V, V, 0, c_v, b_h1, BK, BV)
        if TWO:
            _put(ht + i_nh * K * V, K, V, V, BK, c_v, b_h2, BK, BV)


def triton_chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                  use_qk_l2norm=False, state_out=None, config=None):
    """Returns (o [B, T, HV, V] in v's dtype, final state [B, HV, K, V] fp32 or None).
    `config`: {"chunk_size", "BV", "num_warps", "num_stages"} (tunables.py)."""
    cfg = {**DEFAULTS["triton_chunk"], **(config or {})}
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    BT = int(cfg["chunk_size"])
    BK = min(64, triton.next_power_of_2(K))  # state half: K <= 2 BK
    if K > 2 * BK:
        raise ValueError(f"k: head dim K={K}; triton_chunk handles K <= 128")
    if T * max(H * K, HV * max(K, V)) >= 2**31:  # the fwd kernel's tile offsets are int32 per sequence
        raise ValueError(f"v: shape {list(v.shape)}: T * HV * max(K, V) must stay below 2^31 for triton_chunk "
                         "(split the prefill into shorter calls, threading the state)")
    BV = min(int(cfg["BV"]), triton.next_power_of_2(V))
    BD = min(64, triton.next_power_of_2(K), triton.next_power_of_2(V))
    scale = K ** -0.5 if scale is None else scale
    if use_qk_l2norm:
        q, k = l2norm(q.float()).to(q.dtype), l2norm(k.float()).to(k.dtype)
    ieee = v.dtype == torch.float32
    warps, stages = int(cfg["num_warps"]), int(cfg["num_stages"])
    gcum = torch.empty(B, T, HV, dtype=torch.float32, device=q.device)
    w = torch.empty(B, T, HV, K, dtype=torch.float32, device=q.device)
    u = torch.empty(B, T, HV, V, dtype=torch.float32, device=q.device)
    gdn_chunk_prep_kernel[(triton.cdiv(T, BT), B * HV)](
        k, v, g, beta, gcum, w, u, T, H=H, HV=HV, K=K, V=V, BT=BT, BD=BD, IEEE=ieee,
        num_warps=warps, num_stages=stages)
    o = torch.empty_like(v)
    ht = None
    if output_final_state:
        ht = state_out if state_out is not None else torch.empty(B, HV, K, V, dtype=torch.float32, device=q.device)
    gdn_chunk_fwd_kernel[(triton.cdiv(V, BV), B * HV)](
        q, k, w, u, gcum, o, initial_state if initial_state is not None else o, ht if ht is not None else o,
        float(scale), T, H=H, HV=HV, K=K, V=V, BT=BT, BK=BK, BV=BV,
        USE_INITIAL_STATE=initial_state is not None, STORE_FINAL_STATE=ht is not None, IEEE=ieee,
        num_warps=warps, num_stages=stages)
    return o, ht
