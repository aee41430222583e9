"""Random Gated DeltaNet inputs at any shape (seed 42, never zeros): for the tests, benchmarks and the tuner."""

from __future__ import annotations

import functools

import torch

from qlab.measure import threads as torch_threads  # noqa: F401  (tests run small shapes on one thread)

DECAYS = {"weak": 0.02, "medium": 1.0, "strong": 20.0}  # g = -rand * scale: exp(g) from ~1 down to ~0


def make_inputs(B=2, T=63, H=2, HV=6, K=32, V=32, decay="medium", with_state=True, dtype=torch.float32, seed=42):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen)

    q, k, v = rnd(B, T, H, K), rnd(B, T, H, K), rnd(B, T, HV, V)
    g = -torch.rand(B, T, HV, generator=gen) * DECAYS[decay]
    beta = torch.rand(B, T, HV, generator=gen)
    h0 = rnd(B, HV, K, V) if with_state else None
    return dict(q=q.to(dtype), k=k.to(dtype), v=v.to(dtype), g=g, beta=beta, initial_state=h0)


@functools.lru_cache(maxsize=64)
def naive_reference(B, T, H, HV, K, V, decay, with_state, dtype, l2norm=True):
    """The naive reference on the same inputs (cached: every impl is compared with it)."""
    from qlab.kernels.deltanet import gated_delta_rule

    x = make_inputs(B, T, H, HV, K, V, decay, with_state, dtype)
    return gated_delta_rule(**x, use_qk_l2norm=l2norm, impl="naive")



