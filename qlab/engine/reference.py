"""An independent fp32 reference of the qwen35 forward pass, token by token, written from the math alone.

It shares no code with `model.py` or the kernel packages: weights are dequantized to fp32 (acceptable for the
tiny test models it runs on, never for the real one), attention is an explicit softmax over the past, the
DeltaNet recurrence is an explicit per-head loop that reads key head j % H for value head j (GGUF's tiled
order, with no permutation), and the conv is an explicit window. Tests hold the engine to it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qlab.engine.weights import Weights


def _dense(w) -> torch.Tensor:
    if isinstance(w, torch.Tensor):
        return w.float()
    import gguf

    raw = w.raw.numpy() if isinstance(w.raw, torch.Tensor) else np.asarray(w.raw)
    qtype = gguf.GGMLQuantizationType[str(getattr(w.fmt, "name", w.fmt))]
    return torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(raw, qtype))).float().reshape(w.shape)


def _rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _rope(x, pos, rot, theta):
    """NEOX pairing: dim i with i + rot/2, i < rot/2; dims >= rot pass through."""
    half = rot // 2
    out = x.clone()
    for i in range(half):
        ang = pos * theta ** (-2.0 * i / rot)
        c, s = math.cos(ang), math.sin(ang)
        out[..., i] = x[..., i] * c - x[..., i + half] * s
        out[..., i + half] = x[..., i + half] * c + x[..., i] * s
    return out


def reference_logits(weights: Weights, tokens: list[int], mtp: bool = False):
    """Logits [T, vocab] of every position of one sequence, fp32. With `mtp` (weights with the MTP block as
    synthetic_weights(..., mtp=True) makes it, block index n_layers), also the MTP block's draft logits
    [T - 1, vocab] for the pairs (hidden state at t, tokens[t + 1])."""
    cfg = weights.cfg
    W = {n: _dense(t) for n, t in weights.tensors.items()}
    eps = cfg.rms_eps
    H, HV, K, V = cfg.lin_k_heads, cfg.lin_v_heads, cfg.lin_k_dim, cfg.lin_v_dim
    past_k = {i: [] for i in range(cfg.n_layers)}
    past_v = {i: [] for i in range(cfg.n_layers)}
    past_x = {i: [torch.zeros(cfg.conv_dim)] * (cfg.conv_kernel - 1) for i in range(cfg.n_layers)}
    S = {i: torch.zeros(HV, K, V) for i in range(cfg.n_layers)}
    out, hidden = [], []
    for pos, tok in enumerate(tokens):
        x = W["token_embd.weight"][tok].clone()
        for i in range(cfg.n_layers):
            p = f"blk.{i}."
            h = _rms(x, W[p + "attn_norm.weight"], eps)
            if cfg.is_attention(i):
                h = _attention(W, p, cfg, h, pos, past_k[i], past_v[i])
            else:
                qkv = W[p + "attn_qkv.weight"] @ h
                window = torch.stack(past_x[i] + [qkv], dim=1)               # [C, W], oldest first
                past_x[i] = past_x[i][1:] + [qkv]
                c = (window * W[p + "ssm_conv1d.weight"]).sum(1)
                c = c * torch.sigmoid(c)
                q = c[:H * K].view(H, K)
                k = c[H * K:2 * H * K].view(H, K)
                v = c[2 * H * K:].view(HV, V)
                z = (W[p + "attn_gate.weight"] @ h).view(HV, V)
                beta = torch.sigmoid(W[p + "ssm_beta.weight"] @ h)
                a = W[p + "ssm_alpha.weight"] @ h
                g = W[p + "ssm_a"] * torch.log1p(torch.exp(a + W[p + "ssm_dt.bias"]))
                o = torch.empty(HV, V)
                for j in range(HV):
                    kj = k[j % H] / torch.sqrt((k[j % H] ** 2).sum() + 1e-6)
                    qj = q[j % H] / torch.sqrt((q[j % H] ** 2).sum() + 1e-6) / math.sqrt(K)
                    Sj = S[i][j] * torch.exp(g[j])
                    delta = beta[j] * (v[j] - Sj.T @ kj)
                    Sj = Sj + torch.outer(kj, delta)
                    S[i][j] = Sj
                    o[j] = Sj.T @ qj
                o = _rms(o, W[p + "ssm_norm.weight"], eps) * (z * torch.sigmoid(z))
                h = W[p + "ssm_out.weight"] @ o.reshape(-1)
            x = _ffn(W, p, cfg, x + h)
        hidden.append(_rms(x, W["output_norm.weight"], eps))
        out.append(W["output.weight"] @ hidden[-1])
    if not mtp:
        return torch.stack(out)
    # MTP: position t pairs the output-normed hidden state h_t with the next token; its own attention cache
    p, m = f"blk.{cfg.n_layers}.", f"blk.{cfg.n_layers}.nextn."
    mk, mv, drafts = [], [], []
    for pos, tok in enumerate(tokens[1:]):
        u = torch.cat([_rms(W["token_embd.weight"][tok], W[m + "enorm.weight"], eps),
                       _rms(hidden[pos], W[m + "hnorm.weight"], eps)])
        x = W[m + "eh_proj.weight"] @ u
        x = x + _attention(W, p, cfg, _rms(x, W[p + "attn_norm.weight"], eps), pos, mk, mv)
        x = _ffn(W, p, cfg, x)
        drafts.append(W["output.weight"] @ _rms(x, W[m + "shared_head_norm.weight"], eps))
    return torch.stack(out), torch.stack(drafts)


def _attention(W, p, cfg, h, pos, past_k: list, past_v: list):
    """Gated attention of one token at `pos` over the past (appends its k, v to past_k, past_v)."""
    eps = cfg.rms_eps
    qg = (W[p + "attn_q.weight"] @ h).view(cfg.n_heads, 2, cfg.head_dim)
    q, gate = qg[:, 0], qg[:, 1]
    k = (W[p + "attn_k.weight"] @ h).view(cfg.n_kv_heads, cfg.head_dim)
    v = (W[p + "attn_v.weight"] @ h).view(cfg.n_kv_heads, cfg.head_dim)
    q = _rope(_rms(q, W[p + "attn_q_norm.weight"], eps), pos, cfg.rope_dim, cfg.rope_theta)
    k = _rope(_rms(k, W[p + "attn_k_norm.weight"], eps), pos, cfg.rope_dim, cfg.rope_theta)
    past_k.append(k)
    past_v.append(v)
    Ks, Vs = torch.stack(past_k), torch.stack(past_v)     # [L, HKV, D]
    group = cfg.n_heads // cfg.n_kv_heads
    o = torch.empty(cfg.n_heads, cfg.head_dim)
    for hq in range(cfg.n_heads):
        s = Ks[:, hq // group] @ q[hq] / math.sqrt(cfg.head_dim)
        o[hq] = torch.softmax(s, 0) @ Vs[:, hq // group]
    o = o * torch.sigmoid(gate)
    return W[p + "attn_output.weight"] @ o.reshape(-1)


def _ffn(W, p, cfg, x):
    """x + the SwiGLU FFN of post_attention_norm(x)."""
    f = _rms(x, W[p + "post_attention_norm.weight"], cfg.rms_eps)
    gt, up = W[p + "ffn_gate.weight"] @ f, W[p + "ffn_up.weight"] @ f
    return x + W[p + "ffn_down.weight"] @ (gt * torch.sigmoid(gt) * up)
