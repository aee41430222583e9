"""q/k RMSNorm ((1 + w), eps 1e-6, per head), the q/gate split, the sigmoid output gate, and prepare_qk."""

import pytest
import torch

from qlab.kernels.attention import apply_rope, output_gate, prepare_qk, qk_norm, rms_norm, split_q_gate


def rms_ref(x, w, eps=1e-6, offset=1.0):
    x = x.double()
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps) * (offset + w.double())


def test_rms_norm_unit_offset_and_plain():
    g = torch.Generator().manual_seed(42)
    x, w = torch.randn(3, 24, 256, generator=g), 0.1 * torch.randn(256, generator=g)
    torch.testing.assert_close(rms_norm(x, w).double(), rms_ref(x, w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rms_norm(x, w, unit_offset=False).double(), rms_ref(x, w, offset=0.0),
                               rtol=1e-5, atol=1e-5)
    zero = rms_norm(x, torch.zeros(256))                       # (1 + 0): plain normalisation, unit RMS
    torch.testing.assert_close(zero.pow(2).mean(-1), torch.ones(3, 24), rtol=1e-4, atol=1e-4)


def test_rms_norm_bf16_and_bad_weight():
    x = torch.randn(2, 4, 64).bfloat16()
    assert rms_norm(x, torch.zeros(64)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="weight"):
        rms_norm(x, torch.zeros(32))


def test_qk_norm_per_head():
    g = torch.Generator().manual_seed(42)
    q, k = torch.randn(2, 24, 256, generator=g), torch.randn(2, 4, 256, generator=g)
    qw, kw = torch.randn(256, generator=g), torch.randn(256, generator=g)
    qn, kn = qk_norm(q, k, qw, kw)
    torch.testing.assert_close(qn.double(), rms_ref(q, qw), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kn.double(), rms_ref(k, kw), rtol=1e-5, atol=1e-5)


def test_split_q_gate_is_per_head_interleaved():
    HQ, D = 3, 4
    out = torch.arange(HQ * 2 * D).float()[None]               # head h: [q_h (D) | gate_h (D)]
    q, gate = split_q_gate(out, HQ, D)
    assert q.shape == gate.shape == (1, HQ, D)
    assert q[0, 1].tolist() == [8, 9, 10, 11] and gate[0, 1].tolist() == [12, 13, 14, 15]
    with pytest.raises(ValueError, match="q_proj_out"):
        split_q_gate(out, 4, D)


def test_output_gate():
    g = torch.Generator().manual_seed(42)
    o, gate = torch.randn(2, 24, 256, generator=g), torch.randn(2, 24, 256, generator=g)
    torch.testing.assert_close(output_gate(o, gate).double(), o.double() / (1 + torch.exp(-gate.double())),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gate"):
        output_gate(o, gate[:, :4])


def test_prepare_qk_is_split_norm_rope_in_order():
    g = torch.Generator().manual_seed(42)
    B, T, HQ, HKV, D = 1, 5, 24, 4, 256
    qp, k = torch.randn(B, T, HQ * 2 * D, generator=g), torch.randn(B, T, HKV, D, generator=g)
    qw, kw = 0.1 * torch.randn(D, generator=g), 0.1 * torch.randn(D, generator=g)
    pos = torch.arange(40, 45)
    q2, k2, gate = prepare_qk(qp, k, qw, kw, pos, num_heads=HQ, head_dim=D)
    q_raw, gate_ref = split_q_gate(qp, HQ, D)
    torch.testing.assert_close(q2, apply_rope(rms_norm(q_raw, qw), pos))
    torch.testing.assert_close(k2, apply_rope(rms_norm(k, kw), pos))
    assert torch.equal(gate, gate_ref)
