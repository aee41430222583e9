"""Bytes and FLOPs of attention (torch-free). decode: q [B, HQ, D], K/V cache [B, HKV, S, D];
prefill: q [B, T, HQ, D], k/v [B, T, HKV, D]."""

from __future__ import annotations

from qlab.kernels.cost import OpCost


def decode(B: int, HQ: int, HKV: int, D: int, S: int, kv_bytes: float = 2, io_bytes: int = 2) -> OpCost:
    """One query token per sequence against S cached tokens: K and V are read once per KV head (the GQA
    group shares the read); q·Kᵀ and p·V are 2·S·D FLOPs each per query head."""
    kv = 2 * B * HKV * S * D * kv_bytes
    io = 2 * B * HQ * D * io_bytes
    return OpCost(kv + io, 4 * B * HQ * S * D)


def prefill(B: int, T: int, HQ: int, HKV: int, D: int, causal: bool = True, io_bytes: int = 2) -> OpCost:
    """Flash-attention forward: q, k, v read and o written once; 4·T²·D FLOPs per head, halved when causal."""
    io = B * T * (2 * HQ * D + 2 * HKV * D) * io_bytes
    flops = 4 * B * HQ * T * T * D * (0.5 if causal else 1.0)
    return OpCost(io, flops)


def decode_expected_s(B: int, HQ: int, HKV: int, D: int, S: int, bandwidth_gbs: float, kv_bytes: float = 2) -> float:
    """The first of the two numbers: decode is memory-bound (HQ/HKV = 6 FLOPs per KV byte at bf16, far below any
    GPU's ridge point), so its time is the KV bytes over the bandwidth."""
    return decode(B, HQ, HKV, D, S, kv_bytes).bytes / (bandwidth_gbs * 1e9)


def prefill_expected_s(B: int, T: int, HQ: int, HKV: int, D: int, bf16_tflops: float, causal: bool = True) -> float:
    """The second: prefill at T >= a few hundred is compute-bound, so its time is the FLOPs over the dense bf16
    tensor rate."""
    return prefill(B, T, HQ, HKV, D, causal).flops / (bf16_tflops * 1e12)
