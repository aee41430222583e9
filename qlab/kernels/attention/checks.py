"""The attention check for the kernel registry's validate(): an impl against the fp32 reference."""

from __future__ import annotations

from qlab.kernels.registry import Impl


def check(rec: Impl, device: str) -> list[dict]:
    """rec against naive on fresh random inputs (GQA 4:2, D=64, ragged lengths for decode), on `device`."""
    import torch

    from qlab.testing import rel_rms_error

    from . import decode, prefill

    gen = torch.Generator().manual_seed(42)
    B, HQ, HKV, D = 2, 4, 2, 64
    if rec.op == "attention_decode":
        S = 40
        q, k, v = (torch.randn(*s, generator=gen) for s in ((B, HQ, D), (B, HKV, S, D), (B, HKV, S, D)))
        lengths = torch.tensor([S, 9], dtype=torch.int32)
        want = decode(q, k, v, lengths, impl="naive")
        got = decode(q.to(device), k.to(device), v.to(device), lengths.to(device), impl=rec.name).cpu()
        case = f"B={B} HQ={HQ} HKV={HKV} D={D} S={S} lengths 40,9 fp32"
    else:
        T = 33
        q, k, v = (torch.randn(B, T, h, D, generator=gen) for h in (HQ, HKV, HKV))
        want = prefill(q, k, v, impl="naive")
        got = prefill(q.to(device), k.to(device), v.to(device), impl=rec.name).cpu()
        case = f"B={B} T={T} HQ={HQ} HKV={HKV} D={D} causal fp32"
    return [{"case": case, "rel_rms": rel_rms_error(want, got), "tol": 2e-3}]
