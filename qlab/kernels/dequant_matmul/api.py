"""`matmul(x, qw, impl=...)`: one entry point over the impls declared in impls.py (the kernel registry), with
the input checks they share."""

from __future__ import annotations

from qlab.kernels import registry

from . import cost as _cost
from .weight import QuantizedWeight

OP = "dequant_matmul"


def __getattr__(name):   # IMPLS (name -> registry record): read from the registry on use, never a stale copy
    if name == "IMPLS":
        return {r.name: r for r in _by_declaration()}
    raise AttributeError(name)


def cost(M: int, N: int, K: int, fmt: str):
    """Bytes and FLOPs of one call (weights read once, x read, y written): qlab.kernels.cost.OpCost."""
    return _cost.matmul(M, N, K, fmt, io_bytes=4)


def available_impls(device: str | None = None) -> list[str]:
    """Impls that can run here (on `device`; default: on any device of this machine): triton needs a CUDA GPU
    or TRITON_INTERPRET=1, cupy needs cupy and a GPU, the C impls a C compiler."""
    kinds = registry.DEVICE_KINDS if device is None else (device,)
    names = {r.name for d in kinds for r in registry.available(OP, d)}
    return [r.name for r in _by_declaration() if r.name in names]


def _by_declaration():
    from . import impls

    return impls.IMPLS


_RECORDS: dict = {}   # name -> registry record: the decode loop calls matmul ~30 times a token


def _record(impl: str):
    rec = _RECORDS.get(impl)
    if rec is not None:
        return rec
    try:
        rec = _RECORDS[impl] = registry.get(OP, impl)
        return rec
    except ValueError:
        raise ValueError(f"unknown dequant_matmul impl {impl!r}; impls: "
                         f"{', '.join(r.name for r in _by_declaration())}") from None


def prepare(qw: QuantizedWeight, impl: str = "cpu_fp32", device=None) -> QuantizedWeight:
    """Do `impl`'s load-time work for qw now rather than on its first matmul (cached on qw.prepared): the CPU
    impls build their C kernels and wrap the bytes (no copy, no repack); triton and cupy copy the bytes to the
    GPU (`device`, default "cuda"); naive has nothing to do."""
    rec = _record(impl)
    if rec.prepare:
        rec.load(rec.prepare)(qw, device)
    return qw


def matmul_many(x, qws: list[QuantizedWeight], *, impl: str = "naive", config: dict | None = None) -> list:
    """[matmul(x, qw, impl=impl) for qw in qws]: several weights applied to one input. An impl that batches
    (registry `batches`, e.g. cpu_int8) runs them as one call where it can; the others one by one."""
    rec = _record(impl)
    for qw in qws:
        _check(x, qw, rec)
    if rec.batches:
        return rec.load(rec.entry_many)(x, list(qws), config)
    fn = rec.fn()
    return [fn(x, qw, config) for qw in qws]


def matmul(x, qw: QuantizedWeight, *, impl: str = "naive", config: dict | None = None):
    """y [M, N] (fp32) = x [M, K] · dequantize(qw)ᵀ with the chosen impl (see impls.py)."""
    rec = _record(impl)
    _check(x, qw, rec)
    return rec.fn()(x, qw, config)


def _check(x, qw, rec) -> None:
    import torch

    if not isinstance(qw, QuantizedWeight):
        raise ValueError(f"matmul: qw must be a QuantizedWeight, got {type(qw).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.dtype.is_floating_point:
        got = f"{x.dtype} with shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"matmul: x must be a 2-D float tensor [M, K], got {got}")
    if x.shape[1] != qw.shape[1]:
        raise ValueError(f"matmul: x has K={x.shape[1]} but weight {qw.name or ''} has shape {qw.shape} (N, K)")
    if not rec.delegates and (rec.name, qw.fmt) not in _READS:
        if not rec.reads(qw.fmt):
            raise ValueError(f"dequant_matmul impl {rec.name!r} does not support {qw.fmt}; it supports "
                             f"{', '.join(rec.supported_formats())}")
        _READS.add((rec.name, qw.fmt))


_READS: set = set()   # (impl, format) pairs already checked

