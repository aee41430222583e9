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
    BH, out_dtype = B * HV, v.dtype
    q, k, v, decay, beta = time_major_heads(q, k, v, g, beta, scale, use_qk_l2norm)
    qk = torch.stack([k, q], dim=2)                                   # [T, BH, 2, K]
    kq = (k * q).sum(-1, keepdim=True)                                # [T, BH, 1]
    decay, beta = decay[..., None], beta[..., None]                   # [T, BH, 1]
    S = state_buffer(B, HV, K, V, initial_state, state_out, q.device)
    S3 = S.view(BH, K, V)
    o = torch.empty(T, BH, V, dtype=torch.float32, device=q.device)
    for t in range(T):
        r = torch.bmm(qk[t], S3)                                      # [BH, 2, V]: S^T k, S^T q (old state)
        delta = beta[t] * (v[t] - decay[t] * r[:, 0])                 # [BH, V]
        torch.addcmul(decay[t] * r[:, 1], kq[t], delta, out=o[t])     # o = exp(g) S^T q + (k.q) delta
        S3.mul_(decay[t, :, :, None]).addcmul_(k[t, :, :, None], delta[:, None, :])
    o = o.view(T, B, HV, V).transpose(0, 1).to(out_dtype).contiguous()
    return o, (S if output_final_state else None)


def time_major_heads(q, k, v, g, beta, scale, use_qk_l2norm):
    """fp32, time-major, one row per value head: q (scaled), k [T, B*HV, K]; v [T, B*HV, V]; exp(g), beta
    [T, B*HV]. Each key head is repeated for its HV / H value heads (one copy, all steps at once)."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    G, BH = HV // H, B * HV
    scale = K ** -0.5 if scale is None else scale
    q, k = q.float(), k.float()
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    q = (q * scale).transpose(0, 1)[:, :, :, None].expand(T, B, H, G, K).reshape(T, BH, K)
    k = k.transpose(0, 1)[:, :, :, None].expand(T, B, H, G, K).reshape(T, BH, K)
    v = v.float().transpose(0, 1).reshape(T, BH, V)
    decay = g.float().exp().transpose(0, 1).reshape(T, BH)
    beta = beta.float().transpose(0, 1).reshape(T, BH)
    return q, k, v, decay, beta


def state_buffer(B, HV, K, V, initial_state, state_out, device):
    """The fp32 [B, HV, K, V] buffer the step updates in place: state_out (filled from initial_state unless it
    already is that buffer), a fresh copy of initial_state, or zeros."""
    S = state_out if state_out is not None else torch.empty(B, HV, K, V, dtype=torch.float32, device=device)
    if initial_state is None:
        S.zero_()
    elif S.data_ptr() != initial_state.data_ptr():
        S.copy_(initial_state)
    return S
