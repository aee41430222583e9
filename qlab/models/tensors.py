"""The tensor list of a model, with llama.cpp's GGUF names and shapes (ne0 = input width first).

Both the exact parameter count and the per-tensor quant choice walk this list, so a shape is written
once. Names follow llama.cpp (`token_embd`, `blk.N.attn_q`, `blk.N.ssm_out`, `blk.N.ffn_down_exps`, ...)
because llama.cpp's quant rules match on them. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qlab.models.preset import ATTENTION, DELTANET, ModelPreset


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]      # ggml order: shape[0] is the row length (input features)
    layer: int = -1             # -1: not in a block
    active_fraction: float = 1.0  # share read per decoded token (MoE experts: active / total)
    role: str = ""              # "embed" | "output" | "matmul" | "expert" | "norm" | "small"

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return sum(1 for d in self.shape if d > 1) if self.n_elements > 1 else 1


def _attention(m: ModelPreset, i: int) -> list[Tensor]:
    a, H = m.attention, m.hidden_size
    q_out = a.q_dim * (2 if a.output_gate else 1)
    p = f"blk.{i}."
    ts = [Tensor(p + "attn_q.weight", (H, q_out), i, role="matmul"),
          Tensor(p + "attn_k.weight", (H, a.kv_dim), i, role="matmul"),
          Tensor(p + "attn_v.weight", (H, a.kv_dim), i, role="matmul"),
          Tensor(p + "attn_output.weight", (a.q_dim, H), i, role="matmul")]
    if a.qkv_bias:
        ts += [Tensor(p + "attn_q.bias", (q_out,), i, role="norm"), Tensor(p + "attn_k.bias", (a.kv_dim,), i, role="norm"),
               Tensor(p + "attn_v.bias", (a.kv_dim,), i, role="norm")]
    if a.output_bias:
        ts.append(Tensor(p + "attn_output.bias", (H,), i, role="norm"))
    if a.qk_norm:
        ts += [Tensor(p + "attn_q_norm.weight", (a.head_dim,), i, role="norm"),
               Tensor(p + "attn_k_norm.weight", (a.head_dim,), i, role="norm")]
    if a.sinks:
        ts.append(Tensor(p + "attn_sinks.weight", (a.heads,), i, role="norm"))
    return ts


def _deltanet(m: ModelPreset, i: int) -> list[Tensor]:
    d, H = m.deltanet, m.hidden_size
    assert d is not None
    p = f"blk.{i}."
    return [Tensor(p + "attn_qkv.weight", (H, d.conv_dim), i, role="matmul"),
            Tensor(p + "attn_gate.weight", (H, d.value_dim), i, role="matmul"),        # z
            Tensor(p + "ssm_beta.weight", (H, d.value_heads), i, role="matmul"),       # b
            Tensor(p + "ssm_alpha.weight", (H, d.value_heads), i, role="matmul"),      # a
            Tensor(p + "ssm_conv1d.weight", (d.conv_kernel, d.conv_dim), i, role="small"),
            Tensor(p + "ssm_a", (d.value_heads,), i, role="norm"),                     # A_log
            Tensor(p + "ssm_dt.bias", (d.value_heads,), i, role="norm"),
            Tensor(p + "ssm_norm.weight", (d.value_head_dim,), i, role="norm"),
            Tensor(p + "ssm_out.weight", (d.value_dim, H), i, role="matmul")]


def _ffn(m: ModelPreset, i: int) -> list[Tensor]:
    f, H = m.ffn, m.hidden_size
    p = f"blk.{i}."
    if not f.is_moe:
        I = f.intermediate_size
        return [Tensor(p + "ffn_gate.weight", (H, I), i, role="matmul"),
                Tensor(p + "ffn_up.weight", (H, I), i, role="matmul"),
                Tensor(p + "ffn_down.weight", (I, H), i, role="matmul")]
    E, I = f.experts, f.expert_intermediate_size
    frac = f.active_experts / E
    ts = [Tensor(p + "ffn_gate_inp.weight", (H, E), i, role="small"),
          Tensor(p + "ffn_gate_exps.weight", (H, I, E), i, frac, role="expert"),
          Tensor(p + "ffn_up_exps.weight", (H, I, E), i, frac, role="expert"),
          Tensor(p + "ffn_down_exps.weight", (I, H, E), i, frac, role="expert")]
    if f.expert_bias:
        ts += [Tensor(p + "ffn_gate_inp.bias", (E,), i, role="norm"),
               Tensor(p + "ffn_gate_exps.bias", (I, E), i, frac, role="small"),
               Tensor(p + "ffn_up_exps.bias", (I, E), i, frac, role="small"),
               Tensor(p + "ffn_down_exps.bias", (H, E), i, frac, role="small")]
    if f.shared_experts:
        S = f.shared_intermediate_size * f.shared_experts
        ts += [Tensor(p + "ffn_gate_inp_shexp.weight", (H,), i, role="norm"),  # sigmoid gate of the shared expert
               Tensor(p + "ffn_gate_shexp.weight", (H, S), i, role="matmul"),
               Tensor(p + "ffn_up_shexp.weight", (H, S), i, role="matmul"),
               Tensor(p + "ffn_down_shexp.weight", (S, H), i, role="matmul")]
    return ts


def _block(m: ModelPreset, i: int, kind: str) -> list[Tensor]:
    """Tensors of block i as a layer of `kind`, sorted by name (llama.cpp's load order within a block)."""
    norm_names = ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"][: m.norms_per_layer]
    layer = [Tensor(f"blk.{i}.{n}.weight", (m.hidden_size,), i, role="norm") for n in norm_names]
    layer += _deltanet(m, i) if kind == DELTANET else _attention(m, i)
    layer += _ffn(m, i)
    return sorted(layer, key=lambda t: t.name)


def model_tensors(m: ModelPreset) -> list[Tensor]:
    """Every tensor of the text model in llama.cpp's load order (non-block first, then by layer, then name)."""
    H, V = m.hidden_size, m.vocab_size
    head = [Tensor("token_embd.weight", (H, V), role="embed"), Tensor("output_norm.weight", (H,), role="norm")]
    if not m.tied_embeddings:
        head.append(Tensor("output.weight", (H, V), role="output"))
    ts = sorted(head, key=lambda t: t.name)
    for i, kind in enumerate(m.layer_types):
        ts += _block(m, i, kind)
    return ts


def mtp_tensors(m: ModelPreset, block: int | None = None) -> list[Tensor]:
    """The MTP (multi-token prediction) block of a model with `mtp_layers`, stored after the main layers as block
    `block` (default n_layers) under llama.cpp's `nextn` names: `eh_proj` (Hugging Face's `mtp.fc`, [2H -> H]),
    its two input norms and the shared head norm, then one full-attention decoder layer. Published GGUFs leave
    it out; qlab's speculative decoding reads it."""
    i = m.n_layers if block is None else block
    p, H = f"blk.{i}.nextn.", m.hidden_size
    ts = [Tensor(p + "eh_proj.weight", (2 * H, H), i, role="matmul")]
    ts += [Tensor(p + f"{n}.weight", (H,), i, role="norm") for n in ("enorm", "hnorm", "shared_head_norm")]
    return sorted(ts + _block(m, i, ATTENTION), key=lambda t: t.name)


def param_count(m: ModelPreset) -> int:
    """Exact parameter count of the text model (no vision tower, no MTP layer), from the shapes."""
    return sum(t.n_elements for t in model_tensors(m))


def active_param_count(m: ModelPreset) -> int:
    """Parameters one decoded token touches: active experts only; the embedding table counts in full,
    as published counts do (the predictor reads only one of its rows)."""
    return round(sum(t.n_elements * t.active_fraction for t in model_tensors(m)))
