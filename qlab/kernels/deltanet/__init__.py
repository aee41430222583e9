"""Gated DeltaNet kernels (Qwen3.6-27B's 48 linear-attention layers): one entry point, several impls.

    o, state = gated_delta_rule(q, k, v, g, beta, initial_state=state, impl="triton_recurrent")

q, k [B, T, H, K]; v [B, T, HV, V] (HV a multiple of H); g (log decay <= 0), beta [B, T, HV];
state [B, HV, K, V] fp32. The math is in README.md; naive.py is the reference.
"""

from __future__ import annotations

import importlib
import os

import torch

from qlab.kernels.deltanet.conv1d import causal_conv1d, causal_conv1d_update
from qlab.kernels.deltanet.validate import check_contiguous, check_gdn_inputs

# impl -> (module, function, kind): kind "torch" runs anywhere, "c" on the CPU where qlab's C kernels build,
# "triton" on CUDA or under TRITON_INTERPRET=1, "cupy" on CUDA with cupy
IMPLS = {
    "naive": ("naive", "naive_recurrent_gated_delta_rule", "torch"),
    "recurrent_torch": ("recurrent_torch", "recurrent_torch_gated_delta_rule", "torch"),
    "recurrent_cpu": ("recurrent_cpu", "recurrent_cpu_gated_delta_rule", "c"),
    "chunk_torch": ("chunk_torch", "chunk_torch_gated_delta_rule", "torch"),
    "triton_recurrent": ("triton_recurrent", "triton_recurrent_gated_delta_rule", "triton"),
    "triton_chunk": ("triton_chunk", "triton_chunk_gated_delta_rule", "triton"),
    "cupy_recurrent": ("cupy_recurrent", "cupy_recurrent_gated_delta_rule", "cupy"),
}
FUSED_GATE = {"triton_recurrent", "cupy_recurrent"}  # the others get g, beta computed in torch first

__all__ = ["IMPLS", "available_impls", "causal_conv1d", "causal_conv1d_update", "gated_delta_rule",
           "ImplUnavailableError", "why_unavailable"]


class ImplUnavailableError(RuntimeError):
    """The impl exists but cannot run on this machine (no GPU, no cupy, no triton)."""


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def why_unavailable(impl: str) -> str:
    """"" when `impl` can run here, else the reason."""
    kind = IMPLS[impl][2]
    if kind == "torch":
        return ""
    if kind == "c":
        from qlab.kernels.cpu_build import BuildError, load

        try:
            load()
        except BuildError as e:
            return str(e)
        return ""
    if kind == "triton":
        try:
            import triton  # noqa: F401
        except ImportError as e:
            return f"triton does not import ({e})"
        return "" if torch.cuda.is_available() or _interpret() else "no CUDA device (and TRITON_INTERPRET is not set)"
    from qlab.kernels.deltanet.cupy_recurrent import available

    ok, why = available()
    return "" if ok else why


def available_impls() -> list[str]:
    return [name for name in IMPLS if not why_unavailable(name)]


def _resolve(impl: str):
    if impl not in IMPLS:
        from qlab.errors import closest

        near = closest(impl, IMPLS)
        raise ValueError(f"impl: unknown {impl!r}; expected one of {', '.join(IMPLS)}"
                         + (f" (closest: {', '.join(near)})" if near else ""))
    why = why_unavailable(impl)
    if why:
        raise ImplUnavailableError(f"impl {impl!r} is not available on this machine: {why}; "
                                   f"available: {', '.join(available_impls())}")
    module, fn, kind = IMPLS[impl]
    return getattr(importlib.import_module(f"qlab.kernels.deltanet.{module}"), fn), kind


def gated_delta_rule(q, k, v, g, beta, *, scale=None, initial_state=None, output_final_state=True,
                     use_qk_l2norm=False, impl="naive", config=None, A_log=None, dt_bias=None,
                     inplace_state=False):
    """Run the gated delta rule over T tokens with impl `impl`; returns (o [B, T, HV, V] in v's dtype,
    final state [B, HV, K, V] fp32, or None when output_final_state is False).

    scale: q's scale (default K ** -0.5). use_qk_l2norm: L2-normalise q and k first (Qwen3.6 does).
    A_log, dt_bias [HV]: when given, g and beta are the raw projections a and b, and the gate
    g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b) is computed (in the kernel where the impl fuses it).
    inplace_state: write the final state into `initial_state` (the decode loop's in-place update).
    config: the impl's tunables (tunables.py), defaults otherwise.
    """
    check_gdn_inputs(q, k, v, g, beta, initial_state, A_log, dt_bias)
    fn, kind = _resolve(impl)
    if inplace_state:
        if initial_state is None:
            raise ValueError("initial_state: None, but inplace_state=True needs a [B, HV, K, V] fp32 buffer")
        check_contiguous("initial_state", initial_state, "inplace_state=True")
    if kind not in ("torch", "c"):
        for name, t in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta), ("initial_state", initial_state)):
            check_contiguous(name, t, f"impl {impl!r}")
            if t is not None and t.device.type != "cuda" and not (kind == "triton" and _interpret()):
                raise ValueError(f"{name}: on {t.device}; impl {impl!r} needs CUDA tensors")
    if kind == "cupy" and v.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"v: dtype {v.dtype}; impl 'cupy_recurrent' takes float32 or bfloat16")
    if A_log is not None and impl not in FUSED_GATE:
        from qlab.kernels.deltanet.naive import gate

        g, beta = gate(g, beta, A_log, dt_bias)
        A_log = dt_bias = None
    kwargs = dict(scale=scale, initial_state=initial_state, output_final_state=output_final_state or inplace_state,
                  use_qk_l2norm=use_qk_l2norm, config=config, state_out=initial_state if inplace_state else None)
    if A_log is not None:
        kwargs.update(A_log=A_log, dt_bias=dt_bias)
    o, state = fn(q, k, v, g, beta, **kwargs)
    return o, (state if output_final_state else None)
