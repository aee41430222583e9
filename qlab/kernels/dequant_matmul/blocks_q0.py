"""Blocks of 32 with one fp16 scale (ggml `block_q8_0`, `block_q4_0`) and the float passthrough types.

Layouts (ggml-common.h):
  block_q8_0 { ggml_half d; int8_t qs[32]; }              w[i] = d·qs[i]
  block_q4_0 { ggml_half d; uint8_t qs[16]; }             w[i] = d·(nib[i] − 8); byte j holds w[j] (low nibble)
                                                           and w[j+16] (high nibble)
"""

from __future__ import annotations

import numpy as np

from .blocks_common import best_symmetric_scale, f16_bytes, f16_round, f16_value, pack_nibbles, safe_inv


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    # 8 bits: absmax scaling is already within a hair of the best scale; no search needed.
    d = f16_round(np.abs(x).max(axis=1, keepdims=True) / np.float32(127))
    q = np.clip(np.rint(x * safe_inv(d)), -127, 127).astype(np.int8)
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], axis=1)


def dequantize_q8_0(b: np.ndarray) -> np.ndarray:
    return b[:, 2:].view(np.int8).astype(np.float32) * f16_value(b[:, :2])


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    d = f16_round(best_symmetric_scale(x, -8, 7))
    q = np.clip(np.rint(x * safe_inv(d)), -8, 7).astype(np.int16) + 8
    return np.concatenate([f16_bytes(d), pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def dequantize_q4_0(b: np.ndarray) -> np.ndarray:
    qs = b[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - np.float32(8)
    return f16_value(b[:, :2]) * q


# --- float types: one "block" per weight; stored little-endian as ggml does ----------------------------------

def quantize_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8)


def dequantize_f32(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float32).copy()


def quantize_f16(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8)


def dequantize_f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def quantize_bf16(x: np.ndarray) -> np.ndarray:
    import torch  # numpy has no bfloat16; torch rounds to nearest even like ggml's fp32->bf16

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint8)


def dequantize_bf16(b: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(b).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
