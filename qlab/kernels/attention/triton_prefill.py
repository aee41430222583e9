"""Causal flash-attention forward in Triton (README.md, "Prefill").

Grid (cdiv(T, BLOCK_M), B·HQ): a program owns BLOCK_M query rows of one head, keeps them on chip and streams
K/V tiles of that head's KV head (h // G) through an online softmax in base 2. Causal programs visit the
fully visible tiles left of the diagonal without a mask, then the diagonal tiles with one, and skip the rest,
which halves the work. Tile sizes are tunables (tunables.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .tunables import DEFAULTS


@triton.jit
def _tile(acc, m_i, l_i, b_q, p_k, p_v, n0, o_m, o_n, o_d, T, stride_kt, stride_vt, s_scale,
          MASK_CAUSAL: tl.constexpr, DOT_F32: tl.constexpr):
    """One K/V tile at tokens n0 + o_n folded into (acc, m_i, l_i)."""
    o_t = n0 + o_n
    m_t = o_t < T
    b_k = tl.load(p_k + o_t[:, None].to(tl.int64) * stride_kt + o_d[None, :], mask=m_t[:, None], other=0.0)
    b_v = tl.load(p_v + o_t[:, None].to(tl.int64) * stride_vt + o_d[None, :], mask=m_t[:, None], other=0.0)
    lp = b_v.dtype
    if DOT_F32:        # the CPU interpreter's tl.dot mishandles bf16: same values, fp32 dot
        b_k = b_k.to(tl.float32)
        b_v = b_v.to(tl.float32)
    s = tl.dot(b_q, tl.trans(b_k), input_precision="ieee") * s_scale               # [BLOCK_M, BLOCK_N]
    keep = m_t[None, :]
    if MASK_CAUSAL:
        keep = keep & (o_m[:, None] >= o_t[None, :])
    s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    b_p = p.to(lp)
    if DOT_F32:
        b_p = b_p.to(tl.float32)
    acc = acc * alpha[:, None] + tl.dot(b_p, b_v, input_precision="ieee")
    return acc, m_new, l_i


@triton.jit
def _prefill_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_ob, stride_ot, stride_oh,
    T, HQ,
    G: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, DOT_F32: tl.constexpr,
):
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = (i_bh // HQ).to(tl.int64)
    i_h = i_bh % HQ
    i_kh = (i_h // G).to(tl.int64)
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, D)
    m_m = o_m < T

    p_q = q_ptr + i_b * stride_qb + i_h.to(tl.int64) * stride_qh
    b_q = tl.load(p_q + o_m[:, None].to(tl.int64) * stride_qt + o_d[None, :], mask=m_m[:, None], other=0.0)
    if DOT_F32:
        b_q = b_q.to(tl.float32)
    p_k = k_ptr + i_b * stride_kb + i_kh * stride_kh
    p_v = v_ptr + i_b * stride_vb + i_kh * stride_vh
    s_scale = scale * 1.4426950408889634

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    if CAUSAL:
        lo_diag = i_m * BLOCK_M                            # BLOCK_M % BLOCK_N == 0: tiles below are all visible
        for n0 in range(0, lo_diag, BLOCK_N):
            acc, m_i, l_i = _tile(acc, m_i, l_i, b_q, p_k, p_v, n0, o_m, o_n, o_d, T, stride_kt, stride_vt,
                                  s_scale, False, DOT_F32)
        for n0 in range(lo_diag, tl.minimum(lo_diag + BLOCK_M, T), BLOCK_N):
            acc, m_i, l_i = _tile(acc, m_i, l_i, b_q, p_k, p_v, n0, o_m, o_n, o_d, T, stride_kt, stride_vt,
                                  s_scale, True, DOT_F32)
    else:
        for n0 in range(0, T, BLOCK_N):
            acc, m_i, l_i = _tile(acc, m_i, l_i, b_q, p_k, p_v, n0, o_m, o_n, o_d, T, stride_kt, stride_vt,
                                  s_scale, False, DOT_F32)
    # rows past T (the last tile's padding) may hold NaN; they are never stored
    o = acc / l_i[:, None]
    p_o = o_ptr + i_b * stride_ob + i_h.to(tl.int64) * stride_oh
    tl.store(p_o + o_m[:, None].to(tl.int64) * stride_ot + o_d[None, :], o.to(o_ptr.dtype.element_ty),
             mask=m_m[:, None])


def prefill(q, k, v, scale: float, causal: bool = True, config=None) -> torch.Tensor:
    """q [B, T, HQ, D], k/v [B, T, HKV, D] -> o [B, T, HQ, D] in q's dtype.
    config: BLOCK_M, BLOCK_N (BLOCK_M a multiple of BLOCK_N), num_warps, num_stages (tunables.py)."""
    cfg = DEFAULTS["triton_prefill"] | (config or {})
    B, T, HQ, D = q.shape
    G = HQ // k.shape[2]
    bm, bn = int(cfg["BLOCK_M"]), int(cfg["BLOCK_N"])
    if D & (D - 1):
        raise ValueError(f"q: triton_prefill needs a power-of-two head_dim, got {D}")
    if bm % bn:
        raise ValueError(f"config: BLOCK_M={bm} must be a multiple of BLOCK_N={bn}")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty_like(q)
    _prefill_kernel[(triton.cdiv(T, bm), B * HQ)](
        q, k, v, o, scale,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        o.stride(0), o.stride(1), o.stride(2),
        T, HQ,
        G=G, D=D, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, DOT_F32=q.device.type == "cpu",
        num_warps=int(cfg["num_warps"]), num_stages=int(cfg["num_stages"]),
    )
    return o
