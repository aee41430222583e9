"""ggml K-quants: super-blocks of 256 weights with quantized per-sub-block scales (ggml-common.h).

  block_q4_K { half d, dmin; u8 scales[12]; u8 qs[128]; }   8 subs of 32: w = d·sc_j·q − dmin·m_j, q in 0..15
  block_q5_K { half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }           same with q in 0..31
  block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }  16 subs of 16: w = d·sc_j·(q − 32), q in 0..63
  block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d; } 16 subs of 16: w = d·(sc_j − 32)·(q − 4)
  block_q2_K { u8 scales[16]; u8 qs[64]; half d, dmin; }        16 subs of 16: w = d·sc_j·q − dmin·m_j, q in 0..3

Bit placement (all read from ggml's dequantize_row_* and written here in numpy):
- Q4_K/Q5_K qs: 4 chunks of 32 bytes; chunk c holds sub-block 2c in the low nibbles and 2c+1 in the high ones.
  Q5_K qh[i] bit j is the 5th bit of element i of sub-block j.
- 6-bit scale/min pairs of Q4_K/Q5_K (12 bytes): bytes 0-3 = sc[0..3] | (sc[4..7] >> 4) << 6,
  bytes 4-7 = m[0..3] | (m[4..7] >> 4) << 6, bytes 8-11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4.
- 2-bit planes (Q2_K qs, Q3_K qs, Q6_K qh): each 128-weight half reads 32 bytes; bits 2s..2s+1 of byte i are
  element 32s + i of that half. Q3_K hmask[i] bit b is the high bit of element 32b + i.
- Q6_K ql: each 128-weight half reads 64 bytes; low nibbles are elements 0..63, high nibbles 64..127.
- Q3_K scales (12 bytes, 16 × 6 bits): low 4 bits of scale k in byte k % 8 (nibble k // 8), high 2 bits in
  byte 8 + k % 4 at bit 2·(k // 4).
"""

from __future__ import annotations

import numpy as np

from .blocks_common import (best_affine_scale, best_symmetric_scale, f16_bytes, f16_round, f16_value,
                            pack_nibbles, safe_inv)

SHIFT2 = np.array([0, 2, 4, 6], dtype=np.uint8)


# --- shared bit plumbing --------------------------------------------------------------------------------------

