"""Gated DeltaNet kernels (Qwen3.6-27B's 48 linear-attention layers): one entry point, several impls.

    o, state = gated_delta_rule(q, k, v, g, beta, initial_state=state, impl="triton_recurrent")

q, k [B, T, H, K]; v [B, T, HV, V] (HV a multiple of H); g (log decay <= 0), beta [B, T, HV];
state [B, HV, K, V] fp32. The math is in README.md; naive.py is the reference.
"""

from __future__ import annotations

import os

from qlab.kernels.deltanet.conv1d import causal_conv1d, causal_conv1d_update
from qlab.kernels.deltanet.validate import check_contiguous, check_gdn_inputs

from qlab.kernels.registry import ImplUnavailableError

OP = "deltanet"

__all__ = ["IMPLS", "available_impls", "causal_conv1d", "causal_conv1d_update", "gated_delta_rule",
           "ImplUnavailableError", "why_unavailable"]


def __getattr__(name):   # IMPLS (name -> registry record): the impls declared in impls.py, read on use
    if name == "IMPLS":
        return {r.name: r for r in _declared()}
    raise AttributeError(name)


def _declared():
    from qlab.kernels.deltanet.impls import IMPLS

    return IMPLS


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def why_unavailable(impl: str, device: str | None = None) -> str:
    """"" when `impl` can run here (on `device`; default: on any device of this machine), else the reason."""
    from qlab.kernels import registry

    kinds = (device,) if device else [d for d in registry.DEVICE_KINDS if registry.get(OP, impl).runs_on(d)] or ["cpu"]
    reasons = [registry.why_unavailable(OP, impl, d) for d in kinds]
    return "" if "" in reasons else reasons[0]


def available_impls() -> list[str]:
    return [r.name for r in _declared() if not why_unavailable(r.name)]


_RUNS: dict = {}   # (impl, TRITON_INTERPRET) -> its record, once it was found to run here


def _resolve(impl: str):
    from qlab.kernels import registry

    key = (impl, _interpret())
    rec = _RUNS.get(key)
    if rec is None:
        rec = registry.get(OP, impl)
        why = why_unavailable(rec.name)
        if why:
            raise ImplUnavailableError(f"impl {rec.name!r} is not available on this machine: {why}; "
                                       f"available: {', '.join(available_impls())}")
        _RUNS[key] = rec
    return rec.fn(), rec


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
    fn, rec = _resolve(impl)
    if inplace_state:
        if initial_state is None:
            raise ValueError("initial_state: None, but inplace_state=True needs a [B, HV, K, V] fp32 buffer")
        check_contiguous("initial_state", initial_state, "inplace_state=True")
    if "contiguous_inputs" in rec.features:
        for name, t in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta), ("initial_state", initial_state)):
            check_contiguous(name, t, f"impl {impl!r}")
            if t is not None and not rec.runs_on(t.device):
                raise ValueError(f"{name}: on {t.device}; impl {impl!r} needs tensors on {', '.join(rec.devices)}")
    dtype = str(v.dtype).replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16")
    if rec.backend == "cupy" and dtype not in rec.dtypes:
        raise ValueError(f"v: dtype {v.dtype}; impl {rec.name!r} takes {' or '.join(rec.dtypes)}")
    if A_log is not None and "fused_gate" not in rec.features:
        from qlab.kernels.deltanet.naive import gate

        g, beta = gate(g, beta, A_log, dt_bias)
        A_log = dt_bias = None
    kwargs = dict(scale=scale, initial_state=initial_state, output_final_state=output_final_state or inplace_state,
                  use_qk_l2norm=use_qk_l2norm, config=config, state_out=initial_state if inplace_state else None)
    if A_log is not None:
        kwargs.update(A_log=A_log, dt_bias=dt_bias)
    o, state = fn(q, k, v, g, beta, **kwargs)
    return o, (state if output_final_state else None)
