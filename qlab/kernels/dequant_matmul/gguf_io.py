"""GGUF tensors (as read by `gguf.GGUFReader`, memory-mapped) -> QuantizedWeight, without copying the bytes."""

from __future__ import annotations

import numpy as np

from qlab.formats import FORMATS

from .weight import SUPPORTED, QuantizedWeight

GGUF_DEFAULT_ALIGNMENT = 32  # general.alignment when a file does not set it


def from_gguf_tensor(tensor, alignment: int = GGUF_DEFAULT_ALIGNMENT) -> QuantizedWeight:
    """A 2-D `gguf.ReaderTensor` as a QuantizedWeight whose `raw` is a view of the reader's memory map.

    ValueError, naming the tensor, its shape and its format's block size, when the data is truncated, not a
    whole number of blocks, or not at an `alignment`-byte offset (a corrupt or hand-built file)."""
    name = getattr(tensor, "name", "?")
    ttype = getattr(tensor.tensor_type, "name", str(tensor.tensor_type))
    if ttype not in SUPPORTED:
        raise ValueError(f"GGUF tensor {name!r}: type {ttype} is not supported; supported: {', '.join(SUPPORTED)}")
    bf = FORMATS[ttype]
    dims = [int(d) for d in tensor.shape]  # ggml order: ne[0] = K (contiguous), ne[1] = N
    if len(dims) != 2:
        raise ValueError(f"GGUF tensor {name!r} ({ttype}, shape {dims}): expected a 2-D weight matrix")
    K, N = dims
    where = f"GGUF tensor {name!r} ({ttype}, shape [N={N}, K={K}], block size {bf.block_size}, " \
            f"{bf.block_bytes} bytes per block)"
    if K % bf.block_size:
        raise ValueError(f"{where}: K is not a multiple of the block size")
    offset = getattr(tensor, "data_offset", 0)
    if alignment and offset % alignment:
        raise ValueError(f"{where}: data offset {offset} is not aligned to {alignment} bytes")
    data = np.asarray(tensor.data)
    need = N * (K // bf.block_size) * bf.block_bytes
    if data.nbytes != need:
        raise ValueError(f"{where}: expected {need} bytes of data, found {data.nbytes} (truncated file?)")
    if not data.flags.c_contiguous:
        raise ValueError(f"{where}: data is not contiguous")
    raw = data.reshape(-1).view(np.uint8).reshape(N, need // N)  # views all the way: no copy
    return QuantizedWeight(ttype, (N, K), raw, name=name)
