"""Split-K flash-decoding in Triton (README.md, "Decode").

Grid (num_splits, HKV, B): a program owns one KV head and one slice of the sequence, and computes all G
query heads of that head's group from one read of the slice's K and V (the G rows are padded to a tl.dot
tile). It writes a partial output and its base-2 log-sum-exp; `_merge_kernel` then combines the splits of
each query head. Splitting the sequence is what fills a GPU at batch 1: B·HKV = 4 programs alone would use
4 of ~100 SMs. An FP8 (e4m3) cache is converted in-kernel; its per-head scales fold into the scores (k) and
into the partial output (v), so no dequantised copy is ever written.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from .tunables import DEFAULTS, choose_num_splits


@triton.jit
def _e4m3_to_f32(b):
    """FP8 e4m3 bytes (uint8) -> fp32 with integer ops, so sm_80/86 (no native e4m3) run the same code:
    normal codes move sign, exponent (bias 7 -> 127) and mantissa into fp32 bit positions; subnormal codes
    (exponent 0) are mantissa · 2^-9. No fp32 subnormal is ever formed, so flush-to-zero cannot bite.
    The NaN codes 0x7f/0xff read as ±480."""
    u = b.to(tl.uint32)
    e = (u >> 3) & 0xF
    m = u & 0x7
    normal = (((u & 0x80) << 24) | ((e + 120) << 23) | (m << 20)).to(tl.float32, bitcast=True)
    sub = m.to(tl.float32) * 0.001953125
    sub = tl.where((u & 0x80) != 0, -sub, sub)
    return tl.where(e == 0, sub, normal)


@triton.jit
def _split_kernel(
    q_ptr, k_ptr, v_ptr, len_ptr, ks_ptr, vs_ptr, o_ptr, lse_ptr,
    scale,
    stride_qb, stride_qh,
    stride_kb, stride_kh, stride_ks,
    stride_vb, stride_vh, stride_vs,
    split_len, num_splits, HKV,
    G: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, FP8: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    i_s = tl.program_id(0)
    i_h = tl.program_id(1)
    i_b = tl.program_id(2).to(tl.int64)
    L = tl.load(len_ptr + i_b).to(tl.int32)
    start = i_s * split_len
    end = tl.minimum(start + split_len, L)

    o_g = tl.arange(0, G_PAD)
    o_d = tl.arange(0, D)
    o_n = tl.arange(0, BLOCK_N)
    m_g = o_g < G
    hq = i_h * G + o_g                                                           # query heads of the group

    p_q = q_ptr + i_b * stride_qb + hq[:, None].to(tl.int64) * stride_qh + o_d[None, :]
    b_q = tl.load(p_q, mask=m_g[:, None], other=0.0)                             # [G_PAD, D]
    s_scale = scale * 1.4426950408889634                                         # softmax in base 2
    if FP8:
        b_q = b_q.to(tl.bfloat16)
        s_scale = s_scale * tl.load(ks_ptr + i_b * HKV + i_h)
    else:
        b_q = b_q.to(k_ptr.dtype.element_ty)
    if DOT_F32:                       # the CPU interpreter's tl.dot mishandles bf16: same values, fp32 dot
        b_q = b_q.to(tl.float32)

    p_k = k_ptr + i_b * stride_kb + i_h.to(tl.int64) * stride_kh
    p_v = v_ptr + i_b * stride_vb + i_h.to(tl.int64) * stride_vh
    m_i = tl.full([G_PAD], float("-inf"), tl.float32)
    l_i = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        o_t = n0 + o_n
        m_t = o_t < end
        b_k = tl.load(p_k + o_t[:, None].to(tl.int64) * stride_ks + o_d[None, :], mask=m_t[:, None], other=0.0)
        b_v = tl.load(p_v + o_t[:, None].to(tl.int64) * stride_vs + o_d[None, :], mask=m_t[:, None], other=0.0)
        if FP8:                   # e4m3 values are exact in bf16: the dots stay on bf16 tensor cores
            b_k = _e4m3_to_f32(b_k).to(tl.bfloat16)
            b_v = _e4m3_to_f32(b_v).to(tl.bfloat16)
        if DOT_F32:
            b_k = b_k.to(tl.float32)
        s = tl.dot(b_q, tl.trans(b_k), input_precision="ieee") * s_scale          # [G_PAD, BLOCK_N]
        s = tl.where(m_t[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        b_p = p.to(b_v.dtype)                           # probabilities rounded like the GPU's bf16 dot
        if DOT_F32:
            b_p = b_p.to(tl.float32)
            b_v = b_v.to(tl.float32)
        acc = acc * alpha[:, None] + tl.dot(b_p, b_v, input_precision="ieee")
        m_i = m_new

    has = l_i > 0.0                                     # an empty split (past this row's length) has none
    o = acc / tl.where(has, l_i, 1.0)[:, None]
    if FP8:
        o = o * tl.load(vs_ptr + i_b * HKV + i_h)
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    row = (i_b * HKV * G + hq.to(tl.int64)) * num_splits + i_s                   # [B, HQ, num_splits]
    tl.store(o_ptr + row[:, None] * D + o_d[None, :], o, mask=m_g[:, None])
    tl.store(lse_ptr + row, lse, mask=m_g)


@triton.jit
def _merge_kernel(o_part_ptr, lse_ptr, out_ptr, stride_ob, stride_oh, num_splits, HQ,
                  D: tl.constexpr, SPLITS_PAD: tl.constexpr):
    """out[b, h] = Σ_s 2^(lse_s − lse) · o_s / Σ_s 2^(lse_s − lse) (split 0 is never empty). The splits are
    summed one row at a time, so registers stay at one [D] row whatever the split count."""
    i_h = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    o_s = tl.arange(0, SPLITS_PAD)
    o_d = tl.arange(0, D)
    row = (i_b * HQ + i_h) * num_splits
    m = tl.max(tl.load(lse_ptr + row + o_s, mask=o_s < num_splits, other=float("-inf")), 0)
    acc = tl.zeros([D], tl.float32)
    den = 0.0
    for i_s in range(0, num_splits):
        w = tl.exp2(tl.load(lse_ptr + row + i_s) - m)
        acc += w * tl.load(o_part_ptr + (row + i_s) * D + o_d)
        den += w
    tl.store(out_ptr + i_b * stride_ob + i_h * stride_oh + o_d, (acc / den).to(out_ptr.dtype.element_ty))


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return os.cpu_count() or 1      # the interpreter: any positive number works


def plan(B: int, HKV: int, max_len: int, block_n: int, num_sms: int, num_splits: int = 0) -> tuple[int, int]:
    """-> (num_splits, split_len): split_len a multiple of block_n, every split but the last full."""
    if num_splits <= 0:
        num_splits = choose_num_splits(B, HKV, max_len, num_sms)
    blocks = math.ceil(max_len / block_n)
    per = math.ceil(blocks / max(1, min(num_splits, blocks)))
    split_len = per * block_n
    return math.ceil(max_len / split_len), split_len


def decode(q, k_cache, v_cache, lengths, scale: float, k_scale=None, v_scale=None, config=None) -> torch.Tensor:
    """q [B, HQ, D], caches [B, HKV, S, D] (bf16/fp16/fp32 or float8_e4m3fn with k_scale/v_scale [B, HKV]),
    lengths [B] -> o [B, HQ, D] in q's dtype. config: BLOCK_N, num_splits (0 = heuristic), num_warps,
    num_stages (tunables.py)."""
    cfg = DEFAULTS["triton_decode"] | (config or {})
    B, HQ, D = q.shape
    _, HKV, S, _ = k_cache.shape
    G = HQ // HKV
    if D & (D - 1):
        raise ValueError(f"q: triton_decode needs a power-of-two head_dim, got {D}")
    q = q.contiguous()
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("k_cache/v_cache: the last (head_dim) dimension must be contiguous")
    lengths = lengths.to(device=q.device, dtype=torch.int32).contiguous()
    max_len = int(lengths.max())
    block_n = int(cfg["BLOCK_N"])
    num_splits, split_len = plan(B, HKV, max_len, block_n, _num_sms(q.device), int(cfg["num_splits"]))
    fp8 = k_scale is not None
    dummy = torch.ones(1, dtype=torch.float32, device=q.device)
    ks = k_scale if fp8 else dummy
    vs = v_scale if fp8 else dummy
    if fp8:                         # read as bytes: see _e4m3_to_f32
        k_cache, v_cache = k_cache.view(torch.uint8), v_cache.view(torch.uint8)
    o_part = torch.empty(B, HQ, num_splits, D, dtype=torch.float32, device=q.device)
    lse = torch.empty(B, HQ, num_splits, dtype=torch.float32, device=q.device)
    _split_kernel[(num_splits, HKV, B)](
        q, k_cache, v_cache, lengths, ks, vs, o_part, lse, scale,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        split_len, num_splits, HKV,
        G=G, G_PAD=max(16, triton.next_power_of_2(G)), D=D, BLOCK_N=block_n, FP8=fp8,
        DOT_F32=q.device.type == "cpu",
        num_warps=int(cfg["num_warps"]), num_stages=int(cfg["num_stages"]),
    )
    out = torch.empty_like(q)
    _merge_kernel[(HQ, B)](o_part, lse, out, out.stride(0), out.stride(1), num_splits, HQ,
                           D=D, SPLITS_PAD=triton.next_power_of_2(num_splits), num_warps=4)
    return out
