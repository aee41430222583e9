"""The decode loop against an independent token-by-token fp32 reference, on a narrow 4-layer Qwen3.6 slice
with synthetic weights (seed 42)."""

from __future__ import annotations

import pytest
import torch

from qlab.engine import memory
from qlab.engine.config import QWEN36_27B, get_config
from qlab.engine.model import Qwen35, decode_n_tokens, decode_one_token, prefill
from qlab.engine.ops import default_backend, reference_backend
from qlab.engine.reference import reference_logits
from qlab.engine.weights import synthetic_weights
from qlab.errors import QlabError
from qlab.testing import assert_close

TOKENS = [5, 17, 300, 2, 99, 511, 0, 42, 7, 8, 130]
CFG = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)   # hidden 512, 2 key / 6 value DeltaNet heads


@pytest.fixture(scope="module")
def weights():
    return synthetic_weights(CFG, "Q8_0", seed=42)


@pytest.fixture(scope="module")
def ref(weights):
    return reference_logits(weights, TOKENS)


def _engine_logits(weights, backend, n_prefill: int) -> torch.Tensor:
    """Prefill the first n_prefill tokens, then decode the rest one at a time: logits of every position."""
    m = Qwen35(weights, backend)
    st = m.new_state(32)
    toks = torch.tensor([TOKENS])
    outs = [prefill(m, toks[:, :n_prefill], st, all_logits=True)[0]]
    for j in range(n_prefill, len(TOKENS)):
        outs.append(decode_one_token(m, toks[:, j], st))
    assert st.pos == len(TOKENS)
    return torch.cat(outs)


def test_config_is_the_design_card():
    c = get_config("qwen3.6-27b")
    assert (c.n_layers, c.hidden, c.ffn, c.vocab) == (64, 5120, 17408, 248320)
    assert (c.n_attention_layers, c.n_deltanet_layers) == (16, 48)
    assert c.layer_types[3] == "attention" and c.layer_types[:3] == ("deltanet",) * 3
    assert c.conv_dim == 10240 and c.value_dim == 6144 and c.attn_scale == 1 / 16
    assert c.kv_cache_bytes(1) == 64 * 1024                    # 64 KiB per token at bf16
    assert c == QWEN36_27B                                     # the qlab.models preset agrees with the model card


def test_only_the_qwen35_architecture_runs():
    with pytest.raises(QlabError, match="architecture 'qwen35moe'"):
        get_config("qwen3.6-35b-a3b")
    with pytest.raises(QlabError, match="closest: qwen3.6-27b"):
        get_config("qwen3.6-27x")


@pytest.mark.parametrize("n_prefill", [1, 7, len(TOKENS)])
def test_reference_impls_match_reference_model(weights, ref, n_prefill):
    """Every op on its fp32 reference impl: the engine and the independent model agree to float rounding."""
    assert_close(f"engine(naive, prefill {n_prefill})", ref, _engine_logits(weights, reference_backend(), n_prefill),
                 1e-4)


def test_fast_cpu_paths_match_reference_model(weights, ref):
    """The CPU fast paths (chunked prefill, recurrent decode, SDPA, bf16 KV cache)."""
    out = _engine_logits(weights, default_backend("cpu"), 7)
    assert_close("engine(cpu defaults)", ref, out, 1e-2)
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.99


def test_fused_deltanet_decode_step_matches_the_op_by_op_one(weights, monkeypatch):
    """The CPU decode step of a DeltaNet layer as one C call (recurrent_cpu) against the torch ops it replaces
    (recurrent_torch), everything else equal: same logits to fp32 rounding, and the C call really ran."""
    from qlab.kernels.deltanet import layer_step_cpu

    if not layer_step_cpu.applies(torch.zeros(1)):
        pytest.skip("qlab's C kernels do not build here")
    calls = []
    real = layer_step_cpu.gdn_decode_layer
    monkeypatch.setattr(layer_step_cpu, "gdn_decode_layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    fused = _engine_logits(weights, default_backend("cpu", matmul="naive", deltanet_decode="recurrent_cpu"), 4)
    assert len(calls) == CFG.n_deltanet_layers * (len(TOKENS) - 4)
    op_by_op = _engine_logits(weights, default_backend("cpu", matmul="naive", deltanet_decode="recurrent_torch"), 4)
    assert len(calls) == CFG.n_deltanet_layers * (len(TOKENS) - 4)
    assert_close("fused DeltaNet decode step", op_by_op, fused, 1e-4)


def test_value_head_order_matters(weights, ref):
    """Negative control: without the tiled->grouped value-head permutation the logits are wrong, so the
    comparison above can fail."""
    m = Qwen35(weights, reference_backend())
    m.perm = False
    st = m.new_state(32)
    out = prefill(m, torch.tensor([TOKENS]), st, all_logits=True)[0]
    with pytest.raises(AssertionError):
        assert_close("engine without permutation", ref, out, 1e-2)


def test_greedy_decode_follows_reference(weights):
    m = Qwen35(weights, default_backend("cpu"))
    st = m.new_state(16)
    prompt = torch.tensor([TOKENS[:4]])
    first = prefill(m, prompt, st).argmax(-1)
    gen = decode_n_tokens(m, first, st, 3)[0].tolist()
    seq = TOKENS[:4] + [int(first)] + gen
    ref = reference_logits(weights, seq)
    assert ref[3:-1].argmax(-1).tolist() == seq[4:]


def test_context_longer_than_cache_is_a_clear_error(weights):
    m = Qwen35(weights, default_backend("cpu"))
    st = m.new_state(4)
    with pytest.raises(QlabError, match="exceeds the cache of 4 tokens"):
        prefill(m, torch.tensor([TOKENS[:5]]), st)


def test_slice_must_keep_the_layer_pattern():
    with pytest.raises(QlabError, match="multiple of 4"):
        QWEN36_27B.sliced(6)


def test_slice_that_does_not_fit_fails_before_allocating(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 10**9)
    with pytest.raises(QlabError, match=r"needs 2[0-9.]+ GB but only 2\.00 GB"):
        synthetic_weights(QWEN36_27B.sliced(64), "Q8_0")
    with pytest.raises(MemoryError):    # what the profile runner catches to record "out of memory" and go on
        synthetic_weights(QWEN36_27B.sliced(64), "Q8_0")


def test_formats_the_gpu_matmul_lacks_fall_back_to_the_reference():
    from qlab.engine.ops import Ops, default_backend as backend

    ops = Ops(backend("cpu", matmul="triton"))       # the CUDA choice; only asked which impl it would use
    for fmt in ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K", "IQ4_XS", "Q4_0"):  # every common mix's formats
        assert ops.matmul_impl(fmt) == "triton", fmt
    assert ops.matmul_impl("MXFP4") == "naive" and ops.fallbacks == {"MXFP4": "naive"}
    assert Ops(backend("cpu")).matmul_impl("Q6_K") == "cpu_int8"
