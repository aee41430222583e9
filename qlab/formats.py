"""Weight storage formats: block size and bytes per block, written once for every quant type qlab knows.

GGUF types follow the block structs of ggml (`ggml/src/ggml-common.h`): a block of `block_size` weights
takes `block_bytes` bytes, scales included. The others are the formats GPU servers use. Torch-free: the
predictor, the model accounting and the dequantizing kernels all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockFormat:
    name: str
    block_size: int    # weights per block
    block_bytes: int   # bytes per block, scales included
    gguf: bool = True  # a ggml tensor type (GGMLQuantizationType has it)
    note: str = ""

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.block_bytes / self.block_size

    def nbytes(self, n_weights: int) -> int:
        """Bytes for `n_weights` weights (whole blocks)."""
        return -(-n_weights // self.block_size) * self.block_bytes


_FORMATS = [
    BlockFormat("F32", 1, 4),
    BlockFormat("F16", 1, 2),
    BlockFormat("BF16", 1, 2),
    BlockFormat("Q8_0", 32, 34, note="fp16 d + 32 int8"),
    BlockFormat("Q4_0", 32, 18, note="fp16 d + 16 bytes of nibbles"),
    BlockFormat("Q4_1", 32, 20, note="fp16 d, m + 16 bytes of nibbles"),
    BlockFormat("Q5_0", 32, 22, note="fp16 d + 4 bytes high bits + 16 bytes nibbles"),
    BlockFormat("Q5_1", 32, 24, note="fp16 d, m + 4 bytes high bits + 16 bytes nibbles"),
    BlockFormat("Q2_K", 256, 84, note="16 scale bytes + 64 quant bytes + fp16 d, dmin"),
    BlockFormat("Q3_K", 256, 110, note="32 hmask + 64 qs + 12 scales + fp16 d"),
    BlockFormat("Q4_K", 256, 144, note="fp16 d, dmin + 12 scale bytes + 128 nibble bytes"),
    BlockFormat("Q5_K", 256, 176, note="fp16 d, dmin + 12 scales + 32 qh + 128 qs"),
    BlockFormat("Q6_K", 256, 210, note="128 ql + 64 qh + 16 int8 scales + fp16 d"),
    BlockFormat("Q8_K", 256, 292, note="fp32 d + 256 int8 + 16 int16 bsums (activations only)"),
    BlockFormat("IQ4_NL", 32, 18, note="fp16 d + 16 bytes of non-linear nibbles"),
    BlockFormat("IQ4_XS", 256, 136, note="fp16 d + uint16 scales_h + 4 scales_l + 128 nibble bytes"),
    BlockFormat("MXFP4", 32, 17, note="e8m0 scale + 16 bytes of fp4 e2m1"),
    BlockFormat("INT4-G128", 128, 68, gguf=False, note="64 bytes of nibbles + fp16 scale + fp16 zero (AWQ/GPTQ)"),
    BlockFormat("FP8", 1, 1, gguf=False, note="e4m3, per-output-channel fp32 scale (not counted per block)"),
    BlockFormat("NVFP4", 16, 9, gguf=False, note="8 bytes of fp4 e2m1 + fp8 e4m3 scale per 16"),
]
FORMATS: dict[str, BlockFormat] = {f.name: f for f in _FORMATS}


def get_format(name: str) -> BlockFormat:
    """Case-insensitive lookup; raises QlabError naming the closest formats."""
    fmt = FORMATS.get(name.upper())
    if fmt is None:
        from qlab.errors import unknown

        raise unknown("weight format", name, FORMATS)
    return fmt
