"""QuantizedWeight: a weight matrix [N, K] held as the bytes of its storage format, plus quantize/dequantize.

`raw` is a uint8 array [N, K / block_size · block_bytes]: exactly the array the `gguf` package returns for a
quantized tensor, so GGUF tensors become QuantizedWeights without a copy and qlab's bytes can be written back.
Block sizes and bytes come from `qlab.formats` (the one table of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qlab.formats import FORMATS, BlockFormat

from . import blocks_gpu, blocks_iq, blocks_k, blocks_q0

# fmt -> (quantize_blocks, dequantize_blocks), each over [n_blocks, block_size] <-> [n_blocks, block_bytes]
CODECS = {
    "F32": (blocks_q0.quantize_f32, blocks_q0.dequantize_f32),
    "F16": (blocks_q0.quantize_f16, blocks_q0.dequantize_f16),
    "BF16": (blocks_q0.quantize_bf16, blocks_q0.dequantize_bf16),
    "Q8_0": (blocks_q0.quantize_q8_0, blocks_q0.dequantize_q8_0),
    "Q4_0": (blocks_q0.quantize_q4_0, blocks_q0.dequantize_q4_0),
    "Q2_K": (blocks_k.quantize_q2_k, blocks_k.dequantize_q2_k),
    "Q3_K": (blocks_k.quantize_q3_k, blocks_k.dequantize_q3_k),
    "Q4_K": (blocks_k.quantize_q4_k, blocks_k.dequantize_q4_k),
    "Q5_K": (blocks_k.quantize_q5_k, blocks_k.dequantize_q5_k),
    "Q6_K": (blocks_k.quantize_q6_k, blocks_k.dequantize_q6_k),
    "IQ4_XS": (blocks_iq.quantize_iq4_xs, blocks_iq.dequantize_iq4_xs),
    "MXFP4": (blocks_iq.quantize_mxfp4, blocks_iq.dequantize_mxfp4),
    "INT4-G128": (blocks_gpu.quantize_int4_g128, blocks_gpu.dequantize_int4_g128),
}
SUPPORTED = tuple(CODECS) + ("FP8",)
_CHUNK_BLOCKS = 1 << 14  # blocks per numpy quantize pass: bounds the scale search's scratch to tens of MB
_DEQUANT_CHUNK_WEIGHTS = 1 << 19  # weights per numpy dequantize pass: temporaries stay in L2/L3 (3-4x faster
#                                   for K-quants than 4M-weight passes, measured)


def block_format(fmt: str) -> BlockFormat:
    """The BlockFormat of a supported format name (case-insensitive); ValueError listing the supported ones."""
    name = str(fmt).upper()
    if name not in SUPPORTED:
        raise ValueError(f"unknown weight format {fmt!r}; supported: {', '.join(SUPPORTED)}")
    return FORMATS[name]


@dataclass(eq=False)
class QuantizedWeight:
    fmt: str
    shape: tuple[int, int]           # (N, K): N output features, K input features
    raw: np.ndarray                  # uint8 [N, K / block_size · block_bytes], ggml's block layout
    scale: np.ndarray | None = None  # FP8 only: fp32 per-output-channel scale [N]
    name: str = ""                   # the tensor's name when it came from a file (for error messages)
    prepared: dict = field(default_factory=dict, repr=False)  # per-impl repacked layouts, built on first use

    def __post_init__(self):
        bf = block_format(self.fmt)
        self.fmt = bf.name
        self.shape = tuple(int(s) for s in self.shape)
        label = f"weight {self.name!r} " if self.name else "weight "
        if len(self.shape) != 2 or min(self.shape) <= 0:
            raise ValueError(f"{label}shape {self.shape}: expected (N, K) with N, K > 0")
        N, K = self.shape
        if K % bf.block_size:
            raise ValueError(f"{label}shape {self.shape}: K={K} is not a multiple of the {bf.name} block size "
                             f"{bf.block_size}")
        row = K // bf.block_size * bf.block_bytes
        if not isinstance(self.raw, np.ndarray) or self.raw.dtype != np.uint8:
            got = getattr(self.raw, "dtype", type(self.raw).__name__)
            raise ValueError(f"{label}raw bytes: expected a numpy uint8 array, got {got}")
        if self.raw.shape != (N, row):
            raise ValueError(f"{label}shape {self.shape} in {bf.name} (block size {bf.block_size}, "
                             f"{bf.block_bytes} bytes per block) needs raw bytes of shape {(N, row)}, "
                             f"got {tuple(self.raw.shape)}")
        if bf.name == "FP8":
            if self.scale is None or np.shape(self.scale) != (N,):
                raise ValueError(f"{label}FP8 needs a per-channel scale of shape ({N},), "
                                 f"got {None if self.scale is None else np.shape(self.scale)}")
            self.scale = np.asarray(self.scale, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes read by a matmul: the blocks, plus FP8's per-channel scales."""
        return int(self.raw.nbytes) + (0 if self.scale is None else int(self.scale.nbytes))

    def blocks(self, rows: slice = slice(None)) -> np.ndarray:
        """[n_blocks, block_bytes] view of the blocks of some rows (no copy when raw is contiguous)."""
        bf = FORMATS[self.fmt]
        return self.raw[rows].reshape(-1, bf.block_bytes)


