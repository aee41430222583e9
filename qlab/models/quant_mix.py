"""Quant mixes: which storage type each tensor of a model gets under a quant id, and the file size.

GGUF ids follow llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp), re-stated here from reading it:
- only tensors whose name ends in "weight", with 2+ dims, that are not norms, routers (`ffn_gate_inp`) or
  `ssm_conv1d`, are quantized; the rest keep their converted type (F32);
- `output.weight` (or the token embedding when tied) gets Q6_K unless the file is Q8_0 (or MXFP4: Q8_0);
- attn_v-like tensors (`attn_v`, `attn_qkv`: Qwen3.5's DeltaNet in-projection counts) and `ffn_down`
  get more bits on "use_more_bits" layers for Q4_K_M/Q5_K_M (the first and last eighth and every third);
  Q3_K_M/Q2_K/Q4_K_S/IQ4 have their own bumps; 70B-type GQA models bump attn_v to Q5_K;
- a tensor whose row length is not a multiple of the block size falls back (Q4_K -> Q5_0, Q6_K -> Q8_0, ...).
Qwen3.5's other DeltaNet tensors (`attn_gate` (z), `ssm_alpha`, `ssm_beta`, `ssm_out`) take the default type.
Server formats (INT4-G128, FP8, NVFP4) quantize the linear layers and keep embeddings/lm_head in BF16.
Block sizes and bytes come from `qlab.formats` (written once). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from qlab.errors import unknown
from qlab.formats import FORMATS, get_format
from qlab.models.loader import get_model
from qlab.models.preset import ModelPreset
from qlab.models.tensors import Tensor, model_tensors, mtp_tensors

# quant id -> default tensor type (llama_ftype_get_default_type)
GGUF_QUANTS: dict[str, str] = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q6_K": "Q6_K",
    "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_0": "Q4_0", "Q4_1": "Q4_1",
    "IQ4_XS": "IQ4_XS", "IQ4_NL": "IQ4_NL", "Q3_K_M": "Q3_K", "Q3_K_S": "Q3_K", "Q2_K": "Q2_K", "MXFP4": "MXFP4",
}
SERVER_QUANTS = ("INT4-G128", "FP8", "NVFP4")
QUANT_IDS: tuple[str, ...] = tuple(GGUF_QUANTS) + SERVER_QUANTS
_UNQUANTIZED = ("F32", "F16", "BF16")
# tensor_type_fallback: what a K/IQ type becomes when the row length is not a multiple of its block
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}
GGUF_ALIGNMENT = 32


@dataclass(frozen=True)
class QTensor:
    name: str
    shape: tuple[int, ...]
    type: str
    nbytes: int
    layer: int = -1
    active_fraction: float = 1.0
    role: str = ""


@dataclass(frozen=True)
class QuantMix:
    model_id: str
    quant: str
    tensors: tuple[QTensor, ...]
    file_bytes: int            # tensor data + GGUF metadata estimate

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def bytes_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type] = out.get(t.type, 0) + t.nbytes
        return out


def normalize_quant(quant: str) -> str:
    q = quant.strip().upper()
    if q not in QUANT_IDS:
        raise unknown("quant", quant, QUANT_IDS)
    return q


def _nbytes(t: Tensor, typ: str) -> int:
    rows = t.n_elements // t.shape[0]
    return rows * get_format(typ).nbytes(t.shape[0])


def _quantizable(t: Tensor) -> bool:
    n = t.name
    return (n.endswith("weight") and t.ndim >= 2 and "_norm.weight" not in n and "ffn_gate_inp" not in n
            and "ssm_conv1d" not in n)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fallback(t: Tensor, typ: str) -> str:
    ncols = t.shape[0]
    if ncols % FORMATS[typ].block_size == 0:
        return typ
    typ = _FALLBACK.get(typ, "F16")
    return typ if ncols % FORMATS[typ].block_size == 0 else "F16"


class _State:
    """The counters llama.cpp keeps while it walks the tensors in load order."""

    def __init__(self, m: ModelPreset, tensors: list[Tensor], n_layer: int):
        self.n_attention_wv = sum(1 for t in tensors if _is_attn_v(t.name))
        self.n_layer = n_layer
        self.i_attention_wv = 0
        self.i_ffn_down = 0
        self.n_gqa = m.attention.heads // m.attention.kv_heads
        self.n_expert = m.ffn.experts if m.is_moe else 0
        self.is_70b = m.n_layers == 80 and m.attention.kv_heads < m.attention.heads


def _is_attn_v(name: str) -> bool:
    return "attn_v.weight" in name or "attn_qkv.weight" in name


def _gguf_type(m: ModelPreset, q: str, t: Tensor, s: _State) -> str:
    """llama_tensor_get_type for the ftypes qlab knows; `t` is quantizable."""
    default = GGUF_QUANTS[q]
    if default in _UNQUANTIZED:
        return default
    name, new = t.name, default
    is_output = name == "output.weight" or (m.tied_embeddings and name == "token_embd.weight")
    if is_output:
        if q == "MXFP4" or t.shape[0] % FORMATS[default].block_size:
            new = "Q8_0"
        elif default != "Q8_0":
            new = "Q6_K"
    elif q == "MXFP4":
        new = "MXFP4" if len(t.shape) == 3 and t.shape[2] > 1 else "Q8_0"
    elif name == "token_embd.weight":
        pass
    elif _is_attn_v(name):
        i, n = s.i_attention_wv, s.n_attention_wv
        if q == "Q2_K":
            new = "Q4_K" if s.n_gqa >= 4 else "Q3_K"
        elif q == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif q in ("IQ4_NL", "IQ4_XS") and s.n_gqa >= 4:
            new = "Q5_K"
        elif q in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = "Q6_K"
        elif q == "Q4_K_S" and i < 4:
            new = "Q5_K"
        if s.is_70b and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        if s.n_expert == 8:
            new = "Q8_0"
        s.i_attention_wv += 1
    elif "attn_k.weight" in name:
        if s.n_expert == 8:
            new = "Q8_0"
    elif "ffn_down" in name:
        if s.n_expert > 1:
            i, n = t.layer, s.n_layer   # MoE: the layer is parsed from the name
        else:
            i, n = s.i_ffn_down, s.n_layer
        if q == "Q2_K":
            new = "Q3_K"
        elif q == "Q3_K_M":
            new = "Q5_K" if i < n // 16 else "Q4_K"
        elif q == "Q4_K_M":
            if _use_more_bits(i, n):
                new = "Q6_K"
        elif i < n // 8 and q in ("IQ4_NL", "IQ4_XS"):
            new = "Q5_K"
        elif q == "Q5_K_M" and _use_more_bits(i, n):
            new = "Q6_K"
        elif q == "Q4_K_S" and i < n // 8:
            new = "Q5_K"
        s.i_ffn_down += 1
    elif "attn_output.weight" in name:
        if s.n_expert == 8:
            if q in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                new = "Q5_K"
        elif q == "Q2_K":
            new = "Q3_K"
        elif q == "Q3_K_M":
            new = "Q4_K"
    return _fallback(t, new)


def _server_type(q: str, t: Tensor) -> str:
    if t.role in ("embed", "output"):
        return "BF16"
    if q == "INT4-G128" and t.shape[0] % 128:
        return "BF16"
    return q


@lru_cache(maxsize=None)
def _quantize(m: ModelPreset, q: str, include_mtp: bool) -> QuantMix:
    tensors = model_tensors(m)
    n_layer = m.n_layers
    if include_mtp and m.mtp_layers:   # llama.cpp counts the MTP block in block_count, hence in n_layer
        tensors += mtp_tensors(m)
        n_layer += m.mtp_layers
    s = _State(m, tensors, n_layer)
    out = []
    for t in tensors:
        if not _quantizable(t):
            typ = "F32" if q in GGUF_QUANTS else ("BF16" if t.ndim >= 2 else "F32")
        elif q in GGUF_QUANTS:
            typ = _gguf_type(m, q, t, s)
        else:
            typ = _server_type(q, t)
        nbytes = _nbytes(t, typ)
        if typ == "FP8":  # one fp32 scale per output channel
            nbytes += 4 * (t.n_elements // t.shape[0])
        out.append(QTensor(t.name, t.shape, typ, nbytes, t.layer, t.active_fraction, t.role))
    data = sum(-(-t.nbytes // GGUF_ALIGNMENT) * GGUF_ALIGNMENT for t in out)
    # GGUF header: tokenizer (tokens + merges, ~2 strings of ~20 bytes per vocab entry) and tensor infos
    meta = 48 * m.vocab_size + 96 * len(out) if q in GGUF_QUANTS else 0
    return QuantMix(m.id, q, tuple(out), data + meta)


def quantize(model: str | ModelPreset, quant: str, include_mtp: bool = False) -> QuantMix:
    """Per-tensor types and file size of `model` at `quant`. The MTP layer is not part of published GGUFs
    (Qwen3.6-27B Q8_0: 28.6 GB matches the 64-layer text model), so it is left out unless `include_mtp`
    (qlab's own files with the MTP block: the block is walked as llama.cpp would walk it, as one more layer)."""
    m = get_model(model)
    return _quantize(m, normalize_quant(quant), include_mtp)


def kv_bytes_per_element(kv_dtype: str) -> float:
    """Bytes per cached K or V value for a KV-cache type (F16, BF16, F32, Q8_0, Q4_0, FP8, ...)."""
    fmt = get_format(kv_dtype)
    return fmt.block_bytes / fmt.block_size
