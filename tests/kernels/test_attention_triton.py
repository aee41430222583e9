"""The Triton attention kernels under TRITON_INTERPRET=1 on CPU tensors, at small shapes, against naive.
The interpreter runs every program in Python, so head_dim is 32 and lengths stay short here; the naive/sdpa
tests cover the issue's long lengths. `TRITON_INTERPRET=1 pytest <this file>` runs them directly."""

import os

import pytest
import torch

pytest.importorskip("triton")

from qlab.kernels import attention as A  # noqa: E402
from qlab.kernels.attention import triton_decode  # noqa: E402
from qlab.testing import assert_close, run_file_in_interpreter  # noqa: E402

from test_attention import FP8_TOL, TOL, make_decode, make_prefill, quantize_fp8  # noqa: E402

# Triton chooses the interpreter when it is imported (its own tl library is @jit code too), so these tests
# need a process that set TRITON_INTERPRET=1 first. Anywhere else (the whole suite, where the AOT tests
# import triton for real), the one test below reruns this file in such a process and the others skip.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in test_in_interpreter_subprocess")


@pytest.mark.skipif(INTERPRETED, reason="already in the interpreter")
def test_in_interpreter_subprocess():
    run_file_in_interpreter(__file__)


GROUPS = [(4, 4), (12, 2), (16, 2)]       # GQA groups 1, 6, 8


