"""The engine's view of the tensor table and quant mix of `qlab.models`: each tensor's GGUF name, its shape in
numpy/torch order [rows = outputs, cols = inputs] (the reverse of ggml's ne), how synthetic values are drawn,
and its storage format under a quant preset.

Names, shapes and formats are not written here: they come from `qlab.models.tensors` (the one tensor table)
and `qlab.models.quant_mix` (llama.cpp's per-tensor rules), applied to `ModelConfig.preset()` — so a synthetic
file has exactly the types and the size llama.cpp's quantizer gives the same model. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from qlab.engine.config import ModelConfig
from qlab.errors import QlabError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    kind: str          # "matrix" (quantized with the model), "embedding" (quantized, read by row), "small" (F32)
    init: str          # how synthetic values are drawn: "linear", "linear_out" (writes the residual stream),
                       # "norm", "norm_plain", "conv", "ssm_a", "dt", "embed"


# matrices that write the residual stream (drawn smaller, see weights._std)
_RESIDUAL_OUT = ("attn_output.weight", "ssm_out.weight", "ffn_down.weight")
_SMALL_INIT = {"ssm_conv1d.weight": "conv", "ssm_a": "ssm_a", "ssm_dt.bias": "dt", "ssm_norm.weight": "norm_plain"}


def _spec(t) -> TensorSpec:
    """A `qlab.models.tensors.Tensor` (ggml order) as the engine's TensorSpec (numpy order)."""
    shape = tuple(reversed(t.shape))
    leaf = t.name.split(".", 2)[-1] if t.name.startswith("blk.") else t.name
    if t.role == "embed":
        return TensorSpec(t.name, shape, "embedding", "embed")
    if t.role in ("matmul", "output"):
        return TensorSpec(t.name, shape, "matrix", "linear_out" if leaf in _RESIDUAL_OUT else "linear")
    return TensorSpec(t.name, shape, "small", _SMALL_INIT.get(leaf, "norm"))


@lru_cache(maxsize=32)
def _layers(cfg: ModelConfig) -> tuple[tuple[TensorSpec, ...], ...]:
    """Per block: its tensors in `qlab.models`' order; index -1 holds the non-block tensors."""
    from qlab.models.tensors import model_tensors

    blocks: list[list[TensorSpec]] = [[] for _ in range(cfg.n_layers + 1)]
    for t in model_tensors(cfg.preset()):
        blocks[t.layer].append(_spec(t))
    return tuple(tuple(b) for b in blocks)


def layer_specs(cfg: ModelConfig, i: int) -> list[TensorSpec]:
    """Tensors of block i."""
    return list(_layers(cfg)[i])


def global_specs(cfg: ModelConfig) -> list[TensorSpec]:
    """token_embd, output_norm, output (in that order)."""
    by_name = {s.name: s for s in _layers(cfg)[-1]}
    return [by_name["token_embd.weight"], by_name["output_norm.weight"], by_name["output.weight"]]


def mtp_specs(cfg: ModelConfig, block: int | None = None) -> list[TensorSpec]:
    """The MTP (next-token prediction) block, stored after the main layers as block `block` (default
    cfg.n_layers) under llama.cpp's `nextn` names (`qlab.models.tensors.mtp_tensors`): eh_proj is Hugging Face's
    `mtp.fc` [H, 2H] (input: [rmsnorm_e(embedding) | rmsnorm_h(hidden)]), enorm/hnorm its two pre-norms,
    shared_head_norm `mtp.norm`; the block itself is a full-attention decoder layer. Embedding and head are the
    main model's."""
    from qlab.models.tensors import mtp_tensors

    return [_spec(t) for t in mtp_tensors(cfg.preset(), cfg.n_layers if block is None else block)]


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


@lru_cache(maxsize=64)
def quant_formats(cfg: ModelConfig, quant: str, mtp: bool = False) -> dict[str, str]:
    """Tensor name -> storage format of every tensor of `cfg` (with its MTP block when `mtp`) under quant preset
    `quant` (Q4_K_M, Q8_0, F16, INT4-G128, ...): llama.cpp's per-tensor mix from `qlab.models.quant_mix`, e.g.
    Q4_K_M gives Q6_K to the head, to attn_v/attn_qkv and ffn_down on llama.cpp's use_more_bits layers."""
    from qlab.models.quant_mix import quantize

    mix = quantize(cfg.preset(), quant, include_mtp=mtp)
    return {t.name: t.type for t in mix.tensors}


def format_for(cfg: ModelConfig, quant: str, name: str) -> str:
    """The storage format of tensor `name` of `cfg` under quant preset `quant` (e.g. Q4_K_M -> Q4_K or Q6_K)."""
    formats = quant_formats(cfg, quant.upper())
    if name not in formats:   # an MTP tensor: the mix walks the MTP block only when asked to
        formats = quant_formats(cfg, quant.upper(), mtp=True)
    return formats[name]
