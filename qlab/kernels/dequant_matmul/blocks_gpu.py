"""The GPU-server formats (not GGUF types): INT4-G128 (AWQ/GPTQ-style) and FP8 e4m3 with per-channel scale.

INT4-G128 block (68 bytes per 128 weights, qlab's own byte layout, written like a ggml block):
  { u8 qs[64]; half scale; half zero; }   w[i] = (nib[i] − zero)·scale; byte j holds w[2j] (low nibble) and
  w[2j+1] (high nibble) — the sequential packing AWQ/GPTQ checkpoints use within a group; `zero` is the integer
  zero-point 0..15 stored as fp16, as GPTQ's asymmetric quantization produces.
FP8: raw holds one e4m3fn byte per weight ([N, K]); the fp32 per-output-channel scale lives in
  `QuantizedWeight.scale` [N]: w[n, k] = e4m3(raw[n, k])·scale[n].
"""

from __future__ import annotations

import numpy as np

from .blocks_common import SEARCH, f16_bytes, f16_round, f16_value, pack_nibbles, safe_inv

FP8_MAX = 448.0  # largest finite e4m3fn value


def quantize_int4_g128(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    cand = ((hi - lo) / np.float32(15)) * SEARCH  # [n, S]
    inv = safe_inv(cand)
    z = np.clip(np.rint(-lo * inv), 0, 15)  # [n, S]
    q = np.clip(np.rint(x[..., None] * inv[:, None, :]) + z[:, None, :], 0, 15)
    err = (((q - z[:, None, :]) * cand[:, None, :] - x[..., None]) ** 2).sum(axis=1)
    pick = err.argmin(axis=1)[:, None]
    s = f16_round(np.take_along_axis(cand, pick, axis=1))
    z = np.take_along_axis(z, pick, axis=1)
    q = np.clip(np.rint(x * safe_inv(s)) + z, 0, 15).astype(np.uint8)
    return np.concatenate([pack_nibbles(q[:, 0::2], q[:, 1::2]), f16_bytes(s), f16_bytes(z)], axis=1)


def dequantize_int4_g128(b: np.ndarray) -> np.ndarray:
    qs = b[:, :64]
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 128).astype(np.float32)
    return (q - f16_value(b[:, 66:68])) * f16_value(b[:, 64:66])


def quantize_fp8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] float -> (raw [N, K] uint8 e4m3fn codes, scale [N] float32)."""
    import torch  # numpy has no fp8 type; torch's cast rounds to nearest even and saturates nothing: clip first

    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(FP8_MAX), np.float32(1)).astype(np.float32)
    y = torch.from_numpy(np.clip(w / scale[:, None], -FP8_MAX, FP8_MAX).astype(np.float32))
    raw = y.to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    return raw, scale


def dequantize_fp8(raw: np.ndarray, scale: np.ndarray) -> np.ndarray:
    import torch

    codes = torch.from_numpy(np.ascontiguousarray(raw)).view(torch.float8_e4m3fn).float().numpy()
    return codes * scale.reshape(-1, 1).astype(np.float32)
