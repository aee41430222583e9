"""The decode loop's element-wise ops: the C path against torch, on fresh random inputs, outputs poisoned."""

import pytest
import torch
import torch.nn.functional as F

from qlab.kernels import elementwise as ew

pytestmark = pytest.mark.skipif(ew.c_kernels(torch.zeros(1)) is None, reason="qlab's C kernels do not build here")


def _poison(monkeypatch):
    """Every buffer the C path allocates starts as NaN, so an unwritten element shows."""
    real = torch.empty

    def empty(*a, **k):
        return real(*a, **k).fill_(float("nan"))

    monkeypatch.setattr(ew.torch, "empty", empty)
    monkeypatch.setattr(ew.torch, "empty_like", lambda t, **k: real(t.shape, dtype=t.dtype).fill_(float("nan")))


@pytest.mark.parametrize("shape", [(1, 1, 5120), (3, 7), (2, 1, 5, 64)])
def test_rms_norm_matches_torch(shape, monkeypatch):
    _poison(monkeypatch)
    g = torch.Generator().manual_seed(sum(shape))
    x, w = torch.randn(shape, generator=g) * 3, torch.randn(shape[-1], generator=g)
    want = F.rms_norm(x, (shape[-1],), w, 1e-6)
    torch.testing.assert_close(ew.rms_norm(x, w, 1e-6), want, rtol=1e-5, atol=1e-6)


def test_rms_norm_of_strided_rows_reads_only_its_half(monkeypatch):
    """The query half of q_proj's [query | gate] heads: rows 2·D apart."""
    _poison(monkeypatch)
    g = torch.Generator().manual_seed(1)
    qg = torch.randn(1, 1, 4, 2 * 32, generator=g)
    q = qg[..., :32]
    assert ew._row_stride(q) == 64
    w = torch.randn(32, generator=g)
    torch.testing.assert_close(ew.rms_norm(q, w, 1e-6), F.rms_norm(q.contiguous(), (32,), w, 1e-6))


def test_rows_that_do_not_collapse_fall_back_to_torch():
    x = torch.randn(4, 6, 8).transpose(0, 1)   # leading dims not mergeable
    assert ew._row_stride(x) is None
    w = torch.randn(8)
    torch.testing.assert_close(ew.rms_norm(x, w, 1e-6), F.rms_norm(x, (8,), w, 1e-6))


def test_residual_add_and_norm(monkeypatch):
    _poison(monkeypatch)
    g = torch.Generator().manual_seed(2)
    x, h, w = torch.randn(1, 1, 5120, generator=g), torch.randn(1, 1, 5120, generator=g), torch.randn(5120, generator=g)
    s, y = ew.rms_norm(x, w, 1e-6, residual=h)
    torch.testing.assert_close(s, x + h)
    torch.testing.assert_close(y, F.rms_norm(x + h, (5120,), w, 1e-6), rtol=1e-5, atol=1e-6)


def test_swiglu(monkeypatch):
    _poison(monkeypatch)
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 17408, generator=g) * 4, torch.randn(2, 17408, generator=g)
    torch.testing.assert_close(ew.swiglu(a, b), F.silu(a) * b)
    with pytest.raises(ValueError, match="up: shape"):
        ew.swiglu(a, b[:, :-1])


def test_silu(monkeypatch):
    """The C SiLU (llama.cpp's exp polynomial, cpu_math.h) against torch's, contiguous or not."""
    _poison(monkeypatch)
    x = torch.randn(3, 5000, generator=torch.Generator().manual_seed(42)) * 8
    torch.testing.assert_close(ew.silu(x), F.silu(x))
    torch.testing.assert_close(ew.silu(x[:, ::2]), F.silu(x[:, ::2]))
