"""AOT specs of the Triton dequantizing matmul: one per (format, configuration the tuner may pick) at
Qwen3.6-27B shapes (K = 5120 or 17408), and the CuPy GEMV's CUDA C (gemv.cu). See qlab/kernels/README.md for
the dict format."""

from __future__ import annotations

from pathlib import Path

# (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_warps, num_stages): decode GEMV, batched decode, prefill (tl.dot)
# A [BLOCK_N, BLOCK_K] fp32 tile over 32·num_warps threads: <= 32 values per thread keeps ptxas under ~170 regs
# with no spills (64 per thread measured 239-255 regs and spills on sm_80; BLOCK_N=16 lays the tile out
# with fewer registers than 32 at the same size: 72-128 against 168-239 on sm_80).
CONFIGS = [
    (1, 16, 256, 1, 4, 2),
    (1, 16, 256, 4, 4, 2),
    (8, 16, 128, 1, 4, 2),
    (32, 16, 64, 1, 4, 2),
]
# prefill with bf16 activations: the tl.dot on bf16 tiles (tensor cores), fp32 accumulate
BF16_CONFIGS = [(32, 16, 64, 1, 4, 2)]
SIGNATURE = {"x_ptr": "*fp32", "w_ptr": "*u8", "s_ptr": "*fp32", "y_ptr": "*fp32", "M": "i32", "N": "i32",
             "K": "i32", "stride_xm": "i32", "stride_wn": "i32", "stride_ym": "i32"}


def aot_specs() -> list[dict]:
    from .triton_gemv import FMT_CODE, dequant_matmul_kernel

    specs = []
    for fmt in FMT_CODE:  # every format the kernel reads
        for x_type, configs in (("fp32", CONFIGS), ("bf16", BF16_CONFIGS)):
            for bm, bn, bk, split, warps, stages in configs:
                constexprs = {"FMT": FMT_CODE[fmt], "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": split}
                suffix = "_bf16" if x_type == "bf16" else ""  # fp32 names unchanged: the snapshot's keys
                specs.append({
                    "name": f"dequant_matmul_{fmt.lower().replace('-', '_')}_m{bm}_n{bn}_k{bk}_s{split}{suffix}",
                    "fn": dequant_matmul_kernel,
                    "signature": SIGNATURE | {"x_ptr": f"*{x_type}"} | {k: "constexpr" for k in constexprs},
                    "constexprs": constexprs, "num_warps": warps, "num_stages": stages,
                })
    return specs


def cupy_specs() -> list[dict]:
    """gemv.cu as cupy_gemv.py loads it (the launch: ROWS_PER_BLOCK = 4 warps per block by default)."""
    return [{"path": Path(__file__).with_name("gemv.cu"), "options": ["-std=c++17"], "num_warps": 4}]
