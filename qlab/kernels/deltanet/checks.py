"""The Gated DeltaNet check for the kernel registry's validate(): an impl against the naive recurrence."""

from __future__ import annotations

from qlab.kernels.registry import Impl


def check(rec: Impl, device: str) -> list[dict]:
    """rec against the naive recurrence on fresh random inputs (B=2, T=1 and 5, H=2, HV=4, K=V=32), on `device`,
    the gate computed in-kernel where the impl fuses it."""
    import torch

    from qlab.testing import rel_rms_error

    from . import gated_delta_rule

    gen = torch.Generator().manual_seed(42)
    rows = []
    for T in (1, 5):
        B, H, HV, K, V = 2, 2, 4, 32, 32

        def rnd(*s):
            return torch.randn(*s, generator=gen)

        q, k, v, a, b = rnd(B, T, H, K), rnd(B, T, H, K), rnd(B, T, HV, V), rnd(B, T, HV), rnd(B, T, HV)
        A_log, dt_bias, state = rnd(HV) * 0.5, rnd(HV) * 0.5, rnd(B, HV, K, V) * 0.1
        kw = dict(initial_state=state, use_qk_l2norm=True, A_log=A_log, dt_bias=dt_bias)
        want, want_s = gated_delta_rule(q, k, v, a, b, impl="naive", **kw)
        dev = {n: t.to(device) for n, t in dict(q=q, k=k, v=v, a=a, b=b).items()}
        kw_dev = {n: (t.to(device) if isinstance(t, torch.Tensor) else t) for n, t in kw.items()}
        got, got_s = gated_delta_rule(dev["q"], dev["k"], dev["v"], dev["a"], dev["b"], impl=rec.name, **kw_dev)
        err = max(rel_rms_error(want, got.cpu()), rel_rms_error(want_s, got_s.cpu()))
        rows.append({"case": f"B={B} T={T} H={H} HV={HV} K=V={K} fp32", "rel_rms": err, "tol": 2e-3})
    return rows
