"""Every kernel impl that runs on the device, checked against its op's fp32 reference on the device.

The dequantizing matmul is checked per weight format (every format the impl reads, M = 1 and 3: the GEMV
path and a small batch), the other ops through their validation hook (`qlab.profile.kernel_check`: the kernel
registry's `validate` where it knows the impl, else the tuner's reference check at a small shape)."""

from __future__ import annotations

OTHER_OPS = ("deltanet", "attention_decode", "attention_prefill")
MATMUL_N, MATMUL_K = 64, 512
INT8_TOL = 1.5e-2   # impls that round activations to int8 per block (llama.cpp's numerics): ~0.5 % from fp32
FP32_TOL = 1e-3


def _impls(op: str, device: str) -> list:
    """The tuner's impls of `op` that run on this device kind (the references are what they are checked against)."""
    from qlab.tune.tuner import _get_ops

    try:
        return _get_ops(op, device)
    except Exception:  # noqa: BLE001 - an op with no impl on this device kind: nothing to check
        return []


def _formats(impl: str) -> list[str]:
    from qlab.kernels.dequant_matmul import IMPLS
    from qlab.kernels.dequant_matmul.weight import SUPPORTED

    rec = IMPLS[impl]
    reads = getattr(rec, "reads", None)
    if reads is not None:
        return [f for f in SUPPORTED if reads(f)]
    return list(SUPPORTED if rec.formats is None else rec.formats)


def check_matmul_impl(impl: str, device: str) -> list[dict]:
    """One row per (format, M): {"op", "impl", "case", "rel_rms", "tol", "ok", "error"}."""
    import torch

    from qlab.kernels.dequant_matmul import matmul, quantize
    from qlab.testing import rel_rms_error

    from qlab.kernels import registry

    # an impl that rounds activations to int8 (llama.cpp's numerics) is held to that rounding's bound
    tol = INT8_TOL if "int8_activations" in registry.get("dequant_matmul", impl).features else FP32_TOL
    gen = torch.Generator().manual_seed(42)
    rows = []
    for fmt in _formats(impl):
        if fmt in ("F32", "F16", "BF16"):
            continue   # dense weights: the engine multiplies them with torch, not with these impls
        qw = quantize(torch.randn(MATMUL_N, MATMUL_K, generator=gen), fmt)
        for M in (1, 3):
            x = torch.randn(M, MATMUL_K, generator=gen)
            row = {"op": "dequant_matmul", "impl": impl, "case": f"{fmt} M={M} N={MATMUL_N} K={MATMUL_K}",
                   "tol": tol, "rel_rms": None, "error": ""}
            try:
                want = matmul(x, qw, impl="naive")
                got = matmul(x.to(device), qw, impl=impl).float().cpu()
                row["rel_rms"] = rel_rms_error(want, got)
            except Exception as e:  # noqa: BLE001 - a crash is a failed check, reported in one line
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            row["ok"] = not row["error"] and row["rel_rms"] <= tol   # NaN fails
            rows.append(row)
    return rows


def check_op_impl(op: str, top, device: str) -> dict:
    from qlab.profile.kernel_check import validate_impl

    err = validate_impl(op, top, device)
    return {"op": op, "impl": top.impl, "case": "reference check at a small shape", "rel_rms": None, "tol": None,
            "error": err or "", "ok": err is None}


def check_all(device: str, log=print) -> list[dict]:
    rows = []
    for top in _impls("dequant_matmul", device):
        got = check_matmul_impl(top.impl, device)
        bad = sum(not r["ok"] for r in got)
        log(f"  dequant_matmul/{top.impl}: {len(got) - bad}/{len(got)} cases match")
        rows += got
    for op in OTHER_OPS:
        for top in _impls(op, device):
            row = check_op_impl(op, top, device)
            log(f"  {op}/{top.impl}: {'ok' if row['ok'] else 'MISMATCH ' + row['error']}")
            rows.append(row)
    return rows
