"""Model presets: a model's shapes as frozen dataclasses, layers described by type.

One accounting serves dense, MoE and hybrid models because each layer is a (mixer, ffn) pair: the mixer
is full attention, sliding-window attention or Gated DeltaNet; the FFN is dense or MoE. Parameter counts
come from the shapes (`qlab.models.tensors.param_count`), never from a nominal size. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ATTENTION, SLIDING, DELTANET = "attention", "sliding", "deltanet"


@dataclass(frozen=True)
class AttentionSpec:
    heads: int
    kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    output_bias: bool = False
    qk_norm: bool = False
    output_gate: bool = False        # q_proj also emits a per-head gate (Qwen3.5/3.6): q width doubles
    sinks: bool = False              # one learned logit per head (gpt-oss)
    sliding_window: int = 0          # window of the sliding layers (0: the model has none)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class DeltaNetSpec:
    key_heads: int
    value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int

    @property
    def key_dim(self) -> int:
        return self.key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels through the causal conv1d: q, k and v concatenated."""
        return 2 * self.key_dim + self.value_dim


@dataclass(frozen=True)
class FFNSpec:
    kind: str                              # "dense" | "moe"
    intermediate_size: int = 0             # dense SwiGLU/GeGLU width
    experts: int = 0
    active_experts: int = 0
    expert_intermediate_size: int = 0
    shared_experts: int = 0
    shared_intermediate_size: int = 0
    expert_bias: bool = False              # gpt-oss: biases on the expert projections and the router

    @property
    def is_moe(self) -> bool:
        return self.kind == "moe"


@dataclass(frozen=True)
class ModelPreset:
    id: str
    name: str
    hf_repo: str
    gguf_arch: str
    n_layers: int
    hidden_size: int
    vocab_size: int
    tied_embeddings: bool
    max_context: int
    layer_types: tuple[str, ...]           # per layer: "attention" | "sliding" | "deltanet"
    attention: AttentionSpec
    ffn: FFNSpec
    deltanet: DeltaNetSpec | None = None
    max_context_scaled: int | None = None  # with RoPE scaling (YaRN), None if the model has none
    norm_eps: float = 1e-6
    norms_per_layer: int = 2
    mtp_layers: int = 0
    params_published_b: float | None = None
    params_derived_b: float | None = None
    active_params_published_b: float | None = None
    native_dtype: str = "BF16"
    sources: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def count(self, kind: str) -> int:
        return sum(1 for t in self.layer_types if t == kind)

    @property
    def is_moe(self) -> bool:
        return self.ffn.is_moe
