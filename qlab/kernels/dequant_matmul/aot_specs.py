"""AOT specs of the Triton dequantizing matmul: one per (format, configuration the tuner may pick) at
Qwen3.6-27B shapes (K = 5120 or 17408). See qlab/kernels/README.md for the dict format."""

from __future__ import annotations

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
FORMATS = ("Q8_0", "Q4_0", "Q4_K", "INT4-G128")
SIGNATURE = {"x_ptr": "*fp32", "w_ptr": "*u8", "y_ptr": "*fp32", "M": "i32", "N": "i32", "K": "i32",
             "stride_xm": "i32", "stride_wn": "i32", "stride_ym": "i32"}


def aot_specs() -> list[dict]:
    from .triton_gemv import FMT_CODE, dequant_matmul_kernel

    specs = []
    for fmt in FORMATS:
        for bm, bn, bk, split, warps, stages in CONFIGS:
            constexprs = {"FMT": FMT_CODE[fmt], "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": split}
            specs.append({
                "name": f"dequant_matmul_{fmt.lower().replace('-', '_')}_m{bm}_n{bn}_k{bk}_s{split}",
                "fn": dequant_matmul_kernel,
                "signature": SIGNATURE | {k: "constexpr" for k in constexprs},
                "constexprs": constexprs, "num_warps": warps, "num_stages": stages,
            })
    return specs
