"""The MTP block and self-speculative decoding, on a narrow 4-layer Qwen3.6 slice with synthetic weights: the
engine's MTP drafts against the independent reference, and speculative output against plain greedy decoding on
the accept path, the reject path and a mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab.engine.config import QWEN36_27B
from qlab.engine.gguf_io import read_gguf, write_synthetic_gguf
from qlab.engine.model import Qwen35, decode_n_tokens, prefill
from qlab.engine.ops import reference_backend
from qlab.engine.reference import reference_logits
from qlab.engine.speculative import decode_n_tokens_mtp
from qlab.engine.weights import synthetic_weights
from qlab.errors import QlabError
from qlab.testing import assert_close

CFG = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)
TOKENS = [5, 17, 300, 2, 99, 511, 0, 42, 7]
N_NEW = 9


@pytest.fixture(scope="module")
def weights():
    return synthetic_weights(CFG, "Q8_0", seed=3, mtp=True)


@pytest.fixture(scope="module")
def greedy(weights):
    """Plain greedy decoding: the tokens speculative decoding must reproduce."""
    m = Qwen35(weights, reference_backend())
    st = m.new_state(32)
    first = prefill(m, torch.tensor([TOKENS]), st).argmax(-1)
    rest = decode_n_tokens(m, first, st, N_NEW - 1)
    return torch.cat([first[:, None], rest], dim=1)


def test_mtp_drafts_match_the_reference(weights):
    ref_logits, ref_drafts = reference_logits(weights, TOKENS, mtp=True)
    m = Qwen35(weights, reference_backend())
    assert m.mtp_block == CFG.n_layers
    st = m.new_state(32)
    toks = torch.tensor([TOKENS])
    logits, hid = m.forward(toks, st, all_logits=True, hidden=True)
    assert_close("main logits", ref_logits, logits[0], 1e-4)
    # a prompt's pairs in one chunk, then the rest one at a time: the block's own cache carries them
    d = [m.mtp(hid[:, :4], toks[:, 1:5], st)]
    d += [m.mtp(hid[:, t:t + 1], toks[:, t + 1:t + 2], st) for t in range(4, len(TOKENS) - 1)]
    assert st.mtp_pos == len(TOKENS) - 1
    assert_close("MTP drafts", ref_drafts[[3] + list(range(4, 8))], torch.stack([x[0] for x in d]), 1e-4)


@pytest.mark.parametrize("policy", ["mtp", "oracle", "wrong", "mixed"])
def test_speculative_decoding_reproduces_greedy(weights, greedy, policy):
    m = Qwen35(weights, reference_backend())
    st = m.new_state(40)
    want = greedy[0].tolist()
    calls = []

    def draft(logits):
        """oracle: the true next token; wrong: anything else; mixed: alternate."""
        produced = st.pos - len(TOKENS) + 1       # tokens generated once this draft is verified, minus one
        calls.append(produced)
        truth = want[produced] if produced < len(want) else 0
        right = policy == "oracle" or (policy == "mixed" and len(calls) % 2)
        return torch.tensor([truth if right else (truth + 1) % CFG.vocab])

    out, stats = decode_n_tokens_mtp(m, torch.tensor([TOKENS]), st, N_NEW, draft=None if policy == "mtp" else draft)
    assert out[0].tolist() == want
    assert stats.steps >= 1 and stats.drafted == stats.steps
    if policy == "oracle":
        assert stats.acceptance == 1.0 and stats.steps == (N_NEW - 1 + 1) // 2
    if policy == "wrong":
        assert stats.accepted == 0 and stats.steps == N_NEW - 1
    if policy == "mixed":
        assert 0 < stats.accepted < stats.drafted


def test_mtp_block_round_trips_through_gguf(tmp_path, weights):
    cfg = QWEN36_27B.width_scaled(8, vocab=512).sliced(8)
    path = write_synthetic_gguf(tmp_path / "mtp.gguf", cfg, "F16", seed=1, mtp=True)
    whole = read_gguf(path)
    sliced = read_gguf(path, layers=4)
    assert Qwen35(whole).mtp_block == 8 and Qwen35(sliced).mtp_block == 8   # the file's index, after a slice too
    syn = synthetic_weights(cfg, "F16", seed=1, mtp=True)
    for name in ("blk.8.nextn.eh_proj.weight", "blk.8.nextn.hnorm.weight", "blk.8.attn_q.weight"):
        a, b = whole[name], syn[name]
        a = torch.as_tensor(np.array(a.raw) if hasattr(a, "raw") else a)
        b = torch.as_tensor(np.array(b.raw) if hasattr(b, "raw") else b)
        assert torch.equal(a.reshape(-1).float(), b.reshape(-1).float()), name


def test_no_mtp_block_is_a_clear_error():
    m = Qwen35(synthetic_weights(CFG, "Q8_0", seed=3), reference_backend())
    st = m.new_state(8)
    _, hid = m.forward(torch.tensor([[1, 2]]), st, hidden=True)
    with pytest.raises(QlabError, match="no MTP block"):
        m.mtp(hid, torch.tensor([[2, 3]]), st)
    with pytest.raises(QlabError, match="expected shape \\[1, T\\]"):
        decode_n_tokens_mtp(m, torch.tensor([1, 2]), m.new_state(8), 2)
