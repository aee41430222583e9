"""Partial rotary position embedding as Qwen3.5/3.6 applies it (transformers `apply_rotary_pos_emb` of
modeling_qwen3_5 and llama.cpp's NEOX rope mode): only the first `rotary_dim` = 64 of the 256 dims rotate,
in rotate-half pairing (dim i pairs with i + rotary_dim/2), with inverse frequencies theta^(-2i/rotary_dim),
theta = 1e7. The M-RoPE sections [11, 11, 10] split the 32 frequencies between temporal/height/width
positions; for text all three positions are the token index, so the sections collapse to plain RoPE and
`text_positions` checks that before collapsing."""

from __future__ import annotations

import torch

ROTARY_DIM = 64
THETA = 1e7


def rope_cos_sin(positions, rotary_dim: int = ROTARY_DIM, theta: float = THETA):
    """positions (int tensor, any shape P) -> (cos, sin), each fp32 [*P, rotary_dim // 2].
    fp32 throughout, as transformers computes them (so angles at 262K positions round the same way)."""
    if rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"rotary_dim: expected a positive even number, got {rotary_dim}")
    positions = torch.as_tensor(positions)
    if positions.dtype.is_floating_point:
        raise ValueError(f"positions: expected integers, got {positions.dtype}")
    exps = torch.arange(0, rotary_dim, 2, dtype=torch.int64, device=positions.device).float() / rotary_dim
    inv_freq = 1.0 / (theta ** exps)                                   # [rotary_dim / 2]
    angles = positions.float()[..., None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, positions, *, rotary_dim: int = ROTARY_DIM, theta: float = THETA,
               cos_sin=None) -> torch.Tensor:
    """x [*P, H, D] (e.g. decode q [B, HQ, D] with positions [B]; prefill k [B, T, HKV, D] with positions
    [B, T] or [T]) -> same shape and dtype, the first rotary_dim dims of every head rotated by its position.
    Pass `cos_sin` from rope_cos_sin to reuse it for q and k."""
    if x.dim() < 2:
        raise ValueError(f"x: expected [..., H, D], got shape {tuple(x.shape)}")
    D = x.shape[-1]
    if rotary_dim > D:
        raise ValueError(f"rotary_dim: {rotary_dim} > head_dim {D}")
    cos, sin = cos_sin if cos_sin is not None else rope_cos_sin(positions, rotary_dim, theta)
    try:
        torch.broadcast_shapes(cos.shape[:-1], x.shape[:-2])
    except RuntimeError:
        raise ValueError(f"positions: shape {tuple(cos.shape[:-1])} does not broadcast to x's leading dims "
                         f"{tuple(x.shape[:-2])}") from None
    cos, sin = cos[..., None, :], sin[..., None, :]                    # broadcast over heads
    half = rotary_dim // 2
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:rotary_dim]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, xf[..., rotary_dim:]], dim=-1)
    return out.to(x.dtype)


def text_positions(mrope_positions: torch.Tensor) -> torch.Tensor:
    """[3, *P] M-RoPE positions (temporal, height, width) of text tokens -> [*P]; ValueError when the three
    differ (image/video tokens), which plain RoPE cannot express."""
    if mrope_positions.dim() < 1 or mrope_positions.shape[0] != 3:
        raise ValueError(f"mrope_positions: expected [3, ...], got shape {tuple(mrope_positions.shape)}")
    if not (torch.equal(mrope_positions[0], mrope_positions[1])
            and torch.equal(mrope_positions[0], mrope_positions[2])):
        raise ValueError("mrope_positions: the three sections differ (not text); only text positions supported")
    return mrope_positions[0]
