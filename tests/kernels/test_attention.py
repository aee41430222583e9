"""Attention: the torch impls (naive, sdpa) against each other at the issue's lengths, and bad inputs.
The Triton kernels are in test_attention_triton.py, CuPy's CUDA C in test_attention_cupy.py."""

import pytest
import torch

from qlab.kernels import attention as A
from qlab.kernels.attention import naive
from qlab.testing import assert_close

TOL = {torch.float32: 2e-3, torch.bfloat16: 1e-2}
FP8_TOL = 3e-2


def make_decode(B, HQ, HKV, D, S, dtype, seed=42):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, HQ, D, generator=g).to(dtype)
    k = torch.randn(B, HKV, S, D, generator=g).to(dtype)
    v = torch.randn(B, HKV, S, D, generator=g).to(dtype)
    return q, k, v


def make_prefill(B, T, HQ, HKV, D, dtype, seed=42):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, HQ, D, generator=g).to(dtype)
    k = torch.randn(B, T, HKV, D, generator=g).to(dtype)
    v = torch.randn(B, T, HKV, D, generator=g).to(dtype)
    return q, k, v


def quantize_fp8(x):
    """[B, HKV, S, D] -> (e4m3 cache, per-(row, head) scale [B, HKV]) mapping each head's max to 448."""
    scale = x.float().abs().amax(dim=(2, 3)).clamp_min(1e-12) / 448.0
    return (x.float() / scale[:, :, None, None]).to(torch.float8_e4m3fn), scale


