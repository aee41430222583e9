"""llama.cpp doing the work of each product benchmark (bench_product.py), for the timing gate's second yardstick.

Each builder takes the benchmark's own inputs and returns a callable that makes llama.cpp's ggml do the same work
on the same buffers (qlab.gates.ggml_ops: no copies), or None where llama-cpp-python's ggml cannot be called.
What matches and what does not:
- matmuls: ggml's mul_mat of the same format over the very weight bytes qlab's ggml-layout kernels read (Q8_0,
  Q5_K, IQ4_XS); for Q4_K / Q6_K qlab reads its x8 copy, ggml the ggml bytes beside it.
- the delta-rule step: q/k l2-norm and ggml_gated_delta_net per layer state (the new state goes to ggml's own
  output buffer: the same bytes read, the same written, elsewhere); the fused layer step adds the gated RMSNorm
  of the output (ggml's rms_norm, mul, swiglu), not the short convolution.
- rms_norm with residual (add, rms_norm, mul) and swiglu: one thread, one graph call per qlab call, as qlab's loop.
- DeltaNet prefill: ggml_gated_delta_net over the 512 tokens (llama.cpp's own prefill op for it).
Attention has no counterpart here (ggml's flash attention takes F16 caches and its own mask layout): its
benchmarks keep their probe.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from qlab.gates import ggml_ops


def _graph(threads: int):
    return None if ggml_ops.available() else ggml_ops.Graph(threads)


def matmuls(weights, x: torch.Tensor, threads: int) -> Callable | None:
    """y = x · Wᵀ for every weight (qlab QuantizedWeight, raw ggml bytes), one graph."""
    g = _graph(threads)
    if g is None:
        return None
    K = x.shape[-1]
    xt = g.tensor("F32", K, 1, data=x)
    for w in weights:
        N = w.shape[0]
        g.output(g.op("mul_mat", g.tensor(w.fmt, K, N, data=w.raw), xt))
    return _repeated(g, 1)


def _qk(g, q: torch.Tensor, k: torch.Tensor, kd: int, h: int, tokens: int):
    qt = g.tensor("F32", kd, h, tokens, 1, data=q)
    kt = g.tensor("F32", kd, h, tokens, 1, data=k)
    return g.op("l2_norm", qt, 1e-6), g.op("l2_norm", kt, 1e-6)


def deltanet_steps(q, k, v, gate, beta, states, threads: int) -> Callable | None:
    """One token's delta rule against each of `states` ([L, 1, HV, KD, VD]); q/k [1, 1, H, KD]."""
    g = _graph(threads)
    if g is None:
        return None
    H, KD, HV, VD = q.shape[2], q.shape[3], v.shape[2], v.shape[3]
    qn, kn = _qk(g, q, k, KD, H, 1)
    vt = g.tensor("F32", VD, HV, 1, 1, data=v)
    gt, bt = g.tensor("F32", 1, HV, 1, 1, data=gate), g.tensor("F32", 1, HV, 1, 1, data=beta)
    for s in states:
        g.output(g.op("gated_delta_net", qn, kn, vt, gt, bt, g.tensor("F32", VD, KD, HV, 1, data=s), 1))
    return _repeated(g, 1)


def deltanet_layer_steps(qkv, z, b, a, norm_w, states, h: int, threads: int) -> Callable | None:
    """The delta rule plus the gated RMSNorm of its output, per state; q, k, v are slices of `qkv` [1, D]."""
    g = _graph(threads)
    if g is None:
        return None
    HV, KD, VD = states.shape[2], states.shape[3], states.shape[4]
    flat = qkv.reshape(-1)
    qn, kn = _qk(g, flat[:h * KD], flat[h * KD:2 * h * KD], KD, h, 1)
    vt = g.tensor("F32", VD, HV, 1, 1, data=flat[2 * h * KD:])
    gt, bt = g.tensor("F32", 1, HV, 1, 1, data=a), g.tensor("F32", 1, HV, 1, 1, data=b)
    zt, wt = g.tensor("F32", VD, HV, data=z), g.tensor("F32", VD, data=norm_w)
    for s in states:
        out = g.op("gated_delta_net", qn, kn, vt, gt, bt, g.tensor("F32", VD, KD, HV, 1, data=s), 1)
        o = g.op("reshape_2d", g.op("view_1d", out, VD * HV, 0), VD, HV)
        g.output(g.op("swiglu_split", zt, g.op("mul", g.op("rms_norm", o, 1e-6), wt)))
    return _repeated(g, 1)


def rms_norm_residual(x, r, w, calls: int) -> Callable | None:
    g = _graph(1)
    if g is None:
        return None
    D = x.shape[-1]
    xt, rt, wt = (g.tensor("F32", D, 1, data=t) for t in (x, r, w))
    g.output(g.op("mul", g.op("rms_norm", g.op("add", xt, rt), 1e-6), wt))
    return _repeated(g, calls)


def swiglu(gate, up, calls: int) -> Callable | None:
    g = _graph(1)
    if g is None:
        return None
    n = gate.shape[-1]
    g.output(g.op("swiglu_split", g.tensor("F32", n, 1, data=gate), g.tensor("F32", n, 1, data=up)))
    return _repeated(g, calls)


def deltanet_prefill(x: dict, threads: int) -> Callable | None:
    """The delta rule over x's tokens from its initial state (qlab.kernels.deltanet.inputs.make_inputs)."""
    g = _graph(threads)
    if g is None:
        return None
    _, T, H, KD = x["q"].shape
    HV, VD = x["v"].shape[2], x["v"].shape[3]
    qn, kn = _qk(g, x["q"].contiguous(), x["k"].contiguous(), KD, H, T)
    vt = g.tensor("F32", VD, HV, T, 1, data=x["v"].contiguous())
    gt = g.tensor("F32", 1, HV, T, 1, data=x["g"].contiguous())
    bt = g.tensor("F32", 1, HV, T, 1, data=x["beta"].contiguous())
    st = g.tensor("F32", VD, KD, HV, 1, data=x["initial_state"].contiguous())
    g.output(g.op("gated_delta_net", qn, kn, vt, gt, bt, st, 1))
    return _repeated(g, 1)


def _repeated(g, calls: int) -> Callable:
    """A callable running graph `g` `calls` times (one ggml call per qlab call where qlab loops in Python); its
    `graph` attribute is `g`, whose `outputs` tests read."""
    def run():
        for _ in range(calls):
            g.run()
    run.graph = g
    return run
