"""`triton`: fused dequantizing GEMV/GEMM — ggml blocks read once, decoded in registers, fp32 accumulate.

Grid (cdiv(N, BLOCK_N), cdiv(M, BLOCK_M), SPLIT_K). A program walks its share of K in BLOCK_K steps: it loads
the raw bytes of a [BLOCK_N, BLOCK_K] weight tile, decodes them to fp32 (the same arithmetic as ggml's
dequantize_row_*), and accumulates x·wᵀ — with tl.dot when BLOCK_M >= 16 (prefill, batched decode), with a
multiply-and-reduce per activation row when BLOCK_M is small (decode, where the op is a bandwidth-bound GEMV).
With SPLIT_K > 1 (small M: more programs than output tiles keep every SM streaming) the partial sums are
combined with fp32 atomics into a zeroed output.
Formats: Q8_0, Q4_0, Q4_K, INT4-G128 (FMT codes below); the byte layouts are documented in blocks_*.py.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .tunables import resolve

FMT_CODE = {"Q8_0": 0, "Q4_0": 1, "Q4_K": 2, "INT4-G128": 3}
BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_K": 144, "INT4-G128": 68}


@triton.jit
def _f16_at(p, mask):
    """The little-endian fp16 at byte pointer(s) p, as fp32."""
    lo = tl.load(p, mask=mask, other=0).to(tl.uint16)
    hi = tl.load(p + 1, mask=mask, other=0).to(tl.uint16)
    return (lo | (hi << 8)).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _decode(w_ptr, o_n, g, i, mask, stride_wn, FMT: tl.constexpr):
    """fp32 weights [BN, S, 32]: rows o_n [BN, 1, 1], 32-wide sub-blocks g [1, S, 1], lanes i [1, 1, 32].

    Scales are loaded once per (row, sub-block) — [BN, S, 1] — and only the quant bytes per element, which keeps
    the pointer tensors (64-bit each) few enough to stay in registers."""
    row = w_ptr + o_n.to(tl.int64) * stride_wn
    if FMT == 0:  # Q8_0 {half d; int8 qs[32]}: sub-block = block
        blk = row + g * 34
        q = tl.load(blk + 2 + i, mask=mask, other=0).to(tl.int8, bitcast=True).to(tl.float32)
        w = q * _f16_at(blk, mask)
    elif FMT == 1:  # Q4_0 {half d; u8 qs[16]}: byte i = element i (low) | element i+16 (high)
        blk = row + g * 18
        byte = tl.load(blk + 2 + i % 16, mask=mask, other=0)
        w = _f16_at(blk, mask) * (tl.where(i < 16, byte & 15, byte >> 4).to(tl.float32) - 8.0)
    elif FMT == 2:  # Q4_K {half d, dmin; u8 scales[12]; u8 qs[128]}: sub-block j of super-block g // 8
        blk = row + (g // 8) * 144
        j = g % 8
        byte = tl.load(blk + 16 + (j // 2) * 32 + i, mask=mask, other=0)
        q = tl.where(j % 2 == 0, byte & 15, byte >> 4).to(tl.float32)
        jj = j % 4
        a = tl.load(blk + 4 + jj, mask=mask, other=0)
        b = tl.load(blk + 8 + jj, mask=mask, other=0)
        c = tl.load(blk + 12 + jj, mask=mask, other=0)
        sc = tl.where(j < 4, a & 63, (c & 15) | ((a >> 6) << 4)).to(tl.float32)
        mn = tl.where(j < 4, b & 63, (c >> 4) | ((b >> 6) << 4)).to(tl.float32)
        w = (_f16_at(blk, mask) * sc) * q - _f16_at(blk + 2, mask) * mn
    else:  # INT4-G128 {u8 qs[64]; half scale; half zero}: byte t = element 2t (low) | 2t+1 (high)
        blk = row + (g // 4) * 68
        byte = tl.load(blk + (g % 4) * 16 + i // 2, mask=mask, other=0)
        q = tl.where(i % 2 == 0, byte & 15, byte >> 4).to(tl.float32)
        w = (q - _f16_at(blk + 66, mask)) * _f16_at(blk + 64, mask)
    return w


@triton.jit
def dequant_matmul_kernel(x_ptr, w_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
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
            acc += tl.dot(b_x, tl.trans(b_w2), input_precision="ieee")
        else:  # GEMV: one multiply-and-reduce per activation row (tl.dot needs 16 rows)
            for m in tl.static_range(BLOCK_M):
                row_m = i_m * BLOCK_M + m
                m_in = (o_k * 0 + row_m) < M  # as a tensor: the interpreter rejects scalar masks
                b_x = tl.load(x_ptr + row_m.to(tl.int64) * stride_xm + o_k, mask=g_in & m_in, other=0.0)
                y_m = tl.sum(tl.sum(b_w * b_x, axis=2), axis=1)  # [BLOCK_N]
                acc += tl.where(tl.arange(0, BLOCK_M)[:, None] == m, y_m[None, :], 0.0)
    p_y = y_ptr + o_m[:, None].to(tl.int64) * stride_ym + o_n[None, :]
    y_mask = (o_m[:, None] < M) & (o_n[None, :] < N)
    if SPLIT_K > 1:
        tl.atomic_add(p_y, acc, mask=y_mask)
    else:
        tl.store(p_y, acc, mask=y_mask)


def prepare(qw, device):
    """The raw bytes on `device`, copied once per weight and cached on it."""
    import torch

    key = f"triton:{torch.device(device)}"
    if key not in qw.prepared:
        qw.prepared[key] = torch.from_numpy(qw.raw).to(device)
    return qw.prepared[key]


def matmul(x, qw, config: dict | None = None):
    """y [M, N] fp32 = x [M, K] · dequantize(qw)ᵀ, on x's device (CUDA, or CPU under TRITON_INTERPRET=1)."""
    import torch

    cfg = resolve("triton", config)
    if qw.fmt not in FMT_CODE:
        raise ValueError(f"triton dequant_matmul supports {', '.join(FMT_CODE)}, not {qw.fmt}")
    bk = cfg["BLOCK_K"]
    if bk % 32 or bk & (bk - 1):
        raise ValueError(f"triton: BLOCK_K={bk} must be a power of two >= 32 (the sub-block size)")
    M, K = x.shape
    N = qw.shape[0]
    dev = x.device
    w = prepare(qw, dev)
    x = x.to(torch.float32).contiguous()
    split = cfg["SPLIT_K"]
    y = torch.zeros((M, N), dtype=torch.float32, device=dev) if split > 1 else \
        torch.empty((M, N), dtype=torch.float32, device=dev)
    grid = (triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(M, cfg["BLOCK_M"]), split)
    dequant_matmul_kernel[grid](x, w, y, M, N, K, x.stride(0), w.stride(0), y.stride(0),
                                FMT=FMT_CODE[qw.fmt], BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
                                BLOCK_K=bk, SPLIT_K=split, num_warps=cfg["num_warps"],
                                num_stages=cfg["num_stages"])
    return y
