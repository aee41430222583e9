"""`recurrent_cpu`: the gated delta rule stepped in time by one fused C loop (cpu_recurrent.c), fp32, the state
updated in place. Same inputs and algebra as recurrent_torch; the state is read and written once per step
instead of five torch passes over it, which is what the CPU decode step costs (48 heads x 64 KiB per layer)."""

from __future__ import annotations

import torch

from qlab.kernels.deltanet.recurrent_torch import state_buffer, time_major_heads


def recurrent_cpu_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                   use_qk_l2norm=False, state_out=None, config=None):
    """Returns (o [B, T, HV, V] in v's dtype, final state [B, HV, K, V] fp32 or None); `state_out` as in
    recurrent_torch (it may be `initial_state` itself). CPU tensors only; no tunables (`config` is ignored)."""
    from qlab.kernels.cpu_build import load

    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    if q.device.type != "cpu":
        raise ValueError(f"q: on {q.device}; impl 'recurrent_cpu' runs on CPU tensors")
    # q unscaled: the C step applies the scale to o, where ggml's GATED_DELTA_NET applies it
    qf, kf, vf, _, bf = (t.contiguous() for t in time_major_heads(q, k, v, g, beta, 1.0, use_qk_l2norm))
    gf = g.float().transpose(0, 1).reshape(T, B * HV).contiguous()   # exp'd in C by libm's expf, as ggml does
    S = state_buffer(B, HV, K, V, initial_state, state_out, q.device)
    if not S.is_contiguous():
        raise ValueError("state_out: must be a contiguous fp32 [B, HV, K, V] buffer")
    o = torch.empty(T, B * HV, V, dtype=torch.float32)
    load().qlab_gdn_recurrent(qf.data_ptr(), kf.data_ptr(), vf.data_ptr(), gf.data_ptr(), bf.data_ptr(),
                              S.data_ptr(), o.data_ptr(), T, B * HV, K, V, K ** -0.5 if scale is None else scale,
                              torch.get_num_threads())
    o = o.view(T, B, HV, V).transpose(0, 1).to(v.dtype).contiguous()
    return o, (S if output_final_state else None)
