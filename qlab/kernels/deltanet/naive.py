"""Pure-torch fp32 reference of the gated delta rule: a loop over time, the math of README.md step by step.

Shapes (flash-linear-attention's layout): q, k [B, T, H, K]; v [B, T, HV, V] with HV a multiple of H (each key
head serves HV // H value heads, "GVA"); g (log decay, <= 0) and beta [B, T, HV]; state S [B, HV, K, V] fp32.
Per step and value head:  S <- exp(g) S;  delta = beta (v - S^T k);  S <- S + k delta^T;  o = S^T q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim (the eps convention of fla and transformers)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def gate(a: torch.Tensor, b: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor | None
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen3.6's gates from the raw projections a, b [B, T, HV]: g = -exp(A_log) softplus(a + dt_bias),
    beta = sigmoid(b); both fp32."""
    a = a.float() + (dt_bias.float() if dt_bias is not None else 0.0)
    return -A_log.float().exp() * F.softplus(a), torch.sigmoid(b.float())


def expand_heads(x: torch.Tensor, HV: int) -> torch.Tensor:
    """[B, T, H, K] -> [B, T, HV, K]: value head j reads key head j // (HV // H) (GVA)."""
    return x.repeat_interleave(HV // x.shape[2], dim=2)


def naive_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                     use_qk_l2norm=False, state_out=None, config=None):
    """The reference: returns (o [B, T, HV, V] in v's dtype, final state [B, HV, K, V] fp32 or None).
    `state_out`: optional fp32 buffer the final state is copied into; `config`: no tunables (common interface)."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    out_dtype = v.dtype
    scale = K ** -0.5 if scale is None else scale
    q, k = q.float(), k.float()
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    q, k = expand_heads(q, HV) * scale, expand_heads(k, HV)
    v, g, beta = v.float(), g.float(), beta.float()
    S = torch.zeros(B, HV, K, V, dtype=torch.float32, device=q.device)
    if initial_state is not None:
        S = S + initial_state.float()
    o = torch.zeros(B, T, HV, V, dtype=torch.float32, device=q.device)
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]                                     # decay
        delta = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t]))
        S = S + k[:, t, :, :, None] * delta[:, :, None, :]                         # rank-1 write
        o[:, t] = torch.einsum("bhkv,bhk->bhv", S, q[:, t])
    if state_out is not None:
        S = state_out.copy_(S)
    return o.to(out_dtype), (S if output_final_state else None)