def _pack_scale_min_k4(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """[n, 8] sc, m in 0..63 -> [n, 12] bytes."""
    sc, m = sc.astype(np.uint8), m.astype(np.uint8)
    b0 = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    b1 = m[:, :4] | ((m[:, 4:] >> 4) << 6)
    b2 = (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4)
    return np.concatenate([b0, b1, b2], axis=1)


def _unpack_scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b0, b1, b2 = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([b0 & 0x3F, (b2 & 0x0F) | ((b0 >> 6) << 4)], axis=1)
    m = np.concatenate([b1 & 0x3F, (b2 >> 4) | ((b1 >> 6) << 4)], axis=1)
    return sc, m


def _pack_2bit_planes(q: np.ndarray) -> np.ndarray:
    """[n, 256] values in 0..3 -> [n, 64] bytes (two halves of 32 bytes, 4 planes each)."""
    q = q.astype(np.uint8).reshape(-1, 2, 4, 32) << SHIFT2.reshape(1, 1, 4, 1)
    return np.bitwise_or.reduce(q, axis=2).reshape(-1, 64)


def _unpack_2bit_planes(b: np.ndarray) -> np.ndarray:
    """[n, 64] bytes -> [n, 256] values in 0..3."""
    return ((b.reshape(-1, 2, 1, 32) >> SHIFT2.reshape(1, 1, 4, 1)) & 3).reshape(-1, 256)


def _pack_bit_planes(bits: np.ndarray) -> np.ndarray:
    """[n, 8·32] single bits -> [n, 32] bytes, byte i bit j = element 32j + i."""
    bits = bits.astype(np.uint8).reshape(-1, 8, 32) << np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
    return np.bitwise_or.reduce(bits, axis=1)


def _unpack_bit_planes(b: np.ndarray) -> np.ndarray:
    return ((b.reshape(-1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1).reshape(-1, 256)


def _pack_nibble_chunks(q: np.ndarray) -> np.ndarray:
    """[n, 256] values in 0..15 -> [n, 128]: chunk c = sub-block 2c (low) | sub-block 2c+1 (high)."""
    q = q.reshape(-1, 4, 2, 32)
    return pack_nibbles(q[:, :, 0], q[:, :, 1]).reshape(-1, 128)


def _unpack_nibble_chunks(b: np.ndarray) -> np.ndarray:
    b = b.reshape(-1, 4, 1, 32)
    return np.concatenate([b & 0x0F, b >> 4], axis=2).reshape(-1, 256)


def _affine_superblock(x: np.ndarray, n_sub: int, qmax: int, smax: int):
    """Scale search per sub-block, then the super-block fp16 d/dmin and the integer sub-scales/mins.

    Returns (d, dmin [n,1] float32 as stored, sc, m [n, n_sub] ints, q [n, 256] ints in 0..qmax)."""
    xs = x.reshape(x.shape[0], n_sub, -1)
    s, mn = best_affine_scale(xs, qmax)  # [n, n_sub, 1]
    s, mn = s[..., 0], mn[..., 0]
    d = f16_round(s.max(axis=1, keepdims=True) / np.float32(smax))
    dmin = f16_round(mn.max(axis=1, keepdims=True) / np.float32(smax))
    sc = np.clip(np.rint(s * safe_inv(d)), 0, smax)
    m = np.clip(np.rint(mn * safe_inv(dmin)), 0, smax)
    # requantize against the scales as stored, so the block decodes to the nearest grid point
    scale = (d * sc)[..., None]
    off = (dmin * m)[..., None]
    q = np.clip(np.rint((xs + off) * safe_inv(scale)), 0, qmax).reshape(x.shape[0], -1)
    return d, dmin, sc, m, q


def _symmetric_superblock(x: np.ndarray, n_sub: int, qmin: int, qmax: int, smin: int, smax: int):
    """Signed sub-scales: (d [n,1] as stored, sc [n, n_sub] in smin..smax, q [n, 256] in qmin..qmax)."""
    xs = x.reshape(x.shape[0], n_sub, -1)
    s = best_symmetric_scale(xs, qmin, qmax)[..., 0]  # [n, n_sub], signed
    amax_i = np.abs(s).argmax(axis=1)[:, None]
    d = f16_round(np.take_along_axis(s, amax_i, axis=1) / np.float32(smin))  # extreme sub-scale -> smin
    sc = np.clip(np.rint(s * safe_inv(d)), smin, smax)
    scale = (d * sc)[..., None]
    q = np.clip(np.rint(xs * safe_inv(scale)), qmin, qmax).reshape(x.shape[0], -1)
    return d, sc, q


# --- Q4_K -------------------------------------------------------------------------------------------------------

def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = _affine_superblock(x, 8, 15, 63)
    return np.concatenate([f16_bytes(d), f16_bytes(dmin), _pack_scale_min_k4(sc, m), _pack_nibble_chunks(q)], axis=1)


def _affine_decode(d, dmin, sc, m, q, n_sub):
    scale = (d * sc.astype(np.float32)).reshape(-1, n_sub, 1)
    off = (dmin * m.astype(np.float32)).reshape(-1, n_sub, 1)
    return (scale * q.reshape(-1, n_sub, 256 // n_sub).astype(np.float32) - off).reshape(-1, 256)


def dequantize_q4_k(b: np.ndarray) -> np.ndarray:
    sc, m = _unpack_scale_min_k4(b[:, 4:16])
    return _affine_decode(f16_value(b[:, 0:2]), f16_value(b[:, 2:4]), sc, m, _unpack_nibble_chunks(b[:, 16:]), 8)


# --- Q5_K -------------------------------------------------------------------------------------------------------

def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = _affine_superblock(x, 8, 31, 63)
    q = q.astype(np.uint8)
    return np.concatenate([f16_bytes(d), f16_bytes(dmin), _pack_scale_min_k4(sc, m),
                           _pack_bit_planes(q >> 4), _pack_nibble_chunks(q & 0x0F)], axis=1)


def dequantize_q5_k(b: np.ndarray) -> np.ndarray:
    sc, m = _unpack_scale_min_k4(b[:, 4:16])
    q = _unpack_nibble_chunks(b[:, 48:]) | (_unpack_bit_planes(b[:, 16:48]) << 4)
    return _affine_decode(f16_value(b[:, 0:2]), f16_value(b[:, 2:4]), sc, m, q, 8)


# --- Q6_K -------------------------------------------------------------------------------------------------------

def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    d, sc, q = _symmetric_superblock(x, 16, -32, 31, -128, 127)
    u = (q + 32).astype(np.uint8).reshape(-1, 2, 128)
    ql = pack_nibbles(u[:, :, :64], u[:, :, 64:] & 0x0F).reshape(-1, 128)
    qh = _pack_2bit_planes((u >> 4).reshape(-1, 256))
    return np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), f16_bytes(d)], axis=1)


def dequantize_q6_k(b: np.ndarray) -> np.ndarray:
    ql = b[:, :128].reshape(-1, 2, 1, 64)
    lo = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(-1, 256)
    q = (lo | (_unpack_2bit_planes(b[:, 128:192]) << 4)).astype(np.float32) - np.float32(32)
    scale = (f16_value(b[:, 208:210]) * b[:, 192:208].view(np.int8).astype(np.float32)).reshape(-1, 16, 1)
    return (scale * q.reshape(-1, 16, 16)).reshape(-1, 256)


# --- Q3_K -------------------------------------------------------------------------------------------------------

def quantize_q3_k(x: np.ndarray) -> np.ndarray:
    d, sc, q = _symmetric_superblock(x, 16, -4, 3, -32, 31)
    u = (q + 4).astype(np.uint8)  # 0..7: high bit in hmask, low 2 bits in qs
    s = (sc + 32).astype(np.uint8)  # 0..63
    sl = pack_nibbles(s[:, :8], s[:, 8:] & 0x0F)
    sh = np.bitwise_or.reduce(((s >> 4) & 3).reshape(-1, 4, 4) << SHIFT2.reshape(1, 4, 1), axis=1)
    return np.concatenate([_pack_bit_planes(u >> 2), _pack_2bit_planes(u & 3), sl, sh, f16_bytes(d)], axis=1)


def dequantize_q3_k(b: np.ndarray) -> np.ndarray:
    hm, qs, s, d = b[:, :32], b[:, 32:96], b[:, 96:108], f16_value(b[:, 108:110])
    lo = np.concatenate([s[:, :8] & 0x0F, s[:, :8] >> 4], axis=1)
    hi = ((s[:, 8:12].reshape(-1, 1, 4) >> SHIFT2.reshape(1, 4, 1)) & 3).reshape(-1, 16)
    sc = ((lo | (hi << 4)).astype(np.float32) - np.float32(32)).reshape(-1, 16, 1)
    q = (_unpack_2bit_planes(qs) | (_unpack_bit_planes(hm) << 2)).astype(np.float32) - np.float32(4)
    return ((d.reshape(-1, 1, 1) * sc) * q.reshape(-1, 16, 16)).reshape(-1, 256)


# --- Q2_K -------------------------------------------------------------------------------------------------------

def quantize_q2_k(x: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = _affine_superblock(x, 16, 3, 15)
    return np.concatenate([pack_nibbles(sc, m), _pack_2bit_planes(q), f16_bytes(d), f16_bytes(dmin)], axis=1)


def dequantize_q2_k(b: np.ndarray) -> np.ndarray:
    s = b[:, :16]
    return _affine_decode(f16_value(b[:, 80:82]), f16_value(b[:, 82:84]), s & 0x0F, s >> 4,
                          _unpack_2bit_planes(b[:, 16:80]), 16)
