"""Input checks shared by the public entry points: a ValueError naming the argument, its shape and what
was expected, before any kernel sees the data."""

from __future__ import annotations

import torch

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _fmt(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_tensor(name: str, t, expected: tuple, dims: str, dtypes=None) -> None:
    """`expected`: ints, or None for a free dim; `dims` spells the expected layout, e.g. "[B, T, H, K]"."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor {dims}, got {type(t).__name__}")
    want = _fmt("?" if e is None else e for e in expected)
    if t.dim() != len(expected) or any(e is not None and s != e for s, e in zip(t.shape, expected)):
        raise ValueError(f"{name}: shape {_fmt(t.shape)}, expected {dims} = {want}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name}: dtype {str(t.dtype).replace('torch.', '')}, expected one of {names}")


def check_contiguous(name: str, t, why: str) -> None:
    if t is not None and not t.is_contiguous():
        raise ValueError(f"{name}: shape {_fmt(t.shape)} with strides {tuple(t.stride())} is not contiguous; "
                         f"{why} needs a contiguous tensor (call .contiguous())")


def check_gdn_inputs(q, k, v, g, beta, initial_state, A_log, dt_bias) -> tuple[int, ...]:
    """Shapes and dtypes of gated_delta_rule's inputs; returns (B, T, H, HV, K, V)."""
    check_tensor("q", q, (None, None, None, None), "[B, T, H, K]", IO_DTYPES)
    B, T, H, K = q.shape
    if T == 0 or B == 0:
        raise ValueError(f"q: shape {_fmt(q.shape)} is empty; expected B >= 1 and T >= 1")
    check_tensor("k", k, (B, T, H, K), "[B, T, H, K] (q's shape)", (q.dtype,))
    check_tensor("v", v, (B, T, None, None), "[B, T, HV, V]", (q.dtype,))
    HV, V = v.shape[2], v.shape[3]
    if HV % H != 0:
        raise ValueError(f"v: shape {_fmt(v.shape)} has HV={HV} value heads, not a multiple of H={H} (q's heads); "
                         f"expected [B, T, HV, V] = [{B}, {T}, n*{H}, V]")
    floats = (torch.float32, torch.bfloat16, torch.float16)
    check_tensor("g", g, (B, T, HV), "[B, T, HV]", floats)
    check_tensor("beta", beta, (B, T, HV), "[B, T, HV]", floats)
    if initial_state is not None:
        check_tensor("initial_state", initial_state, (B, HV, K, V), "[B, HV, K, V]", (torch.float32,))
    if A_log is not None:
        check_tensor("A_log", A_log, (HV,), "[HV]", floats)
    elif dt_bias is not None:
        raise ValueError("dt_bias: given without A_log; the fused gate needs A_log [HV] too")
    if dt_bias is not None:
        check_tensor("dt_bias", dt_bias, (HV,), "[HV]", floats)
    devices = {t.device for t in (q, k, v, g, beta, initial_state, A_log, dt_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"q, k, v, g, beta, initial_state: on several devices {sorted(map(str, devices))}; "
                         "expected one")
    return B, T, H, HV, K, V