def test_naive_decode_matches_a_hand_softmax():
    """The reference itself, for one head, against the formula written out with explicit sums in fp64."""
    q, k, v = make_decode(1, 2, 1, 8, 5, torch.float32)
    o = A.decode(q, k, v, torch.tensor([4]), scale=0.3)
    for h in range(2):
        s = [0.3 * float((q[0, h].double() * k[0, 0, t].double()).sum()) for t in range(4)]
        w = torch.tensor(s).exp()
        ref = sum(w[t] * v[0, 0, t].double() for t in range(4)) / w.sum()
        assert torch.allclose(o[0, h].double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("HQ,HKV", [(4, 4), (12, 2), (16, 2)])          # GQA groups 1, 6, 8
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sdpa_decode_matches_naive(HQ, HKV, dtype):
    lengths = torch.tensor([1, 17, 1000, 4099])
    q, k, v = make_decode(4, HQ, HKV, 64, 4099, dtype)
    ref = A.decode(q, k, v, lengths, impl="naive")
    for varlen in ("loop", "mask"):
        out = A.decode(q, k, v, lengths, impl="sdpa", config={"varlen": varlen})
        assert out.dtype == dtype
        assert_close(f"sdpa/{varlen}", ref.float(), out.float(), TOL[dtype])


@pytest.mark.parametrize("L", [1, 17, 1000, 4099])
def test_sdpa_decode_equal_lengths_at_qwen_heads(L):
    q, k, v = make_decode(1, 24, 4, 256, L + 3, torch.bfloat16)
    lengths = torch.tensor([L])
    assert_close(f"sdpa L={L}", A.decode(q, k, v, lengths).float(), A.decode(q, k, v, lengths, impl="sdpa").float(),
                 TOL[torch.bfloat16])


def test_decode_ignores_tokens_past_length():
    """Garbage (inf) after each row's length must not reach the output."""
    q, k, v = make_decode(2, 6, 1, 32, 50, torch.float32)
    lengths = torch.tensor([17, 33])
    ref = A.decode(q, k, v, lengths)
    for b, L in enumerate(lengths.tolist()):
        k[b, :, L:] = float("inf")
        v[b, :, L:] = float("nan")
    for impl in ("naive", "sdpa"):
        out = A.decode(q, k, v, lengths, impl=impl, config=None if impl == "naive" else {"varlen": "loop"})
        assert_close(impl, ref, out, TOL[torch.float32])


@pytest.mark.parametrize("k_scale_shape", ["per_row_head", "per_head"])
def test_fp8_cache_decode(k_scale_shape):
    q, k, v = make_decode(3, 12, 2, 64, 1000, torch.bfloat16)
    lengths = torch.tensor([1, 17, 1000])
    k8, ks = quantize_fp8(k)
    v8, vs = quantize_fp8(v)
    if k_scale_shape == "per_head":
        ks, vs = ks.amax(0), vs.amax(0)
        k8 = (k.float() / ks[None, :, None, None]).to(torch.float8_e4m3fn)
        v8 = (v.float() / vs[None, :, None, None]).to(torch.float8_e4m3fn)
    ref = A.decode(q, k8, v8, lengths, k_scale=ks, v_scale=vs)
    exact = A.decode(q.float(), k.float(), v.float(), lengths)
    assert_close("fp8 naive vs bf16 cache", exact, ref.float(), 6e-2)       # what e4m3 itself costs
    out = A.decode(q, k8, v8, lengths, k_scale=ks, v_scale=vs, impl="sdpa")
    assert_close("sdpa fp8", ref.float(), out.float(), FP8_TOL)


@pytest.mark.parametrize("HQ,HKV", [(4, 4), (12, 2), (16, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_prefill_matches_naive(HQ, HKV, dtype, causal):
    q, k, v = make_prefill(2, 129, HQ, HKV, 64, dtype)
    ref = A.prefill(q, k, v, causal=causal)
    for gqa in ("repeat", "native"):
        out = A.prefill(q, k, v, causal=causal, impl="sdpa", config={"gqa": gqa})
        assert_close(f"sdpa prefill {gqa}", ref.float(), out.float(), TOL[dtype])


def test_prefill_causal_row_t_equals_decode_at_length_t_plus_1():
    """Prefill and decode are the same attention: row t of a causal prefill is a decode over t+1 tokens."""
    q, k, v = make_prefill(1, 20, 6, 1, 32, torch.float32)
    o = A.prefill(q, k, v)
    for t in (0, 7, 19):
        d = A.decode(q[:, t], k.transpose(1, 2), v.transpose(1, 2), torch.tensor([t + 1]))
        assert_close(f"row {t}", d, o[:, t], 1e-5)


# ---- bad input ---------------------------------------------------------------------------------------------

def _decode_args():
    q, k, v = make_decode(2, 12, 2, 32, 40, torch.float32)
    return dict(q=q, k_cache=k, v_cache=v, lengths=torch.tensor([3, 40]))


@pytest.mark.parametrize("change,needle", [
    (lambda a: a.update(q=a["q"][0]), "q"),
    (lambda a: a.update(k_cache=a["k_cache"][:, :, :, :16]), "k_cache"),
    (lambda a: a.update(v_cache=a["v_cache"][:, :, :30]), "v_cache"),
    (lambda a: a.update(lengths=torch.tensor([3, 41])), "lengths"),
    (lambda a: a.update(lengths=torch.tensor([0, 4])), "lengths"),
    (lambda a: a.update(lengths=torch.tensor([3])), "lengths"),
    (lambda a: a.update(lengths=torch.tensor([3.0, 4.0])), "lengths"),
    (lambda a: a.update(q=a["q"][:, :9]), "HQ=9"),
    (lambda a: a.update(q=a["q"].to(torch.int32)), "q"),
    (lambda a: a.update(k_cache=a["k_cache"][:1], v_cache=a["v_cache"][:1]), "k_cache"),
])
def test_decode_bad_input(change, needle):
    args = _decode_args()
    change(args)
    with pytest.raises(ValueError, match=needle):
        A.decode(args.pop("q"), args.pop("k_cache"), args.pop("v_cache"), args.pop("lengths"))


def test_decode_bad_scales():
    a = _decode_args()
    with pytest.raises(ValueError, match="k_scale"):       # scales on a bf16 cache are a mistake, not ignored
        A.decode(a["q"], a["k_cache"], a["v_cache"], a["lengths"], k_scale=1.0)
    k8, v8 = a["k_cache"].to(torch.float8_e4m3fn), a["v_cache"].to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="k_scale"):
        A.decode(a["q"], k8, v8, a["lengths"], k_scale=torch.ones(3), v_scale=1.0)
    with pytest.raises(ValueError, match="v_scale"):
        A.decode(a["q"], k8, v8, a["lengths"], k_scale=1.0, v_scale=-1.0)
    with pytest.raises(ValueError, match="scale"):
        A.decode(a["q"], a["k_cache"], a["v_cache"], a["lengths"], scale=0.0)


def test_prefill_bad_input():
    q = torch.randn(1, 8, 6, 32)
    k = torch.randn(1, 8, 4, 32)
    with pytest.raises(ValueError, match="HQ=6"):
        A.prefill(q, k, k)
    with pytest.raises(ValueError, match="k"):
        A.prefill(q, k[:, :7, :2], k[:, :7, :2])
    with pytest.raises(ValueError, match="q"):
        A.prefill(q[0], k, k)
    with pytest.raises(ValueError, match="k/v"):
        A.prefill(q, k[:, :, :2].half(), k[:, :, :2].half())


def test_unknown_and_unavailable_impls_list_the_available_ones():
    a = _decode_args()
    with pytest.raises(ValueError, match="available here: naive, sdpa"):
        A.decode(a["q"], a["k_cache"], a["v_cache"], a["lengths"], impl="flash9")
    with pytest.raises(ValueError, match="triton_prefill"):   # a prefill kernel is not a decode impl
        A.decode(a["q"], a["k_cache"], a["v_cache"], a["lengths"], impl="triton_prefill")
    if "cupy_decode" not in A.available_impls():
        with pytest.raises(ValueError, match=r"'cupy_decode' is not available.*available: naive, sdpa"):
            A.decode(a["q"], a["k_cache"], a["v_cache"], a["lengths"], impl="cupy_decode")
    assert set(A.available_impls()) <= set(A.IMPLS) and {"naive", "sdpa"} <= set(A.available_impls())


def test_naive_is_fp32_math():
    """bf16 inputs: the reference upcasts, so its output equals the fp32 run rounded once to bf16."""
    q, k, v = make_decode(1, 6, 1, 32, 64, torch.bfloat16)
    lengths = torch.tensor([64])
    o32 = naive.decode(q.float(), k.float(), v.float(), lengths, 32 ** -0.5)
    assert torch.equal(A.decode(q, k, v, lengths), o32.to(torch.bfloat16))


def test_decode_accepts_strided_views():
    """A cache stored token-major [B, S, HKV, D] and viewed as [B, HKV, S, D], and q sliced out of q_proj's
    [q | gate] rows (split_q_gate), are strided views: every impl must read them as they are."""
    q_and_gate = torch.randn(2, 12, 2 * 32, generator=torch.Generator().manual_seed(42))
    q = q_and_gate[..., :32]
    k_tm = torch.randn(2, 40, 2, 32, generator=torch.Generator().manual_seed(43))
    v_tm = torch.randn(2, 40, 2, 32, generator=torch.Generator().manual_seed(44))
    k, v = k_tm.transpose(1, 2), v_tm.transpose(1, 2)
    lengths = torch.tensor([40, 9])
    ref = A.decode(q.contiguous(), k.contiguous(), v.contiguous(), lengths)
    for impl in A.available_impls("decode"):
        assert_close(impl, ref, A.decode(q, k, v, lengths, impl=impl), TOL[torch.float32])
