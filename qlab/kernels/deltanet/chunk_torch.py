"""The chunked (WY) gated delta rule in torch: the fast CPU prefill and a second reference.

Per value head, chunk of C tokens, g_cum the within-chunk cumulative log decay (README.md, "Chunked form"):
  A    = strict_lower(beta_i (k_i . k_j) exp(g_cum_i - g_cum_j))        [C, C]
  Tinv = (I + A)^-1                                                      (unit lower triangular solve)
  W    = Tinv (beta exp(g_cum) k),  U = Tinv (beta v)                    [C, K], [C, V]
and, with S the state entering the chunk:
  V'   = U - W S;    O = (q exp(g_cum)) S + lower(q k^T exp(g_cum_i - g_cum_j)) V'
  S   <- exp(g_cum_C) S + (k exp(g_cum_C - g_cum))^T V'
Everything but the state pass is batched over all chunks and heads; exponents are masked before exp, and no
decay is ever divided by, so strong decay underflows to 0 instead of overflowing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qlab.kernels.deltanet.naive import l2norm

DEFAULT_CHUNK = 64


def chunk_torch_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                 use_qk_l2norm=False, state_out=None, config=None):
    """Returns (o [B, T, HV, V] in v's dtype, final state [B, HV, K, V] fp32 or None). `config`:
    {"chunk_size": C} (see tunables.py). `state_out`: optional fp32 buffer for the final state."""
    C = int((config or {}).get("chunk_size", DEFAULT_CHUNK))
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    G, out_dtype = HV // H, v.dtype
    scale = K ** -0.5 if scale is None else scale
    q, k = q.float(), k.float()
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    C = min(C, 1 << max(T - 1, 0).bit_length())  # short inputs: no padding up to a long chunk
    pad = -T % C
    N = (T + pad) // C

    def heads_first(x, last):  # [B, T, h, d] -> [B, HV, N, C, d], zero-padded in time (pads change nothing)
        x = F.pad(x, (0, 0, 0, 0, 0, pad)) if last else F.pad(x, (0, 0, 0, pad))
        if x.dim() == 3:
            return x.permute(0, 2, 1).reshape(B, HV, N, C)
        if x.shape[2] != HV:  # GVA: key head j // G serves value head j
            x = x[:, :, :, None].expand(B, T + pad, H, G, x.shape[-1]).reshape(B, T + pad, HV, x.shape[-1])
        return x.permute(0, 2, 1, 3).reshape(B, HV, N, C, x.shape[-1])

    q = heads_first(q * scale, True)
    k = heads_first(k, True)
    v = heads_first(v.float(), True)
    g = heads_first(g.float(), False).cumsum(-1)                     # [B, HV, N, C] g_cum
    beta = heads_first(beta.float(), False)[..., None]               # [B, HV, N, C, 1]

    idx = torch.arange(C, device=q.device)
    diff = g[..., :, None] - g[..., None, :]                         # g_cum_i - g_cum_j
    decay_incl = diff.masked_fill(idx[:, None] < idx[None, :], float("-inf")).exp()   # i >= j, else 0
    strict = idx[:, None] > idx[None, :]
    A = (beta * (k @ k.transpose(-1, -2)) * decay_incl).masked_fill(~strict, 0.0)
    eye = torch.eye(C, device=q.device).expand_as(A)
    # Tinv explicitly (C right-hand sides), then GEMMs: about twice as fast on CPU as solving for K + V columns
    Tinv = torch.linalg.solve_triangular(eye + A, eye, upper=False, unitriangular=True)
    U = Tinv @ (beta * v)
    # rows [0, C): W = Tinv (beta e^g_cum k); rows [C, 2C): q e^g_cum. Both multiply the state entering the
    # chunk, so the state pass does one matmul for the two.
    WQ = torch.cat([Tinv @ (beta * g.exp()[..., None] * k), q * g.exp()[..., None]], dim=-2)
    attn = (q @ k.transpose(-1, -2)) * decay_incl                    # lower incl. diagonal
    k_to_end = (k * (g[..., -1:] - g).exp()[..., None]).transpose(-1, -2).contiguous()  # (k e^(g_C - g_j))^T
    chunk_decay = g[..., -1].exp()[..., None, None]                  # [B, HV, N, 1, 1]

    S = torch.zeros(B, HV, K, V, dtype=torch.float32, device=q.device)
    if initial_state is not None:
        S = S + initial_state.float()
    o = torch.empty(B, HV, N, C, V, dtype=torch.float32, device=q.device)
    for n in range(N):  # the only sequential part: the state handed from chunk to chunk
        ws = WQ[:, :, n] @ S                                         # [W; q e^g] S: [B, HV, 2C, V]
        v_new = U[:, :, n] - ws[:, :, :C]
        torch.baddbmm(ws[:, :, C:].reshape(-1, C, V), attn[:, :, n].reshape(-1, C, C), v_new.reshape(-1, C, V),
                      out=o[:, :, n].view(-1, C, V))
        S = torch.baddbmm((chunk_decay[:, :, n] * S).reshape(-1, K, V), k_to_end[:, :, n].reshape(-1, K, C),
                          v_new.reshape(-1, C, V)).view(B, HV, K, V)
    o = o.reshape(B, HV, N * C, V)[:, :, :T].transpose(1, 2).to(out_dtype).contiguous()
    if state_out is not None:
        state_out.copy_(S)
        S = state_out
    return o, (S if output_final_state else None)
