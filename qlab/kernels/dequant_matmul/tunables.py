"""Search spaces, defaults and constraints of the dequantizing matmul's impls (the autotuner's interface).

SPACES[impl][param] lists the values the tuner may try; DEFAULTS[impl] is what runs untuned; valid(impl,
config, shape) rejects configurations that cannot run (divisibility, register/shared-memory budget).
`shape` is (M, N, K, fmt).
"""

from __future__ import annotations

from qlab.formats import FORMATS

SPACES = {
    "torch_cpu": {
        "gemv_max_m": [1, 4, 8, 16, 32, 64],          # largest M served by the C GEMV (above: tiles + BLAS)
        "tile_bytes": [1 << 22, 1 << 24, 1 << 26],    # fp32 scratch per dequantized tile of rows
    },
    "triton": {
        "BLOCK_M": [1, 2, 4, 8, 16, 32, 64],         # activation rows per program
        "BLOCK_N": [16, 32, 64, 128],                 # output features per program
        "BLOCK_K": [64, 128, 256, 512],               # input features per step (a multiple of the block size)
        "SPLIT_K": [1, 2, 4, 8, 16],                  # K split over programs, fp32 atomics combine the parts
        "num_warps": [2, 4, 8],
        "num_stages": [1, 2, 3, 4],
    },
    "cupy": {
        "ROWS_PER_BLOCK": [1, 2, 4, 8],               # output features per CUDA block (one warp each)
    },
}

DEFAULTS = {
    "torch_cpu": {"gemv_max_m": 16, "tile_bytes": 1 << 24},
    "triton": {"BLOCK_M": 1, "BLOCK_N": 32, "BLOCK_K": 256, "SPLIT_K": 1, "num_warps": 4, "num_stages": 2},
    "cupy": {"ROWS_PER_BLOCK": 4},
}


def resolve(impl: str, config: dict | None) -> dict:
    """DEFAULTS[impl] overridden by `config`; ValueError for a parameter the impl does not have."""
    cfg = dict(DEFAULTS.get(impl, {}))
    for key, value in (config or {}).items():
        if key not in cfg:
            raise ValueError(f"dequant_matmul impl {impl!r} has no tunable {key!r}; "
                             f"tunables: {', '.join(cfg) or 'none'}")
        cfg[key] = value
    return cfg


def valid(impl: str, config: dict, shape) -> bool:
    M, N, K, fmt = shape
    cfg = resolve(impl, config)
    if impl == "torch_cpu":
        return cfg["gemv_max_m"] >= 1 and cfg["tile_bytes"] >= 4 * K
    if impl == "triton":
        block = FORMATS[str(fmt).upper()].block_size
        bk, split = cfg["BLOCK_K"], cfg["SPLIT_K"]
        if bk % block and block % bk:  # a step covers whole blocks, or a whole number of steps covers one
            return False
        if bk < block and fmt.upper() not in ("INT4-G128",) and block > 32:
            return False  # K-quant super-blocks are decoded whole: BLOCK_K must cover 256
        if K % bk or (K // bk) % split:
            return False  # every split gets a whole number of steps
        # register budget: the dequantized tile BLOCK_N x BLOCK_K fp32 and the BLOCK_M x BLOCK_K activations
        regs_per_thread = (cfg["BLOCK_N"] * bk + cfg["BLOCK_M"] * bk) / (32 * cfg["num_warps"])
        return regs_per_thread <= 160
    if impl == "cupy":
        return M <= 8 and cfg["ROWS_PER_BLOCK"] in SPACES["cupy"]["ROWS_PER_BLOCK"]
    return not config
