"""Model weights: a name -> tensor map in GGUF naming, matrices kept in their storage format.

Matrices are `QuantizedWeight`s of `qlab.kernels.dequant_matmul` (raw ggml blocks) or, for F32/F16/BF16, plain
torch tensors; small tensors (norms, conv taps, gates) are fp32 torch tensors. Nothing here ever holds a
dequantized copy of a matrix: synthetic weights are drawn and quantized a block of rows at a time.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qlab.engine import memory
from qlab.engine.config import ModelConfig
from qlab.engine.tensors import TensorSpec, format_for, model_specs
from qlab.errors import QlabError
from qlab.formats import get_format

ROWS_PER_BLOCK = 512  # rows drawn and quantized at once: bounds the fp32 scratch to 512 x K floats


@dataclass
class Weights:
    cfg: ModelConfig
    tensors: dict[str, Any]
    source: str                           # "synthetic:Q8_0" or the GGUF path
    keepalive: list = field(default_factory=list)  # e.g. the GGUFReader whose mmap backs the tensors

    def __getitem__(self, name: str):
        return self.tensors[name]

    def nbytes(self, prefix: str = "") -> int:
        """Stored bytes of every tensor whose name starts with `prefix` (the bytes a decode step streams)."""
        return sum(tensor_nbytes(t) for n, t in self.tensors.items() if n.startswith(prefix))

    def formats(self) -> dict[str, int]:
        """Storage format -> number of tensors, e.g. {"Q8_0": 30, "F32": 20}."""
        out: dict[str, int] = {}
        for t in self.tensors.values():
            f = tensor_format(t)
            out[f] = out.get(f, 0) + 1
        return out


def tensor_format(t) -> str:
    if isinstance(t, torch.Tensor):
        return {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}.get(t.dtype, str(t.dtype))
    return t.fmt


def tensor_nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else t.nbytes


def synthetic_nbytes(cfg: ModelConfig, quant: str, mtp: bool = False, x8_copies: bool = False) -> int:
    """Bytes the synthetic weights of `cfg` (and its MTP block) take in `quant`, computed before anything is
    allocated; with `x8_copies`, plus the row-interleaved copies cpu_int8 makes of Q4_K/Q6_K matrices (synthetic
    weights live in plain memory, so they keep both)."""
    from qlab.kernels.dequant_matmul.cpu_x8 import copy_nbytes

    total = 0
    for s in model_specs(cfg, mtp):
        if s.kind == "small":
            total += 4 * math.prod(s.shape)
        else:
            fmt = format_for(cfg, quant, s.name)
            total += s.shape[0] * get_format(fmt).nbytes(s.shape[1])
            if x8_copies and s.name != "token_embd.weight":   # the embedding is only ever read by row
                total += copy_nbytes(fmt, *s.shape)
    return total


def check_drawable(cfg: ModelConfig, quant: str, specs: list[TensorSpec]) -> None:
    """QlabError, before anything is drawn, when the quant mix gives a tensor a format qlab cannot quantize
    (llama.cpp's fallbacks for rows that are not whole 256-weight blocks: Q5_0, Q5_1, Q4_1, IQ4_NL)."""
    from qlab.kernels.dequant_matmul.weight import SUPPORTED

    for s in specs:
        if s.kind != "small" and (fmt := format_for(cfg, quant, s.name)) not in SUPPORTED:
            raise QlabError(f"quant {quant.upper()}: tensor {s.name!r} (rows of {s.shape[1]}) is stored as {fmt} by "
                            f"llama.cpp's rules, which qlab cannot write; formats qlab writes: {', '.join(SUPPORTED)}")


def _generator(name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()) ^ seed)


def _draw_small(spec: TensorSpec, gen: torch.Generator) -> torch.Tensor:
    """Values with the statistics of the trained model's parameters (GGUF conventions: RMSNorm weights already
    carry the +1 of Qwen3.5's zero-centred norms, ssm_a is -exp(A_log))."""
    shape = spec.shape
    if spec.init in ("norm", "norm_plain"):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if spec.init == "conv":
        return 0.5 * torch.randn(shape, generator=gen)
    if spec.init == "ssm_a":
        return -(1.0 + 15.0 * torch.rand(shape, generator=gen))           # A_log = log U(1, 16)
    if spec.init == "dt":                                                   # dt ~ logU(1e-3, 1e-1)
        dt = torch.exp(math.log(1e-3) + (math.log(1e-1) - math.log(1e-3)) * torch.rand(shape, generator=gen))
        return dt + torch.log(-torch.expm1(-dt))                            # inverse softplus
    raise ValueError(f"{spec.name}: no small-tensor init {spec.init!r}")


RESIDUAL_LAYERS = 64  # projections that write the residual stream are scaled by 1/sqrt(2 * 64)


def _draw_rows(spec: TensorSpec, gen: torch.Generator, rows: int) -> torch.Tensor:
    """Gaussian rows. Matrices keep activations at unit RMS (std 1/sqrt(K)); those writing the residual stream
    (attn_output, ssm_out, ffn_down) are scaled down by 1/sqrt(2 L) as in GPT-2's init, so that, as in a
    trained model, each layer nudges the residual stream instead of replacing it. Without that, a random
    model amplifies every rounding error layer after layer, far beyond what real checkpoints do."""
    return torch.randn(rows, spec.shape[1], generator=gen) * _std(spec)


