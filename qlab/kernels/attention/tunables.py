"""Tunables of the attention kernels (the autotuner's search space, issue 8), torch- and triton-free.

`shape` for valid(): a dict with D (head_dim), HQ, HKV, and for decode B and S (cache length) and kv_bytes
(2 for bf16/fp16, 1 for FP8), for prefill T and io_bytes; optional smem_limit (bytes of shared memory per
block; default 99 KiB, what sm_86/89/120 give, so a config valid here runs everywhere)."""

from __future__ import annotations

import math

SMEM_DEFAULT = 99 * 1024
MIN_TOKENS_PER_SPLIT = 256   # shorter splits cost more in merge traffic and loop overhead than they hide
MAX_SPLITS = 128

SPACES = {
    "triton_decode": {"BLOCK_N": [16, 32, 64, 128], "num_splits": [0, 1, 2, 4, 8, 16, 32, 64, 128],
                      "num_warps": [2, 4, 8], "num_stages": [1, 2, 3, 4]},
    "triton_prefill": {"BLOCK_M": [32, 64, 128], "BLOCK_N": [16, 32, 64, 128],
                       "num_warps": [4, 8], "num_stages": [1, 2, 3]},
    "cupy_decode": {"num_splits": [0, 1, 2, 4, 8, 16, 32, 64, 128], "WARPS": [2, 4, 8]},
    "sdpa": {"varlen": ["loop", "mask"], "gqa": ["repeat", "native"], "dtype": ["cache", "query"]},
}

DEFAULTS = {
    "triton_decode": {"BLOCK_N": 32, "num_splits": 0, "num_warps": 4, "num_stages": 2},
    "triton_prefill": {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 8, "num_stages": 2},
    "cupy_decode": {"num_splits": 0, "WARPS": 4},
    "sdpa": {"varlen": "loop", "gqa": "repeat", "dtype": "cache"},
}


def choose_num_splits(B: int, HKV: int, max_len: int, num_sms: int) -> int:
    """Enough (row, KV head, split) programs to give every SM two, as long as each split keeps at least
    MIN_TOKENS_PER_SPLIT tokens: batch 1 at 128K on 132 SMs -> 66 splits; at 1K tokens -> 4."""
    want = math.ceil(2 * num_sms / max(1, B * HKV))
    most = max(1, max_len // MIN_TOKENS_PER_SPLIT)
    return max(1, min(want, most, MAX_SPLITS))


def _smem_ok(need: int, shape: dict) -> bool:
    return need <= shape.get("smem_limit", SMEM_DEFAULT)


def valid(impl: str, config: dict, shape: dict) -> bool:
    """False for a configuration that cannot run (shared memory, divisibility, Triton's tile rules)."""
    if impl not in SPACES:
        return False
    cfg = DEFAULTS.get(impl, {}) | config
    if any(k not in SPACES[impl] for k in config):
        return False
    D = shape.get("D", 256)
    # Register rules read off the AOT compile report at D=256 (sm_80, the tightest): a K/V tile of more than
    # 32 rows of 256, or more than 8 rows of 256 per warp, spills in both kernels; prefill's fp32 [BLOCK_M, D]
    # accumulator must stay at <= 64 registers per thread (BLOCK_M=64 needs 8 warps).
    if impl == "triton_decode":
        kv = shape.get("kv_bytes", 2)
        kv = 2 if kv < 2 else kv          # FP8 tiles are converted to bf16 in registers
        tiles = 2 * cfg["BLOCK_N"] * D * kv * max(1, cfg["num_stages"])
        regs_ok = cfg["BLOCK_N"] * D <= 32 * 256 and cfg["BLOCK_N"] * D <= 8 * 256 * cfg["num_warps"]
        return _smem_ok(tiles, shape) and regs_ok and D & (D - 1) == 0
    if impl == "triton_prefill":
        bm, bn, io = cfg["BLOCK_M"], cfg["BLOCK_N"], shape.get("io_bytes", 2)
        need = bm * D * io + 2 * bn * D * io * max(1, cfg["num_stages"])
        regs_ok = bm * D <= 64 * 32 * cfg["num_warps"] and bn * D <= 32 * 256
        return bm % bn == 0 and _smem_ok(need, shape) and regs_ok and D & (D - 1) == 0
    if impl == "cupy_decode":
        G = shape.get("HQ", 24) // max(1, shape.get("HKV", 4))
        per_word = 4 if shape.get("kv_bytes", 2) == 1 else 2
        return D % (32 * per_word) == 0 and D <= 512 and G <= 8
    return True
