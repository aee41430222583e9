"""sdpa decode computes in a bf16 cache's dtype only where the CPU has instructions for it (issue 18: an AVX2 CPU
has no bf16 and would convert element by element); both paths agree with the fp32 reference."""

import torch

from qlab.hwdb import detect
from qlab.kernels.attention import naive, sdpa
from qlab.testing import assert_close


def _inputs():
    g = torch.Generator().manual_seed(42)
    q = torch.randn(1, 24, 256, generator=g)
    k = torch.randn(1, 4, 96, 256, generator=g).to(torch.bfloat16)
    v = torch.randn(1, 4, 96, 256, generator=g).to(torch.bfloat16)
    return q, k, v, torch.tensor([77])


def test_cache_dtype_path_only_with_native_instructions(monkeypatch):
    q, k, v, lengths = _inputs()
    ref = naive.decode(q, k.float(), v.float(), lengths, 1 / 16)
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda qq, *a, **kw: seen.append(qq.dtype) or real(qq, *a, **kw))
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        seen.clear()
        monkeypatch.setattr(detect, "cpu_computes_natively", lambda d, flags=None, n=native: n)
        out = sdpa.decode(q, k, v, lengths, 1 / 16)
        assert seen == [dtype] and out.dtype == torch.float32
        assert_close(f"sdpa native={native}", ref, out, 1e-2)


def test_native_dtype_flags():
    assert detect.cpu_computes_natively("bfloat16", {"avx2", "avx512_bf16"})
    assert not detect.cpu_computes_natively("bfloat16", {"avx2", "fma"})
    assert detect.cpu_computes_natively("float16", {"asimdhp"}) and detect.cpu_computes_natively("float32", set())
