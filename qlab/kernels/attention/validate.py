"""Input checks shared by every attention impl: each failure is a ValueError that names the argument and says
what was expected, so a caller (the decode loop, the tuner) sees which input was wrong."""

from __future__ import annotations

import torch

FLOAT_IO = (torch.float32, torch.bfloat16, torch.float16)
FP8 = (torch.float8_e4m3fn,)
KV_DTYPES = FLOAT_IO + FP8


def _shape(name: str, t, ndim: int, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor {what}, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dims {what}, got shape {tuple(t.shape)}")


def _dtype(name: str, t: torch.Tensor, allowed) -> None:
    if t.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise ValueError(f"{name}: dtype {str(t.dtype).replace('torch.', '')} not supported; expected one of {names}")


def _groups(HQ: int, HKV: int, where: str) -> int:
    if HKV < 1 or HQ % HKV:
        raise ValueError(f"{where}: HQ={HQ} query heads is not a multiple of HKV={HKV} KV heads")
    return HQ // HKV


def _scale_per_head(name: str, s, B: int, HKV: int, device) -> torch.Tensor:
    """A dequant scale given as a float, [HKV] or [B, HKV] -> fp32 [B, HKV] contiguous."""
    t = torch.as_tensor(s, dtype=torch.float32, device=device)
    if t.dim() == 0:
        t = t.expand(B, HKV)
    elif t.dim() == 1 and t.shape[0] == HKV:
        t = t.unsqueeze(0).expand(B, HKV)
    elif not (t.dim() == 2 and tuple(t.shape) == (B, HKV)):
        raise ValueError(f"{name}: expected a float, shape [HKV]=[{HKV}] or [B, HKV]=[{B}, {HKV}], "
                         f"got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"{name}: scales must be finite and > 0")
    return t.contiguous()


def check_decode(q, k_cache, v_cache, lengths, scale, k_scale, v_scale):
    """-> (lengths as int64 list-ready tensor, scale float, k_scale, v_scale as [B, HKV] fp32 or None)."""
    _shape("q", q, 3, "[B, HQ, D]")
    _shape("k_cache", k_cache, 4, "[B, HKV, S, D]")
    _shape("v_cache", v_cache, 4, "[B, HKV, S, D]")
    _dtype("q", q, FLOAT_IO)
    _dtype("k_cache", k_cache, KV_DTYPES)
    _dtype("v_cache", v_cache, KV_DTYPES)
    B, HQ, D = q.shape
    if tuple(v_cache.shape) != tuple(k_cache.shape):
        raise ValueError(f"v_cache: shape {tuple(v_cache.shape)} != k_cache shape {tuple(k_cache.shape)}")
    if v_cache.dtype != k_cache.dtype:
        raise ValueError(f"v_cache: dtype {v_cache.dtype} != k_cache dtype {k_cache.dtype}")
    Bk, HKV, S, Dk = k_cache.shape
    if Bk != B:
        raise ValueError(f"k_cache: batch {Bk} != q batch {B}")
    if Dk != D:
        raise ValueError(f"k_cache: head_dim {Dk} != q head_dim {D}")
    _groups(HQ, HKV, "q")
    if k_cache.device != q.device or v_cache.device != q.device:
        raise ValueError("k_cache/v_cache: must be on q's device")
    lengths = torch.as_tensor(lengths, device=q.device)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or tuple(lengths.shape) != (B,):
        raise ValueError(f"lengths: expected an integer tensor of shape [B]=[{B}], got {lengths.dtype} "
                         f"{tuple(lengths.shape)}")
    if B:
        lo, hi = (int(x) for x in torch.aminmax(lengths))     # one pass, one sync: this runs 16x per token
        if lo < 1:
            raise ValueError(f"lengths: every length must be >= 1, got min {lo}")
        if hi > S:
            raise ValueError(f"lengths: length {hi} > cache size S={S}")
    fp8 = k_cache.dtype in FP8
    if fp8:
        ks = _scale_per_head("k_scale", 1.0 if k_scale is None else k_scale, B, HKV, q.device)
        vs = _scale_per_head("v_scale", 1.0 if v_scale is None else v_scale, B, HKV, q.device)
    else:
        if k_scale is not None or v_scale is not None:
            raise ValueError("k_scale/v_scale: only meaningful for an FP8 (float8_e4m3fn) cache")
        ks = vs = None
    return lengths.to(torch.int64), _scale(scale, D), ks, vs


def check_prefill(q, k, v, scale):
    _shape("q", q, 4, "[B, T, HQ, D]")
    _shape("k", k, 4, "[B, T, HKV, D]")
    _shape("v", v, 4, "[B, T, HKV, D]")
    for name, t in (("q", q), ("k", k), ("v", v)):
        _dtype(name, t, FLOAT_IO)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"k/v: dtypes {k.dtype}/{v.dtype} must equal q dtype {q.dtype}")
    B, T, HQ, D = q.shape
    if tuple(k.shape) != tuple(v.shape):
        raise ValueError(f"v: shape {tuple(v.shape)} != k shape {tuple(k.shape)}")
    if k.shape[0] != B or k.shape[1] != T or k.shape[3] != D:
        raise ValueError(f"k: shape {tuple(k.shape)} does not match q {tuple(q.shape)} in B, T or D")
    _groups(HQ, k.shape[2], "q")
    return _scale(scale, D)


def _scale(scale, D: int) -> float:
    if scale is None:
        return D ** -0.5
    scale = float(scale)
    if not scale > 0 or scale == float("inf"):
        raise ValueError(f"scale: expected a finite positive number, got {scale}")
    return scale
