"""Attention kernels of Qwen3.6-27B's 16 full-attention layers (README.md has the math).

decode(q, k_cache, v_cache, lengths, impl=...) and prefill(q, k, v, impl=...) dispatch to one of IMPLS after
validating the inputs; available_impls() says which run here. The rope / q-k norm / gate helpers the decode
loop needs live beside them."""

from __future__ import annotations

from . import validate
from .norm_gate import output_gate, prepare_qk, qk_norm, rms_norm, split_q_gate
from .rope import apply_rope, rope_cos_sin, text_positions

_OPS = {"decode": "attention_decode", "prefill": "attention_prefill"}


def _names(kind: str | None) -> tuple[str, ...]:
    ops = [_OPS[kind]] if kind in _OPS else list(_OPS.values())
    return tuple(dict.fromkeys(r.name for r in _declared() if r.op in ops))


def _declared():
    from .impls import IMPLS as records

    return records


def __getattr__(name):   # the impl names, read from the registry's records (impls.py) on use
    table = {"DECODE_IMPLS": "decode", "PREFILL_IMPLS": "prefill", "IMPLS": None}
    if name in table:
        return _names(table[name])
    raise AttributeError(name)


_RUNS: dict = {}   # (op, name, TRITON_INTERPRET) -> whether it runs on some device of this machine


def _runs_here(op: str, name: str) -> bool:
    from qlab.kernels import registry

    key = (op, name, registry.interpreting())
    if key not in _RUNS:
        rec = registry.get(op, name)
        _RUNS[key] = any(not registry.why_unavailable(op, name, d) for d in registry.DEVICE_KINDS if rec.runs_on(d))
    return _RUNS[key]


def available_impls(kind: str | None = None) -> list[str]:
    """Impls that run on this machine (kind: None, "decode" or "prefill"). Triton needs a GPU or
    TRITON_INTERPRET=1 (CPU tensors); cupy_decode needs a CUDA GPU and CuPy."""
    ops = [_OPS[kind]] if kind in _OPS else list(_OPS.values())
    return list(dict.fromkeys(r.name for r in _declared() if r.op in ops and _runs_here(r.op, r.name)))


def _record(impl: str, kind: str):
    from qlab.kernels import registry

    op = _OPS[kind]
    allowed = _names(kind)
    if impl not in allowed:
        raise ValueError(f"impl: unknown {kind} impl {impl!r}; available here: {', '.join(available_impls(kind))} "
                         f"(all {kind} impls: {', '.join(allowed)})")
    if not _runs_here(op, impl):
        rec = registry.get(op, impl)
        why = next(registry.why_unavailable(op, impl, d) for d in rec.devices)
        raise ValueError(f"impl: {impl!r} is not available on this machine ({why}); "
                         f"available: {', '.join(available_impls(kind))}")
    return registry.get(op, impl)


def decode(q, k_cache, v_cache, lengths, *, scale=None, impl: str = "naive", k_scale=None, v_scale=None,
           config: dict | None = None):
    """One new token per sequence against its KV cache.
    q [B, HQ, D]; k_cache, v_cache [B, HKV, S, D] (fp32/bf16/fp16, or float8_e4m3fn with k_scale/v_scale:
    a float, [HKV] or [B, HKV]); lengths [B] ints, 1 <= lengths[b] <= S -> o [B, HQ, D] in q's dtype.
    scale defaults to D**-0.5 (1/16 for Qwen3.6)."""
    lengths, scale, ks, vs = validate.check_decode(q, k_cache, v_cache, lengths, scale, k_scale, v_scale)
    rec = _record(impl, "decode")
    kw = {"config": config} if rec.tunables else {}
    return rec.fn()(q, k_cache, v_cache, lengths, scale, ks, vs, **kw)


def prefill(q, k, v, *, scale=None, causal: bool = True, impl: str = "naive", config: dict | None = None):
    """Attention over a whole prompt. q [B, T, HQ, D]; k, v [B, T, HKV, D] -> o [B, T, HQ, D]."""
    scale = validate.check_prefill(q, k, v, scale)
    rec = _record(impl, "prefill")
    kw = {"config": config} if rec.tunables else {}
    return rec.fn()(q, k, v, scale, causal, **kw)


__all__ = ["decode", "prefill", "IMPLS", "DECODE_IMPLS", "PREFILL_IMPLS", "available_impls", "apply_rope",
           "rope_cos_sin", "text_positions", "rms_norm", "qk_norm", "output_gate", "split_q_gate", "prepare_qk"]
