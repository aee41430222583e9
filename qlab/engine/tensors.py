"""Every tensor of a qwen35 model: its GGUF name, shape, and whether it is a matrix that gets quantized.

One table serves the three weight sources (synthetic, GGUF reader, GGUF writer), so names and shapes are written
once. Names and shapes follow llama.cpp's qwen35 loader (`src/models/qwen35.cpp`, `llama_model_qwen35::
load_arch_tensors`); shapes here are numpy/torch order [rows = outputs, cols = inputs], the reverse of ggml's ne.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from qlab.engine.config import ModelConfig
from qlab.errors import QlabError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    kind: str          # "matrix" (quantized with the model), "embedding" (quantized, read by row), "small" (F32)
    init: str          # how synthetic values are drawn: "linear", "linear_out" (writes the residual stream),
                       # "norm", "norm_plain", "conv", "ssm_a", "dt", "embed"


def layer_specs(cfg: ModelConfig, i: int, attention: bool | None = None) -> list[TensorSpec]:
    """Tensors of block i (an attention block when `attention`, by default as the layer pattern says)."""
    p = f"blk.{i}."
    H = cfg.hidden
    specs = [TensorSpec(p + "attn_norm.weight", (H,), "small", "norm"),
             TensorSpec(p + "post_attention_norm.weight", (H,), "small", "norm")]
    if cfg.is_attention(i) if attention is None else attention:
        specs += [
            TensorSpec(p + "attn_q.weight", (2 * cfg.q_dim, H), "matrix", "linear"),  # per head: query | gate
            TensorSpec(p + "attn_k.weight", (cfg.kv_dim, H), "matrix", "linear"),
            TensorSpec(p + "attn_v.weight", (cfg.kv_dim, H), "matrix", "linear"),
            TensorSpec(p + "attn_output.weight", (H, cfg.q_dim), "matrix", "linear_out"),
            TensorSpec(p + "attn_q_norm.weight", (cfg.head_dim,), "small", "norm"),
            TensorSpec(p + "attn_k_norm.weight", (cfg.head_dim,), "small", "norm"),
        ]
    else:
        HV = cfg.lin_v_heads
        specs += [
            TensorSpec(p + "attn_qkv.weight", (cfg.conv_dim, H), "matrix", "linear"),   # q | k | v channels
            TensorSpec(p + "attn_gate.weight", (cfg.value_dim, H), "matrix", "linear"),  # z
            TensorSpec(p + "ssm_beta.weight", (HV, H), "matrix", "linear"),
            TensorSpec(p + "ssm_alpha.weight", (HV, H), "matrix", "linear"),
            TensorSpec(p + "ssm_out.weight", (H, cfg.value_dim), "matrix", "linear_out"),
            TensorSpec(p + "ssm_conv1d.weight", (cfg.conv_dim, cfg.conv_kernel), "small", "conv"),
            TensorSpec(p + "ssm_dt.bias", (HV,), "small", "dt"),
            TensorSpec(p + "ssm_a", (HV,), "small", "ssm_a"),                           # = -exp(A_log)
            TensorSpec(p + "ssm_norm.weight", (cfg.lin_v_dim,), "small", "norm_plain"),
        ]
    specs += [
        TensorSpec(p + "ffn_gate.weight", (cfg.ffn, H), "matrix", "linear"),
        TensorSpec(p + "ffn_up.weight", (cfg.ffn, H), "matrix", "linear"),
        TensorSpec(p + "ffn_down.weight", (H, cfg.ffn), "matrix", "linear_out"),
    ]
    return specs


def global_specs(cfg: ModelConfig) -> list[TensorSpec]:
    return [TensorSpec("token_embd.weight", (cfg.vocab, cfg.hidden), "embedding", "embed"),
            TensorSpec("output_norm.weight", (cfg.hidden,), "small", "norm"),
            TensorSpec("output.weight", (cfg.vocab, cfg.hidden), "matrix", "linear")]


def mtp_specs(cfg: ModelConfig, block: int | None = None) -> list[TensorSpec]:
    """The MTP (next-token prediction) block, stored after the main layers as block `block` (default
    cfg.n_layers) under llama.cpp's `nextn` names (as for GLM-4.5's MTP layer): eh_proj is Hugging Face's
    `mtp.fc` [H, 2H] (input: [rmsnorm_e(embedding) | rmsnorm_h(hidden)]), enorm/hnorm its two pre-norms,
    shared_head_norm `mtp.norm`; the block itself is a full-attention decoder layer. Embedding and head are the
    main model's."""
    i = cfg.n_layers if block is None else block
    p, H = f"blk.{i}.nextn.", cfg.hidden
    return [TensorSpec(p + "eh_proj.weight", (H, 2 * H), "matrix", "linear"),
            TensorSpec(p + "enorm.weight", (H,), "small", "norm"),
            TensorSpec(p + "hnorm.weight", (H,), "small", "norm"),
            TensorSpec(p + "shared_head_norm.weight", (H,), "small", "norm")] + layer_specs(cfg, i, attention=True)


def model_specs(cfg: ModelConfig, mtp: bool = False) -> list[TensorSpec]:
    """All tensors in GGUF file order: embeddings, layers, (the MTP block,) then output norm and head (as
    convert_hf_to_gguf). The MTP block is opt-in: published GGUFs and llama.cpp's qwen35 loader leave it out."""
    g = global_specs(cfg)
    out = [g[0]]
    for i in range(cfg.n_layers):
        out += layer_specs(cfg, i)
    if mtp:
        if not cfg.mtp_layers:
            raise QlabError(f"{cfg.name}: the model has no MTP layer")
        out += mtp_specs(cfg)
    return out + g[1:]


# Weight formats per quant preset: (default format, {name fragment: format}). llama.cpp's *_M mixes give some
# tensors more bits (attn_v, ffn_down, output); this mirrors that coarsely for synthetic weights. A GGUF read
# from disk keeps whatever types its file holds.
QUANT_MIX: dict[str, tuple[str, dict[str, str]]] = {
    "F32": ("F32", {}), "F16": ("F16", {}), "BF16": ("BF16", {}),
    "Q8_0": ("Q8_0", {}), "Q4_0": ("Q4_0", {}),
    "Q6_K": ("Q6_K", {}), "Q5_K_S": ("Q5_K", {}), "Q4_K_S": ("Q4_K", {}), "Q3_K_S": ("Q3_K", {}),
    "Q5_K_M": ("Q5_K", {"attn_v": "Q6_K", "ffn_down": "Q6_K", "output.weight": "Q6_K"}),
    "Q4_K_M": ("Q4_K", {"attn_v": "Q6_K", "ffn_down": "Q6_K", "output.weight": "Q6_K"}),
    "Q3_K_M": ("Q3_K", {"attn_v": "Q5_K", "ffn_down": "Q4_K", "output.weight": "Q6_K"}),
    "Q2_K": ("Q2_K", {"output.weight": "Q6_K"}),
    "IQ4_XS": ("IQ4_XS", {"output.weight": "Q6_K"}),
    "INT4-G128": ("INT4-G128", {}), "FP8": ("FP8", {}),
}


def format_for(quant: str, name: str) -> str:
    """The storage format of tensor `name` under quant preset `quant` (e.g. Q4_K_M -> Q4_K or Q6_K)."""
    from qlab.errors import unknown

    mix = QUANT_MIX.get(quant.upper())
    if mix is None:
        raise unknown("quant", quant, QUANT_MIX)
    default, overrides = mix
    for frag, fmt in overrides.items():
        if frag in name:
            return fmt
    return default