@pytest.mark.parametrize("HQ,HKV", GROUPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@interpreted
def test_triton_decode_matches_naive(HQ, HKV, dtype):
    lengths = torch.tensor([1, 17, 300])
    q, k, v = make_decode(3, HQ, HKV, 32, 301, dtype)
    ref = A.decode(q, k, v, lengths)
    out = A.decode(q, k, v, lengths, impl="triton_decode", config={"num_splits": 4, "BLOCK_N": 16})
    assert out.dtype == dtype
    assert_close("triton_decode", ref.float(), out.float(), TOL[dtype])


@pytest.mark.parametrize("num_splits,block_n", [(1, 64), (3, 32), (64, 16)])
@interpreted
def test_triton_decode_split_counts(num_splits, block_n):
    """One split, a few, and more splits than a short row has tokens (empty splits must merge as nothing)."""
    lengths = torch.tensor([5, 257])
    q, k, v = make_decode(2, 6, 1, 32, 260, torch.float16)
    ref = A.decode(q, k, v, lengths)
    out = A.decode(q, k, v, lengths, impl="triton_decode", config={"num_splits": num_splits, "BLOCK_N": block_n})
    assert_close(f"splits={num_splits}", ref.float(), out.float(), TOL[torch.bfloat16])


@interpreted
def test_triton_decode_fp8_cache():
    q, k, v = make_decode(2, 12, 2, 32, 200, torch.bfloat16)
    lengths = torch.tensor([200, 33])
    k8, ks = quantize_fp8(k)
    v8, vs = quantize_fp8(v)
    ref = A.decode(q, k8, v8, lengths, k_scale=ks, v_scale=vs)
    out = A.decode(q, k8, v8, lengths, k_scale=ks, v_scale=vs, impl="triton_decode", config={"num_splits": 2})
    assert_close("triton_decode fp8", ref.float(), out.float(), FP8_TOL)


@interpreted
def test_e4m3_bytes_decode_exactly():
    """The integer e4m3 -> fp32 conversion (sm_80/86 path) on all 254 finite codes, against torch's."""
    import triton
    import triton.language as tl

    @triton.jit
    def convert(x_ptr, y_ptr, N: tl.constexpr):
        o = tl.arange(0, N)
        tl.store(y_ptr + o, triton_decode._e4m3_to_f32(tl.load(x_ptr + o)))

    codes = torch.tensor([c for c in range(256) if c & 0x7F != 0x7F], dtype=torch.uint8)   # drop the NaNs
    pad = torch.zeros(256, dtype=torch.uint8)
    pad[: len(codes)] = codes
    out = torch.empty(256)
    convert[(1,)](pad, out, N=256)
    assert torch.equal(out[: len(codes)], codes.view(torch.float8_e4m3fn).float())


@interpreted
def test_split_plan():
    n, split_len = triton_decode.plan(B=1, HKV=4, max_len=131072, block_n=32, num_sms=132)
    assert split_len % 32 == 0 and n * split_len >= 131072 and (n - 1) * split_len < 131072
    assert n == 66                                   # 2 programs per SM: 4 heads x 66 splits = 264
    assert triton_decode.plan(B=1, HKV=4, max_len=100, block_n=32, num_sms=132)[0] == 1   # short: one split
    assert triton_decode.plan(B=64, HKV=4, max_len=8192, block_n=32, num_sms=132)[0] == 2  # a batch fills it


@pytest.mark.parametrize("HQ,HKV", GROUPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@interpreted
def test_triton_prefill_matches_naive(HQ, HKV, dtype, causal):
    q, k, v = make_prefill(2, 37, HQ, HKV, 32, dtype)
    ref = A.prefill(q, k, v, causal=causal)
    out = A.prefill(q, k, v, causal=causal, impl="triton_prefill", config={"BLOCK_M": 32, "BLOCK_N": 16})
    assert_close("triton_prefill", ref.float(), out.float(), TOL[dtype])


@pytest.mark.parametrize("T", [1, 17, 64])
@interpreted
def test_triton_prefill_lengths_and_tiles(T):
    q, k, v = make_prefill(1, T, 6, 1, 32, torch.float32)
    ref = A.prefill(q, k, v)
    for bm, bn in ((16, 16), (64, 16)):
        out = A.prefill(q, k, v, impl="triton_prefill", config={"BLOCK_M": bm, "BLOCK_N": bn})
        assert_close(f"T={T} {bm}x{bn}", ref, out, TOL[torch.float32])


@interpreted
def test_triton_prefill_rejects_tiles_that_do_not_divide():
    q = torch.randn(1, 8, 2, 32)
    with pytest.raises(ValueError, match="BLOCK_M"):
        A.prefill(q, q, q, impl="triton_prefill", config={"BLOCK_M": 32, "BLOCK_N": 64})


@interpreted
def test_triton_kernels_at_qwen_head_shape():
    """HQ=24, HKV=4, D=256 (Qwen3.6) at interpreter-sized lengths: the G=6 -> 16 padding and the full head_dim."""
    q, k, v = make_decode(2, 24, 4, 256, 70, torch.bfloat16)
    lengths = torch.tensor([1, 70])
    ref = A.decode(q, k, v, lengths, scale=1 / 16)
    out = A.decode(q, k, v, lengths, scale=1 / 16, impl="triton_decode", config={"num_splits": 2})
    assert_close("decode qwen shape", ref.float(), out.float(), TOL[torch.bfloat16])
    q, k, v = make_prefill(1, 40, 24, 4, 256, torch.bfloat16)
    ref = A.prefill(q, k, v, scale=1 / 16)
    out = A.prefill(q, k, v, scale=1 / 16, impl="triton_prefill", config={"BLOCK_M": 32, "BLOCK_N": 16})
    assert_close("prefill qwen shape", ref.float(), out.float(), TOL[torch.bfloat16])


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unit_offset", [True, False])
def test_fused_norm_rope_matches_torch(dtype, unit_offset):
    g = torch.Generator().manual_seed(42)
    B, T, HQ, HKV, D = 2, 3, 6, 2, 256
    qp = torch.randn(B, T, HQ * 2 * D, generator=g).to(dtype)
    k = torch.randn(B, T, HKV, D, generator=g).to(dtype)
    qw, kw = (0.1 * torch.randn(D, generator=g)).to(dtype), (0.1 * torch.randn(D, generator=g)).to(dtype)
    pos = torch.tensor([[0, 1, 2], [4000, 4001, 4002]])
    args = (qp, k, qw, kw, pos)
    kw_ = dict(num_heads=HQ, head_dim=D, unit_offset=unit_offset)
    q_ref, k_ref, gate_ref = A.prepare_qk(*args, **kw_)
    q_tri, k_tri, gate_tri = A.prepare_qk(*args, **kw_, impl="triton")
    assert q_tri.dtype == dtype and torch.equal(gate_tri, gate_ref)
    assert_close("fused q", q_ref.float(), q_tri.float(), TOL[dtype])
    assert_close("fused k", k_ref.float(), k_tri.float(), TOL[dtype])