def _check_float_matrix(w, what: str) -> np.ndarray:
    if hasattr(w, "detach"):  # torch tensor
        w = w.detach().to("cpu").float().numpy()
    w = np.asarray(w)
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.floating):
        raise ValueError(f"{what}: expected a 2-D float array [N, K], got {w.dtype} with shape {w.shape}")
    return np.ascontiguousarray(w, dtype=np.float32)


def quantize(w, fmt: str) -> QuantizedWeight:
    """Round-to-nearest quantization of w [N, K] (numpy or torch, float) with a per-block scale search."""
    bf = block_format(fmt)
    w = _check_float_matrix(w, "quantize: w")
    N, K = w.shape
    if K % bf.block_size:
        raise ValueError(f"quantize: w shape {(N, K)}: K={K} is not a multiple of the {bf.name} block size "
                         f"{bf.block_size}")
    if bf.name == "FP8":
        raw, scale = blocks_gpu.quantize_fp8(w)
        return QuantizedWeight("FP8", (N, K), raw, scale)
    q_fn = CODECS[bf.name][0]
    blocks = w.reshape(-1, bf.block_size)
    out = np.empty((blocks.shape[0], bf.block_bytes), dtype=np.uint8)
    for i in range(0, blocks.shape[0], _CHUNK_BLOCKS):
        out[i:i + _CHUNK_BLOCKS] = q_fn(blocks[i:i + _CHUNK_BLOCKS])
    return QuantizedWeight(bf.name, (N, K), out.reshape(N, -1))


def dequantize_rows(qw: QuantizedWeight, start: int = 0, stop: int | None = None) -> np.ndarray:
    """float32 [stop − start, K] of rows start..stop: the tile dequantizer the CPU fallback path uses."""
    stop = qw.shape[0] if stop is None else stop
    if qw.fmt == "FP8":
        return blocks_gpu.dequantize_fp8(qw.raw[start:stop], qw.scale[start:stop])
    bf = FORMATS[qw.fmt]
    d_fn = CODECS[qw.fmt][1]
    blocks = qw.blocks(slice(start, stop))
    out = np.empty((blocks.shape[0], bf.block_size), dtype=np.float32)
    chunk = max(1, _DEQUANT_CHUNK_WEIGHTS // bf.block_size)
    for i in range(0, blocks.shape[0], chunk):
        out[i:i + chunk] = d_fn(blocks[i:i + chunk])
    return out.reshape(stop - start, qw.shape[1])


def dequantize(qw: QuantizedWeight):
    """torch float32 [N, K]: the values the stored bytes decode to (equal to gguf-py's dequantization)."""
    import torch

    if not isinstance(qw, QuantizedWeight):
        raise ValueError(f"dequantize: expected a QuantizedWeight, got {type(qw).__name__}")
    return torch.from_numpy(dequantize_rows(qw))
