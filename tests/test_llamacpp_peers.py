"""The timing gate's llama.cpp yardsticks do the work they stand for: on fresh random inputs (outputs poisoned
with NaN first), ggml's matmul of each gated format equals qlab's on the same weight bytes, its RMSNorm with
residual and SwiGLU equal qlab's C ops, and its delta-rule graphs write finite outputs of the expected size."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp", reason="llama-cpp-python (the reference peer) is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import llamacpp_peers as peers  # noqa: E402

from qlab.gates import ggml_ops  # noqa: E402

if ggml_ops.available():
    pytest.skip(ggml_ops.available(), allow_module_level=True)


def _outputs(peer, dtype=np.float32) -> list[np.ndarray]:
    g = peer.graph
    for t in g.outputs:   # poison: a graph that does not write its output fails the comparison
        g.array(t, dtype)[:] = np.nan
    peer()
    return [g.array(t, dtype).copy() for t in g.outputs]


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_K", "Q6_K", "Q5_K", "IQ4_XS"])
def test_ggml_matmul_equals_qlab_on_the_same_bytes(fmt):
    from qlab.kernels.dequant_matmul import matmul, quantize

    gen = torch.Generator().manual_seed(7)
    qws = [quantize(torch.randn(64, 512, generator=gen), fmt) for _ in range(2)]
    x = torch.randn(1, 512, generator=gen)
    got = _outputs(peers.matmuls(qws, x, threads=2))
    for qw, y in zip(qws, got):
        ref = matmul(x, qw, impl="cpu_int8").numpy().ravel()
        assert np.isfinite(y).all()
        assert np.abs(y - ref).max() <= 2e-2 * np.abs(ref).max(), fmt   # int8 activations on both sides


def test_ggml_norm_and_swiglu_equal_qlabs():
    from qlab.kernels import elementwise

    gen = torch.Generator().manual_seed(8)
    x, r, w = (torch.randn(1, 640, generator=gen) for _ in range(3))
    (y,) = _outputs(peers.rms_norm_residual(x, r, w, calls=1))
    _, ref = elementwise.rms_norm(x, w, 1e-6, residual=r)
    np.testing.assert_allclose(y, ref.numpy().ravel(), rtol=1e-5, atol=1e-5)
    gate, up = torch.randn(1, 640, generator=gen), torch.randn(1, 640, generator=gen)
    (y,) = _outputs(peers.swiglu(gate, up, calls=1))
    np.testing.assert_allclose(y, elementwise.swiglu(gate, up).numpy().ravel(), rtol=1e-5, atol=1e-5)


def test_ggml_delta_rule_graphs_write_their_outputs():
    from qlab.kernels.deltanet.inputs import make_inputs

    gen = torch.Generator().manual_seed(9)
    H, HV, KD, VD, L = 2, 4, 32, 32, 3
    q, k = torch.randn(1, 1, H, KD, generator=gen), torch.randn(1, 1, H, KD, generator=gen)
    v = torch.randn(1, 1, HV, VD, generator=gen)
    gate, beta = -torch.rand(1, 1, HV, generator=gen), torch.rand(1, 1, HV, generator=gen)
    states = torch.randn(L, 1, HV, KD, VD, generator=gen) * 0.1
    outs = _outputs(peers.deltanet_steps(q, k, v, gate, beta, states, threads=2))
    assert len(outs) == L and all(o.size == HV * VD + HV * KD * VD and np.isfinite(o).all() for o in outs)
    qkv, z = torch.randn(1, 2 * H * KD + HV * VD, generator=gen), torch.randn(1, HV * VD, generator=gen)
    outs = _outputs(peers.deltanet_layer_steps(qkv, z, torch.randn(1, HV, generator=gen),
                                               -torch.rand(1, HV, generator=gen), torch.rand(VD, generator=gen),
                                               states, H, threads=2))
    assert len(outs) == L and all(o.size == HV * VD and np.isfinite(o).all() for o in outs)
    x = make_inputs(1, 16, H, HV, KD, VD, decay="weak")
    (o,) = _outputs(peers.deltanet_prefill(x, threads=2))
    assert o.size == 16 * HV * VD + HV * KD * VD and np.isfinite(o).all()
