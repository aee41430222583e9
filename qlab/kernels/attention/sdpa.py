"""Attention through torch.nn.functional.scaled_dot_product_attention: the fast CPU path and a peer for the
GPU kernels. Inputs are assumed validated (see validate.py).

Decode trick: a KV head's G query heads are laid out as G "query positions" of one attention head,
q [B, HKV, G, D] against K [B, HKV, L, D], so SDPA reads each KV head once for the whole group — the same
sharing the split-K kernels do — instead of repeating K/V G times (what enable_gqa does on CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .naive import dequant


def _kv_slice(cache, scale, b, L, dtype):
    """Rows b (a slice or int), first L tokens, in the compute dtype; FP8 is dequantised slice by slice."""
    part = cache[b, :, :L]
    if scale is None:
        return part if part.dtype == dtype else part.to(dtype)
    return (part.float() * scale[b][..., None, None]).to(dtype)


def decode(q, k_cache, v_cache, lengths, scale: float, k_scale=None, v_scale=None, config=None) -> torch.Tensor:
    """q [B, HQ, D], caches [B, HKV, S, D], lengths [B] -> o [B, HQ, D].
    config["varlen"]: "loop" (one SDPA call per distinct row, reads only each row's L tokens) or "mask"
    (one call over max(lengths) tokens with a padding mask; reads the padding too)."""
    cfg = {"varlen": "loop"} | (config or {})
    B, HQ, D = q.shape
    HKV = k_cache.shape[1]
    G = HQ // HKV
    qg = q.view(B, HKV, G, D)
    lens = [int(x) for x in lengths.tolist()]
    if len(set(lens)) == 1:                      # common case (batch 1 decode): one call, no mask
        L = lens[0]
        k = _kv_slice(k_cache, k_scale, slice(None), L, q.dtype)
        v = _kv_slice(v_cache, v_scale, slice(None), L, q.dtype)
        return F.scaled_dot_product_attention(qg, k, v, scale=scale).view(B, HQ, D)
    if cfg["varlen"] == "mask":
        Lmax = max(lens)
        k = _kv_slice(k_cache, k_scale, slice(None), Lmax, q.dtype)
        v = _kv_slice(v_cache, v_scale, slice(None), Lmax, q.dtype)
        valid = torch.arange(Lmax, device=q.device)[None, :] < lengths[:, None]   # [B, Lmax]
        o = F.scaled_dot_product_attention(qg, k, v, attn_mask=valid[:, None, None, :], scale=scale)
        return o.view(B, HQ, D)
    if cfg["varlen"] != "loop":
        raise ValueError(f"config: varlen must be 'loop' or 'mask', got {cfg['varlen']!r}")
    out = torch.empty_like(q)
    for b, L in enumerate(lens):
        k = _kv_slice(k_cache, k_scale, b, L, q.dtype)
        v = _kv_slice(v_cache, v_scale, b, L, q.dtype)
        out[b] = F.scaled_dot_product_attention(qg[b], k, v, scale=scale).view(HQ, D)
    return out


def prefill(q, k, v, scale: float, causal: bool = True, config=None) -> torch.Tensor:
    """q [B, T, HQ, D], k/v [B, T, HKV, D] -> o [B, T, HQ, D].
    config["gqa"]: "native" (SDPA's enable_gqa) or "repeat" (repeat K/V per query head first)."""
    cfg = {"gqa": "repeat"} | (config or {})
    G = q.shape[2] // k.shape[2]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)     # [B, H, T, D]
    if cfg["gqa"] == "native":
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=scale, enable_gqa=G > 1)
    elif cfg["gqa"] == "repeat":
        if G > 1:
            kt, vt = kt.repeat_interleave(G, dim=1), vt.repeat_interleave(G, dim=1)
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=scale)
    else:
        raise ValueError(f"config: gqa must be 'native' or 'repeat', got {cfg['gqa']!r}")
    return o.transpose(1, 2).contiguous()


__all__ = ["decode", "prefill", "dequant"]
