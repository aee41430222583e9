"""The fast CPU decode path: the gated delta rule stepped in time with a few batched torch ops per step
(all B * HV heads at once, no Python loop over heads), the state updated in place.

One read of the state per step serves both products: with r = S^T [k, q] taken on the state *before* decay,
    delta = beta (v - exp(g) r_k),   o = exp(g) r_q + (k . q) delta,
which equals the reference's decay -> read -> write -> read order exactly (S_new^T q expanded). The state is
then written once as S <- exp(g) S + k delta^T (two in-place passes: scale, rank-1 add).
"""

from __future__ import annotations

import torch

from qlab.kernels.deltanet.naive import l2norm


def recurrent_torch_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                     use_qk_l2norm=False, state_out=None, config=None):
    """Returns (o [B, T, HV, V] in v's dtype, final state [B, HV, K, V] fp32 or None). `state_out`, when
    given, is the fp32 contiguous buffer the final state is written to (it may be `initial_state` itself:
    the in-place decode update). `config` is accepted for the common interface; this path has no tunables."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    G, BH, out_dtype = HV // H, B * HV, v.dtype
    scale = K ** -0.5 if scale is None else scale
    q, k = q.float(), k.float()
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    # [B, T, H, K] -> [T, B*HV, K]: each key head repeated for its G value heads (one copy, all steps at once)
    q = (q * scale).transpose(0, 1)[:, :, :, None].expand(T, B, H, G, K).reshape(T, BH, K)
    k = k.transpose(0, 1)[:, :, :, None].expand(T, B, H, G, K).reshape(T, BH, K)
    qk = torch.stack([k, q], dim=2)                                   # [T, BH, 2, K]
    kq = (k * q).sum(-1, keepdim=True)                                # [T, BH, 1]
    v = v.float().transpose(0, 1).reshape(T, BH, V)
    decay = g.float().exp().transpose(0, 1).reshape(T, BH, 1)
    beta = beta.float().transpose(0, 1).reshape(T, BH, 1)

    S = state_out if state_out is not None else torch.empty(B, HV, K, V, dtype=torch.float32, device=q.device)
    if initial_state is None:
        S.zero_()
    elif S.data_ptr() != initial_state.data_ptr():
        S.copy_(initial_state)
    S3 = S.view(BH, K, V)
    o = torch.empty(T, BH, V, dtype=torch.float32, device=q.device)
    for t in range(T):
        r = torch.bmm(qk[t], S3)                                      # [BH, 2, V]: S^T k, S^T q (old state)
        delta = beta[t] * (v[t] - decay[t] * r[:, 0])                 # [BH, V]
        torch.addcmul(decay[t] * r[:, 1], kq[t], delta, out=o[t])     # o = exp(g) S^T q + (k.q) delta
        S3.mul_(decay[t, :, :, None]).addcmul_(k[t, :, :, None], delta[:, None, :])
    o = o.view(T, B, HV, V).transpose(0, 1).to(out_dtype).contiguous()
    return o, (S if output_final_state else None)
