"""A whole Gated DeltaNet layer's decode step after its input projections, as one C call (cpu_recurrent.c's
`qlab_gdn_decode_layer`): conv + silu, q/k l2norm, the gates, the delta rule on the state, the gated RMSNorm.

The decode loop on the CPU calls this instead of ~25 torch ops per layer (`Qwen35.deltanet`); `reference` is the
same step written with the package's torch pieces, which the tests hold the C step to. Head orders as in GGUF
(tiled value heads, see cpu_recurrent.c); the state stays in the kernels' grouped order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qlab.kernels.deltanet.conv1d import causal_conv1d_update
from qlab.kernels.deltanet.head_order import grouped_to_tiled, tiled_to_grouped
from qlab.kernels.deltanet.naive import l2norm, naive_recurrent_gated_delta_rule


def applies(*tensors: torch.Tensor) -> bool:
    """Whether the C step can take these tensors (fp32, CPU) and qlab's C kernels build here."""
    from qlab.kernels.elementwise import c_kernels

    return c_kernels(*tensors) is not None


def _check(qkv, z, b, a, conv_state, conv_w, ssm_a, dt_bias, norm_w, state, H):
    B, D = qkv.shape
    HV = b.shape[-1]
    if HV % H or state.dim() != 4 or state.shape[:2] != (B, HV):
        raise ValueError(f"state: shape {list(state.shape)}, expected [{B}, {HV}, K, V] (HV a multiple of H={H})")
    K, V = state.shape[2], state.shape[3]
    expected = {"qkv": (qkv, (B, 2 * H * K + HV * V)), "z": (z, (B, HV * V)), "b": (b, (B, HV)),
                "a": (a, (B, HV)), "conv_state": (conv_state, (B, D, conv_w.shape[-1] - 1)),
                "conv_w": (conv_w, (D, conv_state.shape[-1] + 1)), "ssm_a": (ssm_a, (HV,)),
                "dt_bias": (dt_bias, (HV,)), "norm_w": (norm_w, (V,))}
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name}: shape {list(t.shape)}, expected {list(shape)}")
    for name, t in list(expected.items()) + [("state", (state, None))]:
        if t[0].dtype != torch.float32 or t[0].device.type != "cpu":
            raise ValueError(f"{name}: {t[0].dtype} on {t[0].device}, expected an fp32 CPU tensor")
    for name, t in (("conv_state", conv_state), ("state", state)):
        if not t.is_contiguous():
            raise ValueError(f"{name}: must be contiguous (it is updated in place)")
    return B, HV, K, V


def gdn_decode_layer(qkv, z, b, a, conv_state, conv_w, ssm_a, dt_bias, norm_w, state, H: int, eps: float,
                     threads: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
    """qkv [B, 2·H·K + HV·V] (q | k | v, before the conv), z [B, HV·V], b, a [B, HV] -> out [B, HV·V], ready
    for ssm_out. conv_state [B, D, W-1] and state [B, HV, K, V] (fp32, grouped heads) are updated in place.
    conv_w [D, W]; ssm_a (= -exp(A_log)), dt_bias [HV]; norm_w [V]. All fp32 CPU tensors (see `applies`);
    `out`, if given, a contiguous fp32 [B, HV·V] buffer the result is written into."""
    from qlab.kernels.cpu_build import load

    B, HV, K, V = _check(qkv, z, b, a, conv_state, conv_w, ssm_a, dt_bias, norm_w, state, H)
    ins = [t.contiguous() for t in (qkv, conv_w, z, b, a, ssm_a, dt_bias, norm_w)]
    qkv, conv_w, z, b, a, ssm_a, dt_bias, norm_w = ins
    if out is None:
        out = torch.empty(B, HV * V, dtype=torch.float32)
    elif tuple(out.shape) != (B, HV * V) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out: expected a contiguous fp32 [{B}, {HV * V}] buffer, got {list(out.shape)} {out.dtype}")
    load().qlab_gdn_decode_layer(qkv.data_ptr(), conv_state.data_ptr(), conv_w.data_ptr(), z.data_ptr(),
                                 b.data_ptr(), a.data_ptr(), ssm_a.data_ptr(), dt_bias.data_ptr(),
                                 norm_w.data_ptr(), state.data_ptr(), out.data_ptr(), B, H, HV, K, V,
                                 conv_w.shape[1], eps, threads)
    return out


def gdn_gate(a: torch.Tensor, ssm_a: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    """g = ssm_a · softplus(a + dt_bias) for a [..., HV] (fp32 CPU), by libm's expf/logf as the decode step and
    llama.cpp compute it; torch's where the C path does not apply."""
    HV = a.shape[-1]
    ins = (a, ssm_a, dt_bias)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in ins) or ssm_a.shape != (HV,) \
            or dt_bias.shape != (HV,):
        x = a.float() + dt_bias
        return ssm_a * torch.where(x > 20, x, torch.log(1 + torch.exp(x)))
    from qlab.kernels.cpu_build import load

    a, ssm_a, dt_bias = (t.contiguous() for t in ins)
    g = torch.empty_like(a)
    load().qlab_gdn_gate(a.data_ptr(), ssm_a.data_ptr(), dt_bias.data_ptr(), g.data_ptr(), a.numel() // HV, HV)
    return g


def reference(qkv, z, b, a, conv_state, conv_w, ssm_a, dt_bias, norm_w, state, H: int, eps: float) -> torch.Tensor:
    """The same step from the package's torch pieces (fp32 naive recurrence); updates the states in place."""
    B, HV, K, V = _check(qkv, z, b, a, conv_state, conv_w, ssm_a, dt_bias, norm_w, state, H)
    y = causal_conv1d_update(qkv, conv_state, conv_w, activation="silu")
    q = y[:, :H * K].reshape(B, 1, H, K)
    k = y[:, H * K:2 * H * K].reshape(B, 1, H, K)
    v = tiled_to_grouped(y[:, 2 * H * K:].reshape(B, 1, HV, V), H)
    g = tiled_to_grouped((ssm_a * F.softplus(a + dt_bias)).reshape(B, 1, HV, 1), H)[..., 0]
    beta = tiled_to_grouped(torch.sigmoid(b).reshape(B, 1, HV, 1), H)[..., 0]
    o, final = naive_recurrent_gated_delta_rule(l2norm(q), l2norm(k), v, g, beta, scale=K ** -0.5,
                                                initial_state=state, output_final_state=True)
    state.copy_(final)
    o = grouped_to_tiled(o, H)[:, 0]                                                    # [B, HV, V]
    o = F.rms_norm(o, (V,), norm_w, eps) * F.silu(z.reshape(B, HV, V))
    return o.reshape(B, HV * V)
