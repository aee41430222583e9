"""`triton`: fused dequantizing GEMV/GEMM — ggml blocks read once, decoded in registers, fp32 accumulate.

Grid (cdiv(N, BLOCK_N), cdiv(M, BLOCK_M), SPLIT_K). A program walks its share of K in BLOCK_K steps: it loads
the raw bytes of a [BLOCK_N, BLOCK_K] weight tile, decodes them to fp32 (the same arithmetic as ggml's
dequantize_row_*), and accumulates x·wᵀ — with tl.dot when BLOCK_M >= 16 (prefill, batched decode), with a
multiply-and-reduce per activation row when BLOCK_M is small (decode, where the op is a bandwidth-bound GEMV).
With SPLIT_K > 1 (small M: more programs than output tiles keep every SM streaming) the partial sums are
combined with fp32 atomics into a zeroed output.
Activations are fp32 or bf16 (x's dtype): with bf16, tl.dot multiplies bf16 tiles (the tensor-core path a GPU
runs for prefill) and accumulates in fp32; with fp32 it keeps IEEE fp32 products.
Formats: every one the common mixes store (FMT_CODE below); the byte layouts are documented in blocks_*.py.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .tunables import resolve

FMT_CODE = {"Q8_0": 0, "Q4_0": 1, "Q4_K": 2, "INT4-G128": 3, "Q6_K": 4, "Q5_K": 5, "Q3_K": 6, "Q2_K": 7,
            "IQ4_XS": 8, "FP8": 9}
# bytes per block; FP8 is one byte per weight (its per-channel fp32 scales come through s_ptr)
BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_K": 144, "INT4-G128": 68, "Q6_K": 210, "Q5_K": 176, "Q3_K": 110,
               "Q2_K": 84, "IQ4_XS": 136, "FP8": 1}
# IQ4_XS's 16-entry grid (ggml's kvalues_iq4nl) as two int64 words, one byte per entry: entries 0-7 stored
# +128 (all then < 128, so the word stays positive), entries 8-15 as they are (1..113). A shift and a mask
# replace a table in memory, which the kernel could only reach through one more pointer argument.
IQ4_LO = tl.constexpr(0x766A5D4F3F2D1801)
IQ4_HI = tl.constexpr(0x7159453526190D01)


@triton.jit
def _f16_at(p, mask):
    """The little-endian fp16 at byte pointer(s) p, as fp32."""
    lo = tl.load(p, mask=mask, other=0).to(tl.uint16)
    hi = tl.load(p + 1, mask=mask, other=0).to(tl.uint16)
    return (lo | (hi << 8)).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _u8(p, mask):
    return tl.load(p, mask=mask, other=0)


@triton.jit
def _scale_min_k4(s, j, mask):
    """Q4_K/Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 bytes at s, as fp32."""
    jj = j % 4
    a = _u8(s + jj, mask)
    b = _u8(s + 4 + jj, mask)
    c = _u8(s + 8 + jj, mask)
    sc = tl.where(j < 4, a & 63, (c & 15) | ((a >> 6) << 4)).to(tl.float32)
    mn = tl.where(j < 4, b & 63, (c >> 4) | ((b >> 6) << 4)).to(tl.float32)
    return sc, mn


@triton.jit
def _q3_scale(s, k, mask):
    """Q3_K: signed 6-bit scale k (0..15) from the 12 bytes at s: low 4 bits in byte k % 8 (nibble k // 8),
    high 2 bits in byte 8 + k % 4 at bit 2·(k // 4)."""
    lo = (_u8(s + k % 8, mask) >> ((k // 8) * 4)) & 15
    hi = (_u8(s + 8 + k % 4, mask) >> ((k // 4) * 2)) & 3
    return (lo | (hi << 4)).to(tl.float32) - 32.0


@triton.jit
def _iq4_value(nib):
    """kvalues_iq4nl[nib] as fp32 for nibbles 0..15 (IQ4_LO/IQ4_HI above)."""
    n = nib.to(tl.int64)
    lo = ((IQ4_LO >> (8 * (n % 8))) & 255) - 128
    hi = (IQ4_HI >> (8 * (n % 8))) & 255
    return tl.where(n < 8, lo, hi).to(tl.float32)


@triton.jit
def _e4m3_value(b):
    """fp8 e4m3fn byte -> fp32 with integer ops (sm_80/86 have no fp8 conversion; NaN codes are never stored):
    |w| = (8·[e > 0] + m) · 2^(max(e, 1) − 10), e the 4-bit exponent, m the 3-bit mantissa."""
    e = ((b >> 3) & 15).to(tl.int32)
    m = (b & 7).to(tl.float32)
    pow2 = ((tl.maximum(e, 1) - 10 + 127) << 23).to(tl.float32, bitcast=True)
    mag = (tl.where(e > 0, 8.0, 0.0) + m) * pow2
    return tl.where((b >> 7) != 0, -mag, mag)


@triton.jit
def _decode(w_ptr, o_n, g, i, mask, stride_wn, FMT: tl.constexpr):
    """fp32 weights [BN, S, 32]: rows o_n [BN, 1, 1], 32-wide sub-blocks g [1, S, 1], lanes i [1, 1, 32].

    Scales are loaded once per (row, sub-block) — [BN, S, 1], two of them where a format scales 16 weights —
    and only the quant bytes per element, which keeps the pointer tensors (64-bit each) few enough to stay in
    registers. In a 256-weight super-block, sub-block j = g % 8 holds elements e = 32j + i."""
    row = w_ptr + o_n.to(tl.int64) * stride_wn
    j = g % 8
    if FMT == 0:  # Q8_0 {half d; int8 qs[32]}: sub-block = block
        blk = row + g * 34
        q = tl.load(blk + 2 + i, mask=mask, other=0).to(tl.int8, bitcast=True).to(tl.float32)
        w = q * _f16_at(blk, mask)
    elif FMT == 1:  # Q4_0 {half d; u8 qs[16]}: byte i = element i (low) | element i+16 (high)
        blk = row + g * 18
        byte = _u8(blk + 2 + i % 16, mask)
        w = _f16_at(blk, mask) * (tl.where(i < 16, byte & 15, byte >> 4).to(tl.float32) - 8.0)
    elif FMT == 2:  # Q4_K {half d, dmin; u8 scales[12]; u8 qs[128]}
        blk = row + (g // 8) * 144
        byte = _u8(blk + 16 + (j // 2) * 32 + i, mask)
        q = tl.where(j % 2 == 0, byte & 15, byte >> 4).to(tl.float32)
        sc, mn = _scale_min_k4(blk + 4, j, mask)
        w = (_f16_at(blk, mask) * sc) * q - _f16_at(blk + 2, mask) * mn
    elif FMT == 3:  # INT4-G128 {u8 qs[64]; half scale; half zero}: byte t = element 2t (low) | 2t+1 (high)
        blk = row + (g // 4) * 68
        byte = _u8(blk + (g % 4) * 16 + i // 2, mask)
        q = tl.where(i % 2 == 0, byte & 15, byte >> 4).to(tl.float32)
        w = (q - _f16_at(blk + 66, mask)) * _f16_at(blk + 64, mask)
    elif FMT == 4:  # Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}: halves of 128, 16-weight scales
        blk = row + (g // 8) * 210
        h = j // 4
        lo = _u8(blk + h * 64 + (j % 2) * 32 + i, mask)
        lo = tl.where(j % 4 < 2, lo & 15, lo >> 4)
        hi = (_u8(blk + 128 + h * 32 + i, mask) >> ((j % 4) * 2)) & 3
        q = (lo | (hi << 4)).to(tl.float32) - 32.0
        sa = _u8(blk + 192 + 2 * j, mask).to(tl.int8, bitcast=True).to(tl.float32)
        sb = _u8(blk + 193 + 2 * j, mask).to(tl.int8, bitcast=True).to(tl.float32)
        w = (_f16_at(blk + 208, mask) * tl.where(i < 16, sa, sb)) * q
    elif FMT == 5:  # Q5_K {half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: qh[i] bit j = 5th bit
        blk = row + (g // 8) * 176
        byte = _u8(blk + 48 + (j // 2) * 32 + i, mask)
        hi = (_u8(blk + 16 + i, mask) >> j) & 1
        q = (tl.where(j % 2 == 0, byte & 15, byte >> 4) | (hi << 4)).to(tl.float32)
        sc, mn = _scale_min_k4(blk + 4, j, mask)
        w = (_f16_at(blk, mask) * sc) * q - _f16_at(blk + 2, mask) * mn
    elif FMT == 6:  # Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}: hmask[i] bit j = 3rd bit
        blk = row + (g // 8) * 110
        lo = (_u8(blk + 32 + (j // 4) * 32 + i, mask) >> ((j % 4) * 2)) & 3
        hi = (_u8(blk + i, mask) >> j) & 1
        q = (lo | (hi << 2)).to(tl.float32) - 4.0
        sc = tl.where(i < 16, _q3_scale(blk + 96, 2 * j, mask), _q3_scale(blk + 96, 2 * j + 1, mask))
        w = (_f16_at(blk + 108, mask) * sc) * q
    elif FMT == 7:  # Q2_K {u8 scales[16]; u8 qs[64]; half d, dmin}: scale byte = sc (low) | min (high)
        blk = row + (g // 8) * 84
        q = ((_u8(blk + 16 + (j // 4) * 32 + i, mask) >> ((j % 4) * 2)) & 3).to(tl.float32)
        s = tl.where(i < 16, _u8(blk + 2 * j, mask), _u8(blk + 2 * j + 1, mask))
        w = (_f16_at(blk + 80, mask) * (s & 15).to(tl.float32)) * q \
            - _f16_at(blk + 82, mask) * (s >> 4).to(tl.float32)
    elif FMT == 8:  # IQ4_XS {half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}: 16 bytes per sub-block
        blk = row + (g // 8) * 136
        ls = (_u8(blk + 4 + j // 2, mask) >> ((j % 2) * 4)) & 15
        ls = ls | (((_u8(blk + 2 + j // 4, mask) >> ((j % 4) * 2)) & 3) << 4)
        byte = _u8(blk + 8 + j * 16 + i % 16, mask)
        q = _iq4_value(tl.where(i < 16, byte & 15, byte >> 4))
        w = (_f16_at(blk, mask) * (ls.to(tl.float32) - 32.0)) * q
    else:  # FP8 e4m3fn, one byte per weight; its per-row fp32 scale multiplies the finished sums
        w = _e4m3_value(_u8(row + g * 32 + i, mask))
    return w


@triton.jit
def dequant_matmul_kernel(x_ptr, w_ptr, s_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                          FMT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          SPLIT_K: tl.constexpr):
    S: tl.constexpr = BLOCK_K // 32  # 32-wide sub-blocks per step: every format's scale granularity
    i_n, i_m, i_s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_s = tl.arange(0, S)[None, :, None]
    o_i = tl.arange(0, 32)[None, None, :]
    n_in = (o_n < N)[:, None, None]
    n_steps = tl.cdiv(K, BLOCK_K)
    per_split = tl.cdiv(n_steps, SPLIT_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for step in range(i_s * per_split, tl.minimum(n_steps, (i_s + 1) * per_split)):
        g = step * S + o_s  # [1, S, 1] absolute sub-block index
        g_in = g < K // 32
        b_w = _decode(w_ptr, o_n[:, None, None], g, o_i, n_in & g_in, stride_wn, FMT)  # [BN, S, 32]
        o_k = g * 32 + o_i  # [1, S, 32]
        if BLOCK_M >= 16:
            b_w2 = tl.reshape(b_w, (BLOCK_N, BLOCK_K))
            o_k2 = step * BLOCK_K + tl.arange(0, BLOCK_K)
            p_x = x_ptr + o_m[:, None].to(tl.int64) * stride_xm + o_k2[None, :]
            b_x = tl.load(p_x, mask=(o_m[:, None] < M) & (o_k2[None, :] < K), other=0.0)
            if x_ptr.dtype.element_ty == tl.bfloat16:  # tensor cores: bf16 operands, fp32 accumulate
                acc += tl.dot(b_x, tl.trans(b_w2.to(tl.bfloat16)))
            else:
                acc += tl.dot(b_x, tl.trans(b_w2), input_precision="ieee")
        else:  # GEMV: one multiply-and-reduce per activation row (tl.dot needs 16 rows)
            for m in tl.static_range(BLOCK_M):
                row_m = i_m * BLOCK_M + m
                m_in = (o_k * 0 + row_m) < M  # as a tensor: the interpreter rejects scalar masks
                b_x = tl.load(x_ptr + row_m.to(tl.int64) * stride_xm + o_k, mask=g_in & m_in, other=0.0)
                y_m = tl.sum(tl.sum(b_w * b_x.to(tl.float32), axis=2), axis=1)  # [BLOCK_N]
                acc += tl.where(tl.arange(0, BLOCK_M)[:, None] == m, y_m[None, :], 0.0)
    if FMT == 9:  # FP8: one scale per output feature, applied once per sum rather than per weight
        acc *= tl.load(s_ptr + o_n, mask=o_n < N, other=0.0)[None, :]
    p_y = y_ptr + o_m[:, None].to(tl.int64) * stride_ym + o_n[None, :]
    y_mask = (o_m[:, None] < M) & (o_n[None, :] < N)
    if SPLIT_K > 1:
        tl.atomic_add(p_y, acc, mask=y_mask)
    else:
        tl.store(p_y, acc, mask=y_mask)


def prepare(qw, device):
    """(raw bytes, per-channel scales or None) on `device`, copied once per weight and cached on it."""
    import torch

    key = f"triton:{torch.device(device)}"
    if key not in qw.prepared:
        scale = None if qw.scale is None else torch.from_numpy(qw.scale).to(device)
        qw.prepared[key] = (torch.from_numpy(qw.raw).to(device), scale)
    return qw.prepared[key]


def matmul(x, qw, config: dict | None = None):
    """y [M, N] fp32 = x [M, K] · dequantize(qw)ᵀ, on x's device (CUDA, or CPU under TRITON_INTERPRET=1).
    x is read as bf16 when it is bf16 (tl.dot on bf16 tiles), else as fp32."""
    import torch

    cfg = resolve("triton", config)
    if qw.fmt not in FMT_CODE:
        raise ValueError(f"triton dequant_matmul supports {', '.join(FMT_CODE)}, not {qw.fmt}")
    bk = cfg["BLOCK_K"]
    if bk % 32 or bk & (bk - 1):
        raise ValueError(f"triton: BLOCK_K={bk} must be a power of two >= 32 (the sub-block size)")
    M, K = x.shape
    if K % 32:  # only FP8 (one byte per weight) can get here: the kernel walks K in 32-wide sub-blocks
        raise ValueError(f"triton dequant_matmul: K={K} must be a multiple of 32")
    N = qw.shape[0]
    dev = x.device
    w, scale = prepare(qw, dev)
    x = (x if x.dtype == torch.bfloat16 else x.to(torch.float32)).contiguous()
    split = cfg["SPLIT_K"]
    y = torch.zeros((M, N), dtype=torch.float32, device=dev) if split > 1 else \
        torch.empty((M, N), dtype=torch.float32, device=dev)
    grid = (triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(M, cfg["BLOCK_M"]), split)
    dequant_matmul_kernel[grid](x, w, w if scale is None else scale, y, M, N, K, x.stride(0), w.stride(0),
                                y.stride(0), FMT=FMT_CODE[qw.fmt], BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
                                BLOCK_K=bk, SPLIT_K=split, num_warps=cfg["num_warps"],
                                num_stages=cfg["num_stages"])
    return y
