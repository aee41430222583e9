"""qlab's engine against llama.cpp on the very same weights: a synthetic 4-layer Qwen3.6 slice (reduced width)
written as an F16 GGUF by `write_synthetic_gguf`, quantized by llama.cpp itself (`llama_model_quantize`) to Q8_0
and Q4_K_M, then run by both engines on one token sequence (qlab: prefill of the first half, decode of the rest).

Both engines read identical quantized weights, so what separates them is llama.cpp's activation quantization
(Q8_0 / Q8_K dot products), its f16 KV cache and summation order. That noise (~0.6-0.8% of the logits' RMS)
flips the top-1 token only where the two best logits are within a hair of each other; top-1 agreement is
therefore checked on all positions (>= 95%) and on the decisive ones, where llama.cpp's top-2 margin exceeds
5% of the logits' standard deviation (>= 99%), and every disagreement must be such a near-tie.
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

pytestmark = [pytest.mark.peer, pytest.mark.slow]  # ~60 s of CPU: three llama.cpp runs and three of ours

CFG = QWEN36_27B.width_scaled(8, vocab=1024).sliced(4)   # hidden 512, ffn 2048, 6/1 heads, 2/6 DeltaNet heads
N_TOKENS, N_PREFILL = 96, 48
FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def llamacpp_quantize(src, dst, quant: str, threads: int = 2) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant])
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize({quant}) returned {rc}"


def llamacpp_logits(path, tokens: list[int]) -> torch.Tensor:
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_threads=2, n_ctx=128, n_batch=128, verbose=False)
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


@pytest.mark.parametrize("quant,rms_tol", [("F16", 2e-3), ("Q8_0", 1e-2), ("Q4_K_M", 2e-2)])
def test_logits_match_llamacpp(files, tokens, quant, rms_tol):
    ref = llamacpp_logits(files[quant], tokens)
    out = qlab_logits(files[quant], tokens)
    assert not out.isnan().any()
    err = rel_rms_error(ref, out)
    assert err <= rms_tol, f"{quant}: rel RMS {err:.4f} > {rms_tol}"
    top2 = ref.topk(2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]) / ref.std(dim=-1)
    same = out.argmax(-1) == ref.argmax(-1)
    decisive = margin > 0.05
    assert same.float().mean() >= 0.95, f"{quant}: top-1 agreement {same.float().mean():.3f}"
    assert decisive.float().mean() >= 0.8, "too few decisive positions for the check to mean anything"
    assert same[decisive].float().mean() >= 0.99, f"{quant}: decisive top-1 {same[decisive].float().mean():.3f}"
    assert (margin[~same] < 0.05).all(), f"{quant}: a disagreement at a clear margin {margin[~same].tolist()}"


def test_a_wrong_engine_would_fail(files, tokens):
    """Negative control: dropping the DeltaNet value-head permutation breaks the agreement with llama.cpp."""
    m = Qwen35(read_gguf(files["F16"]), default_backend("cpu"))
    m.perm = False
    out = prefill(m, torch.tensor([tokens]), m.new_state(len(tokens)), all_logits=True)[0]
    assert rel_rms_error(llamacpp_logits(files["F16"], tokens), out) > 2e-2
