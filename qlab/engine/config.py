"""The shape of the model the decode loop runs: a frozen dataclass, one instance per preset, plus the two
derived shapes qlab needs — a slice of N consecutive layers, and a narrower copy for quick tests.

Torch-free, so the CLI and the memory accounting can import it cheaply. The shapes come from the `qlab.models`
preset (`from_preset`; Qwen3.6-27B = llama.cpp arch `qwen35`); RoPE, which presets do not describe, from
the field defaults (the model card's values: 64 of 256 dims, theta 1e7, M-RoPE sections [11, 11, 10]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from qlab.errors import QlabError


@dataclass(frozen=True)
class ModelConfig:
    name: str = "qwen3.6-27b"
    n_layers: int = 64              # layers in this (possibly sliced) model
    full_layers: int = 64           # layers of the whole model, for scaling a slice's timings
    hidden: int = 5120
    ffn: int = 17408                # SwiGLU intermediate size, every layer
    vocab: int = 248320
    rms_eps: float = 1e-6
    full_attn_interval: int = 4     # layer i is attention when (i + 1) % interval == 0
    # gated attention
    n_heads: int = 24
    n_kv_heads: int = 4
    head_dim: int = 256
    rope_dim: int = 64              # partial rotary: the first 64 of 256 dims (NEOX pairing)
    rope_theta: float = 1e7
    rope_sections: tuple[int, ...] = (11, 11, 10, 0)  # M-RoPE; text uses one position for all sections
    # Gated DeltaNet
    lin_k_heads: int = 16
    lin_v_heads: int = 48
    lin_k_dim: int = 128
    lin_v_dim: int = 128
    conv_kernel: int = 4
    max_context: int = 262144
    mtp_layers: int = 1

    def __post_init__(self):
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} must be a multiple of n_kv_heads {self.n_kv_heads}")
        if self.lin_v_heads % self.lin_k_heads:
            raise ValueError(f"lin_v_heads {self.lin_v_heads} must be a multiple of lin_k_heads {self.lin_k_heads}")

    # ---- derived shapes -------------------------------------------------------------------------------
    def is_attention(self, i: int) -> bool:
        return (i + 1) % self.full_attn_interval == 0

    @property
    def layer_types(self) -> tuple[str, ...]:
        return tuple("attention" if self.is_attention(i) else "deltanet" for i in range(self.n_layers))

    @property
    def n_attention_layers(self) -> int:
        return sum(self.is_attention(i) for i in range(self.n_layers))

    @property
    def n_deltanet_layers(self) -> int:
        return self.n_layers - self.n_attention_layers

    @property
    def attn_scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)  # 1/16 for head_dim 256

    @property
    def q_dim(self) -> int:            # query width (the q projection emits twice this: query + gate)
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def key_dim(self) -> int:          # DeltaNet q and k width
        return self.lin_k_heads * self.lin_k_dim

    @property
    def value_dim(self) -> int:        # DeltaNet v, z and output width
        return self.lin_v_heads * self.lin_v_dim

    @property
    def conv_dim(self) -> int:         # channels through the causal conv: q, k, v
        return 2 * self.key_dim + self.value_dim

    def kv_cache_bytes(self, context: int, bytes_per_value: int = 2) -> int:
        return self.n_attention_layers * 2 * self.kv_dim * context * bytes_per_value

    def state_bytes(self, conv_state_bytes: int = 4) -> int:
        """DeltaNet recurrent state (fp32) and conv state of one sequence (`qlab.models.memory.state_bytes`; the
        engine keeps the conv tail in its activation dtype, fp32 on CPU)."""
        from qlab.models.memory import state_bytes

        return int(state_bytes(self.preset(), conv_state_bytes))

    def preset(self):
        """This shape as a `qlab.models` ModelPreset (a slice or narrow copy included), so the tensor table, the
        quant mix and the memory accounting of `qlab.models` describe exactly the model the engine runs."""
        from qlab.models.preset import AttentionSpec, DeltaNetSpec, FFNSpec, ModelPreset

        return ModelPreset(
            id=self.name, name=self.name, hf_repo="", gguf_arch="qwen35", n_layers=self.n_layers,
            hidden_size=self.hidden, vocab_size=self.vocab, tied_embeddings=False, max_context=self.max_context,
            layer_types=self.layer_types, norm_eps=self.rms_eps, mtp_layers=self.mtp_layers,
            attention=AttentionSpec(heads=self.n_heads, kv_heads=self.n_kv_heads, head_dim=self.head_dim,
                                    qk_norm=True, output_gate=True),
            ffn=FFNSpec("dense", intermediate_size=self.ffn),
            deltanet=DeltaNetSpec(key_heads=self.lin_k_heads, value_heads=self.lin_v_heads,
                                  key_head_dim=self.lin_k_dim, value_head_dim=self.lin_v_dim,
                                  conv_kernel=self.conv_kernel))

    # ---- variants ---------------------------------------------------------------------------------------
    def sliced(self, layers: int | None) -> "ModelConfig":
        """The first `layers` layers (with embeddings and head); a multiple of the attention interval keeps
        the 3:1 DeltaNet/attention ratio, so a slice's per-layer times scale to the whole model."""
        if layers is None or layers == self.n_layers:
            return self
        if layers <= 0 or layers > self.n_layers:
            raise QlabError(f"--layers {layers}: expected 1..{self.n_layers}")
        if layers % self.full_attn_interval:
            raise QlabError(f"--layers {layers}: expected a multiple of {self.full_attn_interval} "
                            f"(keeps the 3:1 DeltaNet/attention pattern)")
        return replace(self, n_layers=layers)

    def width_scaled(self, factor: float, vocab: int | None = None) -> "ModelConfig":
        """Every width divided by `factor` (head dims and the layer pattern kept). Hidden and FFN widths are
        rounded to a multiple of 256, and the DeltaNet key-head count to one that makes the value width a
        multiple of 256, so every row is a whole number of K-quant super-blocks as in the full model and
        llama.cpp's quantizer picks the same types (no fallbacks the full model does not have). Head counts
        keep the GQA group (6) and the DeltaNet value/key head ratio (3)."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 1):
            raise QlabError(f"--width-scale {factor}: expected a finite number >= 1 (1 is the full width)")
        if vocab is not None and (isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1):
            raise QlabError(f"--vocab {vocab}: expected a positive whole number of tokens")

        def width(w: int) -> int:
            return max(256, 256 * round(w / factor / 256))

        kv = max(1, round(self.n_kv_heads / factor))
        group = self.n_heads // self.n_kv_heads
        ratio = self.lin_v_heads // self.lin_k_heads
        step = 256 // math.gcd(256, ratio * self.lin_v_dim)    # key heads per whole 256-wide value block
        lin_k = max(step, step * round(self.lin_k_heads / factor / step))
        return replace(self, hidden=width(self.hidden), ffn=width(self.ffn), n_kv_heads=kv, n_heads=kv * group,
                       lin_k_heads=lin_k, lin_v_heads=lin_k * ratio, vocab=vocab or self.vocab)


def from_preset(preset) -> ModelConfig:
    """A ModelConfig from a `qlab.models` ModelPreset of a qwen35-architecture (dense Qwen3.5/3.6) model.
    RoPE (64 of 256 dims, theta 1e7, sections [11, 11, 10]) is not in the preset's fields and comes from
    the defaults above (the model card's values)."""
    if preset.gguf_arch != "qwen35" or preset.deltanet is None or preset.is_moe:
        raise QlabError(f"model {preset.id!r} has architecture {preset.gguf_arch!r}; the decode loop runs the "
                        f"dense Qwen3.5/3.6 architecture (qwen35) only")
    attn = [i for i, t in enumerate(preset.layer_types) if t == "attention"]
    interval = attn[0] + 1 if attn else preset.n_layers + 1
    if any(t != ("attention" if (i + 1) % interval == 0 else "deltanet") for i, t in enumerate(preset.layer_types)):
        raise QlabError(f"model {preset.id!r}: layer pattern is not 'attention every {interval}th layer'")
    a, d = preset.attention, preset.deltanet
    return ModelConfig(
        name=preset.id, n_layers=preset.n_layers, full_layers=preset.n_layers, hidden=preset.hidden_size,
        ffn=preset.ffn.intermediate_size, vocab=preset.vocab_size, rms_eps=preset.norm_eps,
        full_attn_interval=interval, n_heads=a.heads, n_kv_heads=a.kv_heads, head_dim=a.head_dim,
        lin_k_heads=d.key_heads, lin_v_heads=d.value_heads, lin_k_dim=d.key_head_dim, lin_v_dim=d.value_head_dim,
        conv_kernel=d.conv_kernel, max_context=preset.max_context, mtp_layers=preset.mtp_layers)


def get_config(model: str) -> ModelConfig:
    """The engine's config for a model id: from its `qlab.models` preset (errors name the closest ids)."""
    from qlab.models import get_model

    return from_preset(get_model(model))


# The model this engine is built for, from its `qlab.models` preset (the one description of the model; the field
# defaults above only carry what a preset does not describe: RoPE, and the dims a test's narrow copy keeps).
QWEN36_27B = get_config("qwen3.6-27b")