def _std(spec: TensorSpec) -> float:
    K = spec.shape[1]
    std = 1.0 if spec.init == "embed" else 1.0 / math.sqrt(K)
    if spec.init == "linear_out":
        std /= math.sqrt(2 * RESIDUAL_LAYERS)
    return std


POOL_MIN_WEIGHTS = 1 << 23   # matrices this big (full-width ones) are tiled from a pool of quantized blocks
POOL_BLOCKS = 1 << 13        # distinct blocks per pool: 2M weights at 256 per block
_POOLS: dict = {}            # (fmt, std) -> [POOL_BLOCKS, block_bytes] uint8


def _pool(fmt: str, std: float, bf) -> np.ndarray:
    """POOL_BLOCKS blocks of `fmt` quantized by qlab's own quantizer from N(0, std²) weights, shared by every
    matrix drawn with that format and std."""
    from qlab.engine import ops

    key = (fmt, std)
    if key not in _POOLS:
        gen = torch.Generator().manual_seed(zlib.crc32(f"{fmt}:{std!r}".encode()))
        w = torch.randn(POOL_BLOCKS, bf.block_size, generator=gen) * std
        _POOLS[key] = np.ascontiguousarray(ops.quantize(w, fmt).raw)          # one block per row
    return _POOLS[key]


def synthetic_row_blocks(spec: TensorSpec, fmt: str, seed: int = 0):
    """Yield (r0, r1, QuantizedWeight of rows r0..r1) of a synthetic [N, K] matrix in `fmt`: the fp32 scratch
    never exceeds ROWS_PER_BLOCK rows, and a writer can stream the blocks straight to a file.

    Small matrices are drawn and quantized weight by weight. Full-width ones (>= POOL_MIN_WEIGHTS weights) in a
    block format are tiled from a pool of 8192 blocks quantized from the same distribution, picked at random:
    every block is a genuine quantized Gaussian block with the tensor's statistics, a decode step streams the
    same bytes and does the same work, and a 4-layer slice at Q4_K_M takes seconds instead of the ~20 minutes
    that round-to-nearest K-quant scale search over 1.5 billion weights takes on a small CPU."""
    from qlab.engine import ops

    gen = _generator(spec.name, seed)
    N, K = spec.shape
    bf = get_format(fmt)
    pooled = N * K >= POOL_MIN_WEIGHTS and bf.block_size > 1 and fmt not in ("F16", "BF16", "F32")
    if pooled:
        pool = _pool(fmt, _std(spec), bf)
        rng = np.random.default_rng(zlib.crc32(spec.name.encode()) ^ seed)
    for r0 in range(0, N, ROWS_PER_BLOCK):
        r1 = min(N, r0 + ROWS_PER_BLOCK)
        if pooled:
            idx = rng.integers(0, POOL_BLOCKS, size=((r1 - r0) * (K // bf.block_size)))
            raw = pool[idx].reshape(r1 - r0, -1)
            yield r0, r1, ops.make_qweight(fmt, (r1 - r0, K), raw)
        else:
            yield r0, r1, ops.quantize(_draw_rows(spec, gen, r1 - r0), fmt)


def synthetic_matrix(spec: TensorSpec, fmt: str, seed: int = 0):
    """A [N, K] QuantizedWeight in `fmt` (F16/BF16/F32 included), assembled from synthetic_row_blocks."""
    from qlab.engine import ops

    N, K = spec.shape
    raw = np.empty((N, get_format(fmt).nbytes(K)), dtype=np.uint8)
    scale = np.empty(N, dtype=np.float32) if fmt == "FP8" else None
    for r0, r1, q in synthetic_row_blocks(spec, fmt, seed):
        raw[r0:r1] = q.raw
        if scale is not None:
            scale[r0:r1] = q.scale
    return ops.make_qweight(fmt, (N, K), raw, name=spec.name, scale=scale)


def synthetic_weights(cfg: ModelConfig, quant: str = "Q8_0", seed: int = 0, *, extra_bytes: int = 0,
                      check_memory: bool = True, mtp: bool = False) -> Weights:
    """Random weights at the exact shapes of `cfg` in quant preset `quant` (e.g. Q8_0, Q4_K_M, F16), with the
    MTP block when `mtp`. `extra_bytes` (cache + state) joins the weights in the memory check made before
    anything is allocated."""
    if check_memory:
        memory.check_fits(f"synthetic {cfg.name} ({cfg.n_layers} layers, {quant})",
                          synthetic_nbytes(cfg, quant, mtp) + extra_bytes)
    specs = model_specs(cfg, mtp)
    check_drawable(cfg, quant, specs)
    tensors: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "small":
            tensors[spec.name] = _draw_small(spec, _generator(spec.name, seed)).float()
        else:
            tensors[spec.name] = synthetic_matrix(spec, format_for(cfg, quant, spec.name), seed)
    return Weights(cfg, tensors, f"synthetic:{quant.upper()}")
