"""The fused C decode step of a whole DeltaNet layer against the same step from torch pieces."""

import pytest
import torch

from qlab.kernels.deltanet import layer_step_cpu as ls

pytestmark = pytest.mark.skipif(not ls.applies(torch.zeros(1)), reason="qlab's C kernels do not build here")


def inputs(B, H, HV, K, V, W, seed):
    g = torch.Generator().manual_seed(seed)
    D = 2 * H * K + HV * V

    def r(*shape, s=1.0):
        return torch.randn(*shape, generator=g) * s

    return dict(qkv=r(B, D), z=r(B, HV * V), b=r(B, HV), a=r(B, HV), conv_state=r(B, D, W - 1),
                conv_w=r(D, W, s=0.5), ssm_a=-torch.rand(HV, generator=g) * 4 - 0.1, dt_bias=r(HV),
                norm_w=1 + r(V, s=0.1), state=r(B, HV, K, V, s=0.1))


@pytest.mark.parametrize("B,H,HV,K,V,W,threads", [(2, 2, 6, 16, 40, 4, 1), (1, 3, 3, 8, 32, 3, 2),
                                                  (1, 16, 48, 128, 128, 4, 2)])
def test_matches_the_torch_step_over_several_tokens(B, H, HV, K, V, W, threads):
    c = inputs(B, H, HV, K, V, W, seed=B * 100 + HV)
    r = {k: v.clone() for k, v in c.items()}
    for step in range(3):
        fresh = inputs(B, H, HV, K, V, W, seed=step + 7)   # new projections each token, states carried over
        for k in ("qkv", "z", "b", "a"):
            c[k], r[k] = fresh[k].clone(), fresh[k].clone()
        out = torch.full((B, HV * V), float("nan"))
        got = ls.gdn_decode_layer(**c, H=H, eps=1e-6, threads=threads, out=out)
        want = ls.reference(**r, H=H, eps=1e-6)
        assert got.data_ptr() == out.data_ptr()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c["state"], r["state"], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(c["conv_state"], r["conv_state"])


def test_bad_shapes_are_named():
    c = inputs(1, 2, 4, 8, 8, 4, seed=0)
    c["z"] = c["z"][:, :-1]
    with pytest.raises(ValueError, match="z: shape"):
        ls.gdn_decode_layer(**c, H=2, eps=1e-6)
    c = inputs(1, 2, 4, 8, 8, 4, seed=0)
    with pytest.raises(ValueError, match="state: shape"):
        ls.gdn_decode_layer(**c, H=3, eps=1e-6)
    c = inputs(1, 2, 4, 8, 8, 4, seed=0)
    c["conv_w"] = c["conv_w"].half()
    with pytest.raises(ValueError, match="conv_w: torch.float16"):
        ls.gdn_decode_layer(**c, H=2, eps=1e-6)


def test_gate_matches_torch(monkeypatch):
    """g = ssm_a · softplus(a + dt_bias) by libm in C against torch's softplus, outputs poisoned."""
    real = torch.empty_like
    monkeypatch.setattr(ls.torch, "empty_like", lambda t, **k: real(t, **k).fill_(float("nan")))
    g = torch.Generator().manual_seed(42)
    a, dt, ssm_a = torch.randn(7, 48, generator=g) * 10, torch.randn(48, generator=g), -torch.rand(48, generator=g) * 4
    out = ls.gdn_gate(a, ssm_a, dt)
    torch.testing.assert_close(out, ssm_a * torch.nn.functional.softplus(a + dt), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ls.gdn_gate(a.double(), ssm_a, dt).float(), out, rtol=1e-5, atol=1e-6)   # torch path
