"""Attention kernels of Qwen3.6-27B's 16 full-attention layers (README.md has the math).

decode(q, k_cache, v_cache, lengths, impl=...) and prefill(q, k, v, impl=...) dispatch to one of IMPLS after
validating the inputs; available_impls() says which run here. The rope / q-k norm / gate helpers the decode
loop needs live beside them."""

from __future__ import annotations

import importlib

from . import validate
from .norm_gate import output_gate, prepare_qk, qk_norm, rms_norm, split_q_gate
from .rope import apply_rope, rope_cos_sin, text_positions

DECODE_IMPLS = ("naive", "sdpa", "triton_decode", "cupy_decode")
PREFILL_IMPLS = ("naive", "sdpa", "triton_prefill")
IMPLS = ("naive", "sdpa", "triton_decode", "triton_prefill", "cupy_decode")


def _gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def _triton_ok() -> bool:
    import os
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return _gpu() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _cupy_ok() -> bool:
    if not _gpu():
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def available_impls(kind: str | None = None) -> list[str]:
    """Impls that run on this machine (kind: None, "decode" or "prefill"). Triton needs a GPU or
    TRITON_INTERPRET=1 (CPU tensors); cupy_decode needs a CUDA GPU and CuPy."""
    ok = {"naive": True, "sdpa": True, "triton_decode": _triton_ok(), "triton_prefill": _triton_ok(),
          "cupy_decode": _cupy_ok()}
    names = {"decode": DECODE_IMPLS, "prefill": PREFILL_IMPLS}.get(kind, IMPLS)
    return [n for n in names if ok[n]]


def _module(impl: str, kind: str, allowed: tuple[str, ...]):
    if impl not in allowed:
        raise ValueError(f"impl: unknown {kind} impl {impl!r}; available here: {', '.join(available_impls(kind))} "
                         f"(all {kind} impls: {', '.join(allowed)})")
    if impl not in available_impls(kind):
        why = "a CUDA GPU and CuPy" if impl.startswith("cupy") else "a CUDA GPU or TRITON_INTERPRET=1"
        raise ValueError(f"impl: {impl!r} is not available on this machine (needs {why}); "
                         f"available: {', '.join(available_impls(kind))}")
    return importlib.import_module(f".{impl}", __name__)


def decode(q, k_cache, v_cache, lengths, *, scale=None, impl: str = "naive", k_scale=None, v_scale=None,
           config: dict | None = None):
    """One new token per sequence against its KV cache.
    q [B, HQ, D]; k_cache, v_cache [B, HKV, S, D] (fp32/bf16/fp16, or float8_e4m3fn with k_scale/v_scale:
    a float, [HKV] or [B, HKV]); lengths [B] ints, 1 <= lengths[b] <= S -> o [B, HQ, D] in q's dtype.
    scale defaults to D**-0.5 (1/16 for Qwen3.6)."""
    lengths, scale, ks, vs = validate.check_decode(q, k_cache, v_cache, lengths, scale, k_scale, v_scale)
    mod = _module(impl, "decode", DECODE_IMPLS)
    if impl == "naive":
        return mod.decode(q, k_cache, v_cache, lengths, scale, ks, vs)
    return mod.decode(q, k_cache, v_cache, lengths, scale, ks, vs, config=config)


def prefill(q, k, v, *, scale=None, causal: bool = True, impl: str = "naive", config: dict | None = None):
    """Attention over a whole prompt. q [B, T, HQ, D]; k, v [B, T, HKV, D] -> o [B, T, HQ, D]."""
    scale = validate.check_prefill(q, k, v, scale)
    mod = _module(impl, "prefill", PREFILL_IMPLS)
    if impl == "naive":
        return mod.prefill(q, k, v, scale, causal)
    return mod.prefill(q, k, v, scale, causal, config=config)


__all__ = ["decode", "prefill", "IMPLS", "DECODE_IMPLS", "PREFILL_IMPLS", "available_impls", "apply_rope",
           "rope_cos_sin", "text_positions", "rms_norm", "qk_norm", "output_gate", "split_q_gate", "prepare_qk"]
