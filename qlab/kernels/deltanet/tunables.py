"""The tunable parameters of the Gated DeltaNet impls, as data for the autotuner (issue 8).

`shape` in `valid` is a mapping with the keys B, T, H, HV, K, V (missing keys: the Qwen3.6-27B values).
"""

from __future__ import annotations

QWEN36_SHAPE = {"B": 1, "T": 1, "H": 16, "HV": 48, "K": 128, "V": 128}

SPACES = {
    "chunk_torch": {"chunk_size": [16, 32, 64, 128]},
    "triton_recurrent": {"BV": [16, 32, 64], "num_warps": [1, 2, 4, 8]},
    # 4 warps, BV >= 32, chunk 64 and 2 stages spill on sm_80/86/89 (compile report): left out of the space
    "triton_chunk": {"chunk_size": [16, 32], "BV": [16], "num_warps": [8], "num_stages": [1]},
    "cupy_recurrent": {"BV": [16, 32], "KSPLIT": [4, 8, 16]},
}

DEFAULTS = {
    "chunk_torch": {"chunk_size": 64},
    "triton_recurrent": {"BV": 32, "num_warps": 4},
    "triton_chunk": {"chunk_size": 32, "BV": 16, "num_warps": 8, "num_stages": 1},
    "cupy_recurrent": {"BV": 32, "KSPLIT": 8},
}

# fp32 values of register tiles per thread above which ptxas spills (Triton 3.9, ptxas -v, sm_80..sm_120;
# measured with `qlab kernels compile-report` at K = V = 128): the recurrent kernel's [K, BV] state slice
# spills at 128 per thread and not at 64; the chunk kernel's [K, BV] state + [BT, K + BV] operands +
# [BT, BT] attention tile spill at >= 60 and not at <= 54 on sm_90 (sm_80/86 need 8 warps: see SPACES).
_RECURRENT_TILE = 64
_CHUNK_TILE = 56

def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def valid(impl: str, config: dict, shape: dict | None = None) -> bool:
    """Whether `config` can run (and should not spill) for `shape` under `impl`."""
    s = {**QWEN36_SHAPE, **(shape or {})}
    space = SPACES.get(impl)
    if space is None or set(config) - set(space):
        return False
    c = {**DEFAULTS[impl], **config}
    K, V = _pow2(s["K"]), _pow2(s["V"])
    if impl == "chunk_torch":
        return c["chunk_size"] >= 1
    if impl == "triton_recurrent":  # the [K, BV] state slice lives in registers
        return c["BV"] <= V and K * c["BV"] / (32 * c["num_warps"]) <= _RECURRENT_TILE
    if impl == "triton_chunk":
        BT, BV = c["chunk_size"], c["BV"]
        tiles = K * BV + BT * (K + BV) + BT * BT
        return BV <= V and K <= 128 and tiles / (32 * c["num_warps"]) <= _CHUNK_TILE
    if impl == "cupy_recurrent":  # threads hold K / KSPLIT state values each; a block is BV x KSPLIT threads
        return (K % c["KSPLIT"] == 0 and c["BV"] * c["KSPLIT"] <= 1024 and V % c["BV"] == 0
                and K // c["KSPLIT"] <= _RECURRENT_TILE)
    return False
