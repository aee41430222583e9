"""Attention through torch.nn.functional.scaled_dot_product_attention: the fast CPU path and a peer for the
GPU kernels. Inputs are assumed validated (see validate.py).

Decode trick: a KV head's G query heads are laid out as G "query positions" of one attention head,
q [B, HKV, G, D] against K [B, HKV, L, D], so SDPA reads each KV head once for the whole group — the same
sharing the split-K kernels do — instead of repeating K/V G times (what enable_gqa does on CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F



def _computes_natively(cache) -> bool:
    """A GPU computes in bf16/fp16 natively; a CPU only with the instructions for it (else SDPA in that dtype
    converts element by element, far slower than converting the cache to fp32 once)."""
    if cache.device.type != "cpu":
        return True
    from qlab.hwdb.detect import cpu_computes_natively

    return cpu_computes_natively(str(cache.dtype).removeprefix("torch."))


def _kv_slice(cache, b, L, dtype):
    """Rows b (a slice or an int), first L tokens, in the compute dtype. An FP8 slice converts straight to
    bf16/fp16 (e4m3 values are exact there); its scales are applied outside, on q and on the output."""
    part = cache[b, :, :L]
    return part if part.dtype == dtype else part.to(dtype)


def _sdpa(qg, k, v, ks, vs, scale, mask=None):
    """qg [..., HKV, G, D] against k, v [..., HKV, L, D]. FP8 scales [..., HKV] fold into q (k's scale) and
    the output (v's), which costs O(HQ·D) instead of O(L·D) for dequantising the cache."""
    if ks is not None:
        qg = (qg.float() * ks[..., None, None]).to(qg.dtype)
    o = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, scale=scale)
    if vs is not None:
        o = (o.float() * vs[..., None, None]).to(o.dtype)
    return o


def decode(q, k_cache, v_cache, lengths, scale: float, k_scale=None, v_scale=None, config=None) -> torch.Tensor:
    """q [B, HQ, D], caches [B, HKV, S, D], lengths [B] -> o [B, HQ, D].
    config["varlen"]: "loop" (one SDPA call per distinct row, reads only each row's L tokens) or "mask"
    (one call over max(lengths) tokens with a padding mask; reads the padding too).
    config["dtype"]: "cache" (q rounded to a bf16/fp16 cache's dtype: the cache is read as it is stored, as
    llama.cpp's f16 q·K does; at 32K tokens on an AVX-512 BF16 CPU ~7x faster than converting the cache — on a CPU
    without instructions for that dtype it stays "query") or "query" (the cache converted to q's dtype)."""
    cfg = {"varlen": "loop", "dtype": "cache"} | (config or {})
    if cfg["dtype"] not in ("cache", "query"):
        raise ValueError(f"config: dtype must be 'cache' or 'query', got {cfg['dtype']!r}")
    if cfg["dtype"] == "cache" and k_cache.dtype in (torch.bfloat16, torch.float16) and q.dtype != k_cache.dtype \
            and _computes_natively(k_cache):
        return decode(q.to(k_cache.dtype), k_cache, v_cache, lengths, scale, k_scale, v_scale,
                      cfg | {"dtype": "query"}).to(q.dtype)
    B, HQ, D = q.shape
    HKV = k_cache.shape[1]
    qg = q.reshape(B, HKV, HQ // HKV, D)
    lens = [int(x) for x in lengths.tolist()]
    if len(set(lens)) == 1 or cfg["varlen"] == "mask":
        L = max(lens)
        k, v = _kv_slice(k_cache, slice(None), L, q.dtype), _kv_slice(v_cache, slice(None), L, q.dtype)
        mask = None
        if len(set(lens)) > 1:
            valid = torch.arange(L, device=q.device)[None, :] < lengths[:, None]            # [B, L]
            mask = valid[:, None, None, :]
        return _sdpa(qg, k, v, k_scale, v_scale, scale, mask).reshape(B, HQ, D)
    if cfg["varlen"] != "loop":
        raise ValueError(f"config: varlen must be 'loop' or 'mask', got {cfg['varlen']!r}")
    out = torch.empty_like(q)
    for b, L in enumerate(lens):
        k, v = _kv_slice(k_cache, b, L, q.dtype), _kv_slice(v_cache, b, L, q.dtype)
        ks = None if k_scale is None else k_scale[b]
        vs = None if v_scale is None else v_scale[b]
        out[b] = _sdpa(qg[b], k, v, ks, vs, scale).reshape(HQ, D)
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


__all__ = ["decode", "prefill"]
