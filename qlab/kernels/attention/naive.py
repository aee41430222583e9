"""Reference attention in fp32 torch: the math of README.md written as plainly as possible. Every other impl
is tested against these two functions. Inputs are assumed validated (see validate.py)."""

from __future__ import annotations

import torch


def dequant(cache: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """[B, HKV, S, D] cache -> fp32; an FP8 cache is multiplied by its per-(row, head) scale [B, HKV]."""
    out = cache.float()
    if scale is not None:
        out = out * scale[:, :, None, None]
    return out


def decode(q, k_cache, v_cache, lengths, scale: float, k_scale=None, v_scale=None) -> torch.Tensor:
    """q [B, HQ, D], caches [B, HKV, S, D], lengths [B] -> o [B, HQ, D] in q's dtype.
    Query head h reads KV head h // G (G = HQ // HKV), as transformers' repeat_kv orders them:
    o[b, h] = softmax(scale · q[b, h] · K[b, h//G, :L]ᵀ) · V[b, h//G, :L],  L = lengths[b]."""
    B, HQ, D = q.shape
    HKV = k_cache.shape[1]
    G = HQ // HKV
    K = dequant(k_cache, k_scale)
    V = dequant(v_cache, v_scale)
    out = torch.zeros(B, HQ, D, dtype=torch.float32, device=q.device)
    for b in range(B):
        L = int(lengths[b])
        kb = K[b, :, :L].repeat_interleave(G, dim=0)           # [HQ, L, D]
        vb = V[b, :, :L].repeat_interleave(G, dim=0)
        s = torch.einsum("hd,hld->hl", q[b].float(), kb) * scale  # [HQ, L]
        p = torch.softmax(s, dim=-1)
        out[b] = torch.einsum("hl,hld->hd", p, vb)
    return out.to(q.dtype)


def prefill(q, k, v, scale: float, causal: bool = True) -> torch.Tensor:
    """q [B, T, HQ, D], k/v [B, T, HKV, D] -> o [B, T, HQ, D]:
    o[b, t, h] = Σ_{s ≤ t} softmax_s(scale · q[b,t,h]·k[b,s,h//G]) · v[b,s,h//G]  (all s when not causal)."""
    B, T, HQ, D = q.shape
    G = HQ // k.shape[2]
    qf = q.float().transpose(1, 2)                               # [B, HQ, T, D]
    kf = k.float().transpose(1, 2).repeat_interleave(G, dim=1)    # [B, HQ, T, D]
    vf = v.float().transpose(1, 2).repeat_interleave(G, dim=1)
    s = torch.matmul(qf, kf.transpose(-1, -2)) * scale            # [B, HQ, T, T]
    if causal:
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        s = s.masked_fill(future, float("-inf"))
    o = torch.matmul(torch.softmax(s, dim=-1), vf)
    return o.transpose(1, 2).to(q.dtype).contiguous()
