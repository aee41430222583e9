"""qlab's engine against llama.cpp on the very same weights: a synthetic 4-layer Qwen3.6 slice (reduced width)
written as an F16 GGUF by `write_synthetic_gguf`, quantized by llama.cpp itself (`llama_model_quantize`) to Q8_0
and Q4_K_M, then run by both engines on one token sequence (qlab: prefill of the first half, decode of the rest).

Both engines read identical quantized weights and round activations to int8 the same way (cpu_int8: Q8_0 blocks
of 32, Q8_K blocks of 256, as llama.cpp's CPU backend), so what separates them is float summation order, the KV
cache dtype (qlab bf16, llama.cpp f16) and the order of the element-wise math: ~0.02% of the logits' RMS at F16.
Int8 activations amplify that: a 1e-4 difference moves ~1% of the roundings by a whole step, which leaves
~0.3-0.45% of RMS between the engines at Q8_0/Q4_K_M (and between qlab and itself with an f16 instead of a bf16
cache, a change of the same size). Checked over all 160 positions (32 prefilled, 128 decoded), with no near-tie
exemption: rel. RMS <= 0.2 % (F16) / 1 % (Q8_0) / 2 % (Q4_K_M), top-1 agreement >= 99 % at F16 and Q8_0.
Q4_K_M is held to 98 %: measured here (AVX-512 EPYC) it agrees at 157 of 160 positions, and each of the three
others is a near-tie (llama.cpp's top-2 within 0.0013-0.0045 of the logits' std) that its 0.55 % RMS of int8
noise decides either way; prefilling in chunks of 16 (every matmul on the int8 path, as in llama.cpp's prefill)
takes the RMS to 0.44 % and still leaves two, as does running llama.cpp on qlab's schedule (32 batched, then one
token at a time). llama.cpp does not reach 99 % against itself either: its batched and token-by-token runs of this
Q4_K_M file differ by 0.26 % RMS and disagree at 2 of 160 positions (Q8_0: 0.01 %, none). Reaching 99 % would take
a difference below qlab's own ~0.2 % sensitivity to its cache dtype, i.e. bit-matching llama.cpp's graph.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install '.[peer]')")

from qlab.engine.config import QWEN36_27B  # noqa: E402
from qlab.engine.gguf_io import read_gguf, write_synthetic_gguf  # noqa: E402
from qlab.engine.model import Qwen35, decode_one_token, prefill  # noqa: E402
from qlab.engine.ops import default_backend  # noqa: E402
from qlab.testing import rel_rms_error  # noqa: E402

pytestmark = [pytest.mark.peer, pytest.mark.slow]  # ~60 s of CPU: four llama.cpp runs and four of ours

CFG = QWEN36_27B.width_scaled(8, vocab=1024).sliced(4)   # hidden 512, ffn 2048, 6/1 heads, 2/6 DeltaNet heads
N_TOKENS, N_PREFILL = 160, 32
FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def llamacpp_quantize(src, dst, quant: str, threads: int = 2) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant])
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize({quant}) returned {rc}"


def llamacpp_logits(path, tokens: list[int]) -> torch.Tensor:
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_threads=2, n_ctx=N_TOKENS, n_batch=N_TOKENS,
                          verbose=False)
    llm.eval(tokens)
    out = torch.from_numpy(np.array(llm.scores[:len(tokens)], dtype=np.float32))
    llm.close()
    return out


def qlab_logits(path, tokens: list[int]) -> torch.Tensor:
    m = Qwen35(read_gguf(path), default_backend("cpu"))
    st = m.new_state(len(tokens))
    outs = [prefill(m, torch.tensor([tokens[:N_PREFILL]]), st, all_logits=True)[0]]
    outs += [decode_one_token(m, torch.tensor([t]), st) for t in tokens[N_PREFILL:]]
    return torch.cat(outs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    f16 = write_synthetic_gguf(d / "slice-F16.gguf", CFG, "F16", seed=7)
    out = {"F16": f16}
    for q in FTYPES:
        out[q] = d / f"slice-{q}.gguf"
        llamacpp_quantize(f16, out[q], q)
    return out


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, CFG.vocab, (N_TOKENS,), generator=torch.Generator().manual_seed(42)).tolist()


def test_llamacpp_quantized_the_matrices(files):
    assert set(read_gguf(files["Q8_0"]).formats()) == {"Q8_0", "F32"}
    assert {"Q4_K", "Q6_K"} <= set(read_gguf(files["Q4_K_M"]).formats())


@pytest.mark.parametrize("quant,rms_tol,top1", [("F16", 2e-3, 0.99), ("Q8_0", 1e-2, 0.99), ("Q4_K_M", 2e-2, 0.98)])
def test_logits_match_llamacpp(files, tokens, quant, rms_tol, top1):
    ref = llamacpp_logits(files[quant], tokens)
    out = qlab_logits(files[quant], tokens)
    assert not out.isnan().any()
    assert len(out) == len(ref) == N_TOKENS >= 64
    err = rel_rms_error(ref, out)
    assert err <= rms_tol, f"{quant}: rel RMS {err:.4f} > {rms_tol}"
    same = out.argmax(-1) == ref.argmax(-1)
    top2 = ref.topk(2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]) / ref.std(dim=-1)
    assert same.float().mean() >= top1, (f"{quant}: top-1 agreement {same.float().mean():.4f} < {top1} over "
                                         f"{N_TOKENS} positions; llama.cpp's top-2 margins there "
                                         f"{margin[~same].tolist()}")


def test_a_wrong_engine_would_fail(files, tokens):
    """Negative control: dropping the DeltaNet value-head permutation breaks the agreement with llama.cpp."""
    m = Qwen35(read_gguf(files["F16"]), default_backend("cpu"))
    m.perm = False
    out = prefill(m, torch.tensor([tokens]), m.new_state(len(tokens)), all_logits=True)[0]
    assert rel_rms_error(llamacpp_logits(files["F16"], tokens), out) > 2e-2
