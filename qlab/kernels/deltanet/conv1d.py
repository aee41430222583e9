"""The short depthwise causal conv1d (kernel width W = 4) + SiLU that Gated DeltaNet applies to its fused
q|k|v projection, with its rolling state: the last W - 1 inputs of each channel.

Layouts: x [B, T, D] (channels last, as the projection emits it); weight [D, W]; bias [D] or None;
conv state [B, D, W - 1] (oldest input first, like causal-conv1d and transformers).
y_t = silu(bias + sum_w weight[:, w] * x_{t - (W - 1) + w}), where x_{<0} comes from the state (zeros if none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qlab.kernels.deltanet.validate import IO_DTYPES, check_tensor


def _check(x, weight, bias, conv_state, x_dims):
    check_tensor("x", x, (None,) * len(x_dims.split(",")), x_dims, IO_DTYPES)
    B, D = x.shape[0], x.shape[-1]
    check_tensor("weight", weight, (D, None), "[D, W]", IO_DTYPES)
    if bias is not None:
        check_tensor("bias", bias, (D,), "[D]", IO_DTYPES)
    if conv_state is not None:
        check_tensor("conv_state", conv_state, (B, D, weight.shape[1] - 1), "[B, D, W - 1]", IO_DTYPES)


def _finish(y, bias, activation):
    if bias is not None:
        y += bias.float()
    if activation == "silu":
        from qlab.kernels.elementwise import silu

        return silu(y)   # the C path's SiLU on the CPU (llama.cpp's rounding), torch's elsewhere
    if activation is not None:
        raise ValueError(f"activation: {activation!r}, expected 'silu' or None")
    return y


def causal_conv1d(x, weight, bias=None, conv_state=None, activation="silu", output_final_state=True):
    """Prefill: returns (y [B, T, D] in x's dtype, final conv state [B, D, W - 1] in x's dtype or None).
    Computed in fp32 as W shifted multiply-adds (W = 4: cheaper than a grouped conv's im2col on CPU)."""
    _check(x, weight, bias, conv_state, "[B, T, D]")
    B, T, D = x.shape
    W = weight.shape[1]
    xf = x.float()
    past = (conv_state.float().transpose(1, 2) if conv_state is not None
            else xf.new_zeros(B, W - 1, D))
    xp = torch.cat([past, xf], dim=1)                                # [B, W - 1 + T, D]
    w = weight.float().t()                                           # [W, D]
    y = xp[:, 0:T] * w[0]
    for i in range(1, W):
        y.addcmul_(xp[:, i:i + T], w[i])
    y = _finish(y, bias, activation)
    final = xp[:, T:].transpose(1, 2).to(x.dtype).contiguous() if output_final_state else None
    return y.to(x.dtype), final


def causal_conv1d_update(x, conv_state, weight, bias=None, activation="silu"):
    """Decode: one token x [B, D] (or [B, 1, D]); conv_state [B, D, W - 1] is rolled in place (the oldest
    input drops out, x comes in). Returns y shaped like x."""
    _check(x, weight, bias, conv_state, "[B, D]" if x.dim() == 2 else "[B, 1, D]")
    if conv_state is None:
        raise ValueError("conv_state: None; decode needs the rolling [B, D, W - 1] state")
    if x.dim() == 3 and x.shape[1] != 1:
        raise ValueError(f"x: shape {list(x.shape)}, expected [B, 1, D] or [B, D] (one token)")
    x2 = x.reshape(x.shape[0], x.shape[-1])
    W = weight.shape[1]
    y = _c_update(x2, conv_state, weight, bias, activation)
    if y is not None:
        return y.reshape(x.shape)
    wf = weight.float()
    y = torch.einsum("bdw,dw->bd", conv_state.float(), wf[:, :W - 1]) + x2.float() * wf[:, W - 1]
    y = _finish(y, bias, activation)
    if W > 1:
        conv_state.copy_(torch.cat([conv_state[:, :, 1:], x2[:, :, None].to(conv_state.dtype)], dim=2))
    return y.to(x.dtype).reshape(x.shape)


def _c_update(x2, conv_state, weight, bias, activation):
    """y [B, D] from the fused C update (cpu_recurrent.c) for fp32 CPU tensors, the state rolled in place; None
    (and nothing done) where it does not apply: another dtype or device, a strided state, or no C compiler."""
    ts = [x2, conv_state, weight] + ([bias] if bias is not None else [])
    if activation not in ("silu", None) or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in ts) \
            or not conv_state.is_contiguous():
        return None
    from qlab.kernels.cpu_build import BuildError, load

    try:
        lib = load()
    except BuildError:
        return None
    x2, weight = x2.contiguous(), weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    y = torch.empty_like(x2)
    lib.qlab_conv1d_update(x2.data_ptr(), conv_state.data_ptr(), weight.data_ptr(),
                           bias.data_ptr() if bias is not None else None, y.data_ptr(), x2.shape[0], x2.shape[1],
                           weight.shape[1], int(activation == "silu"))
    return y
