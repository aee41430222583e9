"""Search spaces, defaults and constraints of the dequantizing matmul's impls (the autotuner's interface).

SPACES[impl][param] lists the values the tuner may try; DEFAULTS[impl] is what runs untuned; valid(impl,
config, shape) rejects configurations that cannot run (divisibility, register/shared-memory budget).
`shape` is (M, N, K, fmt).
"""

from __future__ import annotations

TRITON_FORMATS = ("Q8_0", "Q4_0", "Q4_K", "INT4-G128", "Q6_K", "Q5_K", "Q3_K", "Q2_K", "IQ4_XS", "FP8")

SPACES = {
    "cpu_fp32": {
        "gemv_max_m": [1, 4, 8, 16, 32, 64],          # largest M served by the C GEMV (above: tiles + BLAS)
        "tile_bytes": [1 << 22, 1 << 24, 1 << 26],    # fp32 scratch per dequantized tile of rows
        "single_thread_bytes": [0, 1 << 17, 1 << 19, 1 << 21],  # GEMVs below this many weight bytes x M: 1 thread
    },
    "cpu_int8": {  # cpu_fp32's knobs act on the formats without an integer kernel (they fall through to it)
        "gemv_max_m": [1, 4, 8, 16, 32, 64],
        "tile_bytes": [1 << 22, 1 << 24, 1 << 26],
        "single_thread_bytes": [0, 1 << 17, 1 << 19, 1 << 21],
        "x8_max_m": [0, 16, 64, 256, 1024],           # largest M read from the x8 copy of Q4_K/Q6_K (0: never;
        #                                               above it the integer kernels read the ggml blocks)
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
    "cpu_fp32": {"gemv_max_m": 16, "tile_bytes": 1 << 24, "single_thread_bytes": 1 << 19},
    "cpu_int8": {"gemv_max_m": 16, "tile_bytes": 1 << 24, "single_thread_bytes": 1 << 19, "x8_max_m": 256},
    "triton": {"BLOCK_M": 1, "BLOCK_N": 16, "BLOCK_K": 256, "SPLIT_K": 1, "num_warps": 4, "num_stages": 2},
    "cupy": {"ROWS_PER_BLOCK": 4},
}


def resolve(impl: str, config: dict | None) -> dict:
    """DEFAULTS[impl] overridden by `config`; ValueError for a parameter the impl does not have. `impl` may be
    an old name of an impl (the registry's aliases, e.g. torch_cpu for cpu_fp32)."""
    if impl not in DEFAULTS:
        from qlab.kernels.registry import canonical

        impl = canonical("dequant_matmul", impl)
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
    if "gemv_max_m" in cfg:   # the CPU impls (cpu_fp32, cpu_int8)
        return cfg["gemv_max_m"] >= 1 and cfg["tile_bytes"] >= 4 * K
    if impl == "triton":
        bk, split = cfg["BLOCK_K"], cfg["SPLIT_K"]
        if str(fmt).upper() not in TRITON_FORMATS or K % 32:
            return False
        if (K + bk - 1) // bk < split:
            return False  # a split with no K step would only add atomics
        # registers: the decoded [BLOCK_N, BLOCK_K] fp32 tile; <= 32 values per thread compiles without spills
        # (aot_specs.py); tl.dot (BLOCK_M >= 16) also stages x and w through shared memory
        per_thread = cfg["BLOCK_N"] * bk / (32 * cfg["num_warps"])
        smem = 4 * bk * (cfg["BLOCK_M"] + cfg["BLOCK_N"]) * cfg["num_stages"] if cfg["BLOCK_M"] >= 16 else 0
        return per_thread <= 32 and smem <= 96 * 1024
    if impl == "cupy":
        return M <= 8 and cfg["ROWS_PER_BLOCK"] in SPACES["cupy"]["ROWS_PER_BLOCK"]
    return not config
