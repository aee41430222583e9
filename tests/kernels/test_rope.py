"""Partial RoPE (first 64 of 256 dims, theta 1e7, rotate-half pairs) against a pair-by-pair complex rotation."""

import math

import pytest
import torch

from qlab.kernels.attention import apply_rope, rope_cos_sin, text_positions


def rope_by_pairs(x, positions, rotary_dim=64, theta=1e7):
    """fp64, one complex multiply per (dim i, dim i + rotary_dim/2) pair: the textbook statement of NEOX RoPE."""
    out = x.double().clone()
    half = rotary_dim // 2
    for i in range(half):
        freq = theta ** (-2.0 * i / rotary_dim)
        ang = positions.double() * freq                 # positions come shaped to broadcast over heads
        z = torch.complex(x[..., i].double(), x[..., i + half].double()) * torch.polar(torch.ones_like(ang), ang)
        out[..., i], out[..., i + half] = z.real, z.imag
    return out


def test_rope_matches_pairwise_rotation_decode_and_prefill():
    g = torch.Generator().manual_seed(42)
    q = torch.randn(3, 24, 256, generator=g)                  # decode: [B, HQ, D], positions [B]
    pos = torch.tensor([0, 17, 4098])
    # angles are fp32 as in transformers: at position p they are off by up to ~p·2^-24 rad from fp64's
    torch.testing.assert_close(apply_rope(q, pos).double(), rope_by_pairs(q, pos[:, None]), rtol=0, atol=2e-3)
    k = torch.randn(2, 9, 4, 256, generator=g)                # prefill: [B, T, HKV, D], positions [T]
    pos = torch.arange(100, 109)
    torch.testing.assert_close(apply_rope(k, pos).double(), rope_by_pairs(k, pos[None, :, None]), rtol=1e-5,
                               atol=2e-5)


def test_rope_leaves_dims_past_64_and_position_0_alone():
    x = torch.randn(2, 4, 256, generator=torch.Generator().manual_seed(42))
    out = apply_rope(x, torch.tensor([0, 5]))
    assert torch.equal(out[..., 64:], x[..., 64:])
    assert torch.equal(out[0], x[0])                            # angle 0: identity
    assert not torch.allclose(out[1, :, :64], x[1, :, :64])


def test_rope_scores_depend_on_relative_position_only():
    g = torch.Generator().manual_seed(42)
    q, k = torch.randn(1, 1, 256, generator=g).double(), torch.randn(1, 1, 256, generator=g).double()
    s1 = (apply_rope(q, torch.tensor([1000])) * apply_rope(k, torch.tensor([990]))).sum()
    s2 = (apply_rope(q, torch.tensor([10])) * apply_rope(k, torch.tensor([0]))).sum()
    assert math.isclose(float(s1), float(s2), rel_tol=1e-4)


def test_rope_cos_sin_frequencies():
    cos, sin = rope_cos_sin(torch.tensor([1]), rotary_dim=64, theta=1e7)
    assert cos.shape == (1, 32)
    assert math.isclose(float(torch.atan2(sin[0, 1], cos[0, 1])), 1e7 ** (-2 / 64), rel_tol=1e-5)
    assert math.isclose(float(torch.atan2(sin[0, 0], cos[0, 0])), 1.0, rel_tol=1e-6)


def test_rope_keeps_dtype_and_checks_inputs():
    x = torch.randn(2, 3, 4, 256).bfloat16()
    assert apply_rope(x, torch.arange(3)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="positions"):
        apply_rope(x, torch.arange(5))
    with pytest.raises(ValueError, match="positions"):
        apply_rope(x, torch.arange(3).float())
    with pytest.raises(ValueError, match="rotary_dim"):
        apply_rope(x, torch.arange(3), rotary_dim=512)


def test_mrope_text_positions_collapse():
    p = torch.arange(7)
    assert torch.equal(text_positions(torch.stack([p, p, p])), p)
    with pytest.raises(ValueError, match="differ"):
        text_positions(torch.stack([p, p, p + 1]))
