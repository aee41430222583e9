"""Per-head RMSNorm followed by partial RoPE, fused into one Triton kernel (norm_gate.py and rope.py hold
the torch versions and the conventions). On a GPU at decode time the torch sequence is ~10 small kernels per
q and k (square, mean, rsqrt, scale, weight, slice, rotate, cat ...) for 7K values — launch-bound, so one
kernel per tensor pays; at prefill it saves the intermediate round trips through memory.

Grid (N, H): one program normalises one head of one token, then rotates its first ROT dims with the cos/sin
of the token's position (the partner of dim d is d ± ROT/2, re-read from the same cached row)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .rope import ROTARY_DIM, THETA, rope_cos_sin


@triton.jit
def _norm_rope_kernel(x_ptr, w_ptr, cos_ptr, sin_ptr, y_ptr, stride_xn, stride_xh, stride_yn, stride_yh, eps,
                      D: tl.constexpr, ROT: tl.constexpr, UNIT_OFFSET: tl.constexpr):
    i_n = tl.program_id(0).to(tl.int64)
    i_h = tl.program_id(1).to(tl.int64)
    HALF: tl.constexpr = ROT // 2
    o_d = tl.arange(0, D)
    p_x = x_ptr + i_n * stride_xn + i_h * stride_xh
    x = tl.load(p_x + o_d).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, 0) / D + eps)
    w = tl.load(w_ptr + o_d).to(tl.float32)
    if UNIT_OFFSET:
        w = w + 1.0
    y = x * rstd * w

    m_rot = o_d < ROT
    o_p = tl.where(o_d < HALF, o_d + HALF, o_d - HALF)                  # rotate-half partner
    w_p = tl.load(w_ptr + o_p, mask=m_rot, other=0.0).to(tl.float32)
    if UNIT_OFFSET:
        w_p = w_p + 1.0
    y_p = tl.load(p_x + o_p, mask=m_rot, other=0.0).to(tl.float32) * rstd * w_p
    c = tl.load(cos_ptr + i_n * HALF + (o_d % HALF), mask=m_rot, other=1.0)
    s = tl.load(sin_ptr + i_n * HALF + (o_d % HALF), mask=m_rot, other=0.0)
    rotated = tl.where(o_d < HALF, y * c - y_p * s, y * c + y_p * s)
    out = tl.where(m_rot, rotated, y)
    tl.store(y_ptr + i_n * stride_yn + i_h * stride_yh + o_d, out.to(y_ptr.dtype.element_ty))


def norm_rope(x: torch.Tensor, weight: torch.Tensor, positions=None, *, eps: float, unit_offset: bool = True,
              rotary_dim: int = ROTARY_DIM, theta: float = THETA, cos_sin=None) -> torch.Tensor:
    """x [*P, H, D] (last dim contiguous; a strided view such as split_q_gate's q is fine), weight [D],
    positions [*P] (or cos_sin from rope_cos_sin) -> rope(rms_norm(x)) as a new [*P, H, D] tensor. eps: the
    RMSNorm epsilon (norm_gate.EPS for Qwen3.6; passed in, so this module does not import norm_gate)."""
    *P, H, D = x.shape
    if weight.shape != (D,):
        raise ValueError(f"weight: expected shape [{D}], got {tuple(weight.shape)}")
    if D & (D - 1) or rotary_dim % 2 or not 0 < rotary_dim <= D:
        raise ValueError(f"x: needs a power-of-two head_dim >= rotary_dim (even), got D={D}, rotary_dim={rotary_dim}")
    cos, sin = cos_sin if cos_sin is not None else rope_cos_sin(positions, rotary_dim, theta)
    N = 1
    for p in P:
        N *= p
    cos = cos.float().expand(*P, rotary_dim // 2).reshape(N, rotary_dim // 2).contiguous()
    sin = sin.float().expand(*P, rotary_dim // 2).reshape(N, rotary_dim // 2).contiguous()
    x2 = x.reshape(N, H, D)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(N, H, D, dtype=x.dtype, device=x.device)
    _norm_rope_kernel[(N, H)](x2, weight.contiguous(), cos, sin, y, x2.stride(0), x2.stride(1), y.stride(0),
                              y.stride(1), eps, D=D, ROT=rotary_dim, UNIT_OFFSET=unit_offset, num_warps=2)
    return y.reshape(*P, H, D)
