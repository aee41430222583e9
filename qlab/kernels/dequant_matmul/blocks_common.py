"""Helpers shared by the block codecs: fp16 fields, nibble packing, and a vectorised scale search.

Every codec works on a 2-D array of blocks (`[n_blocks, block_bytes]` uint8 <-> `[n_blocks, block_size]` float32)
with numpy only: no Python loop ever runs per block.
"""

from __future__ import annotations

import numpy as np

# Scale multipliers tried per (sub-)block by the round-to-nearest quantizers: 1.0 is plain absmax scaling,
# smaller values clip the largest weight a little to fit the rest better. Cheap and a real gain at 2-4 bits.
SEARCH = np.array([1.0, 0.97, 0.94, 0.91, 0.88, 0.85, 0.82], dtype=np.float32)


def f16_bytes(v: np.ndarray) -> np.ndarray:
    """[n] float -> [n, 2] uint8 (little-endian fp16, as ggml stores `ggml_half`)."""
    return np.ascontiguousarray(v.astype(np.float16).reshape(-1, 1)).view(np.uint8).reshape(-1, 2)


def f16_value(b: np.ndarray) -> np.ndarray:
    """[n, 2] uint8 -> [n, 1] float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32).reshape(-1, 1)


def f16_round(v: np.ndarray) -> np.ndarray:
    """The float32 value an fp16 field will decode to (quantize against the stored scale, not the ideal one)."""
    return v.astype(np.float16).astype(np.float32)


def pack_nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo.astype(np.uint8) & 0x0F) | (hi.astype(np.uint8) << 4)


def safe_inv(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def best_symmetric_scale(x: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Per row of x [..., n]: the scale s minimising ||clip(round(x/s), qmin, qmax)·s − x||² over SEARCH.

    The base candidate maps the largest-magnitude weight onto the wider end of the range (ggml's choice:
    for [-8, 7] the signed max goes to -8), so the sign of s carries information.
    """
    imax = np.abs(x).argmax(axis=-1)[..., None]
    vmax = np.take_along_axis(x, imax, axis=-1)  # [..., 1] signed
    base = vmax / np.float32(qmin)  # qmin < 0: the extreme goes to qmin
    cand = base[..., None] * SEARCH  # [..., 1, S]
    inv = safe_inv(cand)
    q = np.clip(np.rint(x[..., None] * inv), qmin, qmax)
    err = ((q * cand - x[..., None]) ** 2).sum(axis=-2)  # [..., S]
    pick = err.argmin(axis=-1)[..., None]
    return np.take_along_axis(cand[..., 0, :], pick, axis=-1)  # [..., 1]


def best_affine_scale(x: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of x [..., n]: (scale s >= 0, offset m >= 0) for x ≈ s·q − m, q in [0, qmax], m = −min(0, min x).

    ggml's K-quants store a non-negative "min" subtracted after scaling; the scale is searched over SEARCH.
    """
    m = np.maximum(-x.min(axis=-1, keepdims=True), 0).astype(np.float32)
    hi = x.max(axis=-1, keepdims=True)
    cand = ((hi + m) / np.float32(qmax))[..., None] * SEARCH  # [..., 1, S]
    inv = safe_inv(cand)
    q = np.clip(np.rint((x + m)[..., None] * inv), 0, qmax)
    err = ((q * cand - m[..., None] - x[..., None]) ** 2).sum(axis=-2)
    pick = err.argmin(axis=-1)[..., None]
    return np.take_along_axis(cand[..., 0, :], pick, axis=-1), m


def chunked(fn, blocks: np.ndarray, out_cols: int, out_dtype, chunk: int = 1 << 15) -> np.ndarray:
    """Apply a block codec `fn` over `chunk` blocks at a time (bounds the scratch of the scale search)."""
    out = np.empty((blocks.shape[0], out_cols), dtype=out_dtype)
    for i in range(0, blocks.shape[0], chunk):
        out[i:i + chunk] = fn(blocks[i:i + chunk])
    return out
