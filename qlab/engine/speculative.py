"""Self-speculative greedy decoding with Qwen3.6's MTP block: the block drafts one token, the main model verifies
it in the same pass as the token before it (T = 2), so an accepted draft yields two tokens for one pass.

A rejected draft has already advanced the DeltaNet conv and recurrent states past a wrong token, and those states
cannot be rewound; they are snapshotted before each verification (conv + recurrent: ~3.1 MB per DeltaNet layer
of the full model) and restored, and the accepted token is run alone (T = 1). So with acceptance rate a, a step
costs verify(2) + draft + (1 - a) · decode(1) and yields 1 + a tokens. Attention KV entries past the position
are simply overwritten later. The output equals plain greedy decoding up to the rounding differences between
the T = 2 and T = 1 paths (checked in tests on the fp32 reference backend).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qlab.engine.model import DecodeState, Qwen35
from qlab.errors import QlabError


@dataclass
class SpecStats:
    steps: int = 0       # verification passes
    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def _snapshot(st: DecodeState) -> tuple:
    return st.pos, st.mtp_pos, {i: t.clone() for i, t in st.conv.items()}, {i: t.clone() for i, t in st.rec.items()}


def _restore(st: DecodeState, snap: tuple) -> None:
    st.pos, st.mtp_pos, conv, rec = snap
    for i, t in conv.items():
        st.conv[i].copy_(t)
    for i, t in rec.items():
        st.rec[i].copy_(t)


def decode_n_tokens_mtp(model: Qwen35, prompt: torch.Tensor, st: DecodeState, n: int,
                        draft=None) -> tuple[torch.Tensor, SpecStats]:
    """Prefill `prompt` [1, T] into an empty `st`, then greedily generate n tokens with MTP drafts.
    Returns (tokens [1, n], SpecStats). `draft(logits) -> token` picks the draft from the MTP logits (default
    argmax; tests pass others to drive both the accept and the reject path)."""
    if prompt.dim() != 2 or prompt.shape[0] != 1:
        raise QlabError(f"prompt: expected shape [1, T] (speculative decoding runs one sequence), "
                        f"got {list(prompt.shape)}")
    if st.pos or st.mtp_pos:
        raise QlabError("decode_n_tokens_mtp: expected an empty DecodeState (prefill runs here)")
    pick = draft or (lambda logits: logits.argmax(-1))
    stats = SpecStats()
    logits, hid = model.forward(prompt, st, hidden=True)
    tok = logits.argmax(-1)                                                    # [1]
    out = [tok]
    # the MTP block pairs each position's hidden state with the token that follows it
    d = pick(model.mtp(hid, torch.cat([prompt[:, 1:], tok[:, None]], dim=1), st))
    while len(out) < n:
        snap = _snapshot(st)
        logits, hid = model.forward(torch.stack([tok, d], dim=1), st, all_logits=True, hidden=True)
        stats.steps += 1
        stats.drafted += 1
        if bool((logits[:, 0].argmax(-1) == d).all()):
            stats.accepted += 1
            bonus = logits[:, 1].argmax(-1)
            out += [d, bonus]
            d, tok = pick(model.mtp(hid, torch.stack([d, bonus], dim=1), st)), bonus
        else:
            _restore(st, snap)
            logits, hid = model.forward(tok[:, None], st, hidden=True)
            tok = logits.argmax(-1)
            out.append(tok)
            d = pick(model.mtp(hid, tok[:, None], st))
    return torch.stack(out[:n], dim=1), stats
