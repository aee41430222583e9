"""Non-linear 4-bit grids: IQ4_XS (ggml `block_iq4_xs`) and MXFP4 (`block_mxfp4`).

  block_iq4_xs { half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }
      8 sub-blocks of 32: w = d·(ls_j − 32)·KVALUES[nib]; ls_j = (nibble j of scales_l) | ((scales_h >> 2j) & 3) << 4
      (nibble j: byte j // 2, low for even j); sub-block j reads qs[16j .. 16j+16]: low nibbles elements 0..15,
      high nibbles 16..31.
  block_mxfp4 { u8 e; u8 qs[16]; }   w = 2^(e−127) · E2M1[nib] (stored doubled: ggml uses half the e8m0 value
      and the doubled e2m1 table); byte j holds element j (low) and j+16 (high).
"""

from __future__ import annotations

import numpy as np

from .blocks_common import SEARCH, f16_bytes, f16_round, f16_value, pack_nibbles, safe_inv

# ggml's kvalues_iq4nl: a 16-entry grid denser near zero (fits Gaussian weights better than a uniform int4)
KVALUES_IQ4 = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)
_MID_IQ4 = (KVALUES_IQ4[1:].astype(np.float32) + KVALUES_IQ4[:-1]) / 2
# ggml's kvalues_mxfp4: e2m1 values doubled (0, .5, 1, 1.5, 2, 3, 4, 6 and negatives)
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)


def _nearest_iq4(y: np.ndarray) -> np.ndarray:
    """Index of the nearest grid value for each y (the grid is sorted, so a searchsorted on midpoints)."""
    return np.searchsorted(_MID_IQ4, y).astype(np.uint8)


def quantize_iq4_xs(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    xs = x.reshape(n, 8, 32)
    # the largest-magnitude weight goes to one end of the (asymmetric) grid: try both ends and SEARCH shrinks
    vmax = np.take_along_axis(xs, np.abs(xs).argmax(axis=-1)[..., None], axis=-1)  # [n, 8, 1]
    cand = np.concatenate([vmax / np.float32(-127) * SEARCH, vmax / np.float32(113) * SEARCH], axis=-1)
    q = _nearest_iq4(xs[..., None] * safe_inv(cand[..., None, :]))  # [n, 8, 32, S]
    err = ((KVALUES_IQ4[q].astype(np.float32) * cand[..., None, :] - xs[..., None]) ** 2).sum(axis=2)
    s = np.take_along_axis(cand, err.argmin(axis=-1)[..., None], axis=-1)[..., 0]  # [n, 8]
    amax_i = np.abs(s).argmax(axis=1)[:, None]
    d = f16_round(np.take_along_axis(s, amax_i, axis=1) / np.float32(-32))
    ls = np.clip(np.rint(s * safe_inv(d)), -32, 31).astype(np.int16) + 32  # 0..63
    q = _nearest_iq4(xs * safe_inv((d * (ls - 32)).astype(np.float32))[..., None])  # [n, 8, 32]
    scales_h = ((ls >> 4) << (2 * np.arange(8))).sum(axis=1).astype(np.uint16)
    scales_l = pack_nibbles(ls[:, 0::2], ls[:, 1::2])
    qs = pack_nibbles(q[:, :, :16], q[:, :, 16:]).reshape(n, 128)
    return np.concatenate([f16_bytes(d), scales_h.reshape(-1, 1).view(np.uint8), scales_l, qs], axis=1)


def dequantize_iq4_xs(b: np.ndarray) -> np.ndarray:
    d = f16_value(b[:, 0:2])
    sh = np.ascontiguousarray(b[:, 2:4]).view(np.uint16)  # [n, 1]
    sl = b[:, 4:8]
    lo = np.stack([sl & 0x0F, sl >> 4], axis=2).reshape(-1, 8)
    hi = ((sh >> (2 * np.arange(8, dtype=np.uint16))) & 3).astype(np.uint8)
    ls = (lo | (hi << 4)).astype(np.float32) - np.float32(32)
    qs = b[:, 8:].reshape(-1, 8, 1, 16)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32)
    return ((d * ls)[..., None] * KVALUES_IQ4[q].astype(np.float32)).reshape(-1, 256)


def _e8m0_half(e: np.ndarray) -> np.ndarray:
    """ggml_e8m0_to_fp32_half: 2^(e−128) as float32 bits (subnormal for e < 2)."""
    e = e.astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - 1) << np.uint32(23)).astype(np.uint32)
    return bits.view(np.float32)


def quantize_mxfp4(x: np.ndarray) -> np.ndarray:
    amax = np.abs(x).max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):  # the largest e2m1 magnitude is 6 = 2^2·1.5: exponent floor(log2 amax) − 2
        e = np.where(amax > 0, np.clip(np.floor(np.log2(amax)) - 2 + 127, 0, 254), 0).astype(np.uint8)
    d = _e8m0_half(e)  # [n, 1]
    err = np.abs(d[..., None] * KVALUES_MXFP4.astype(np.float32) - x[..., None])
    q = err.argmin(axis=-1).astype(np.uint8)
    return np.concatenate([e, pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def dequantize_mxfp4(b: np.ndarray) -> np.ndarray:
    qs = b[:, 1:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)
    return _e8m0_half(b[:, :1]) * KVALUES_MXFP4[q].astype(np.float32)
