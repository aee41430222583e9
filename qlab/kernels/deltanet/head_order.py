"""Value-head orders. GGUF stores DeltaNet value heads *tiled* (value head j reads key head j % H: the converter
reorders Hugging Face's grouped order so ggml can broadcast); the kernels here, like flash-linear-attention, read
them *grouped* (head m reads key head m // (HV / H)). Tiled j = c·H + h is grouped m = h·r + c, a transpose of the
(c, h) factors: a copy of a few KB, cheaper than an index gather."""

from __future__ import annotations

import torch


def tiled_to_grouped(x: torch.Tensor, H: int) -> torch.Tensor:
    """[..., HV, D] in tiled order -> grouped order."""
    HV = x.shape[-2]
    return x.unflatten(-2, (HV // H, H)).transpose(-3, -2).flatten(-3, -2)


def grouped_to_tiled(x: torch.Tensor, H: int) -> torch.Tensor:
    """[..., HV, D] in grouped order -> tiled order."""
    HV = x.shape[-2]
    return x.unflatten(-2, (H, HV // H)).transpose(-3, -2).flatten(-3, -2)
