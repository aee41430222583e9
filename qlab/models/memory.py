"""Memory accounting per (model, quant, context, batch, KV dtype): weights, KV cache, recurrent state,
activations/workspace and runtime overhead, and whether it fits a device. GB = 10^9 bytes. Torch-free.

- KV cache: full-attention layers hold `context` tokens; sliding-window layers at most their window;
  DeltaNet layers none. Per token and layer: 2 (K, V) x kv_heads x head_dim x bytes(kv_dtype).
- DeltaNet state per sequence and layer: S [HV, K, V] in fp32 plus the conv1d tail ((kernel-1) x conv_dim,
  in the activation dtype, bf16 here as in transformers; llama.cpp keeps it in fp32: +2.8 MiB for 27B).
- Activations/workspace: llama.cpp's compute buffer for a 512-token micro-batch (logits row block, hidden,
  FFN intermediates) — what a prompt needs at its peak, not what one decoded token needs.
- Runtime overhead: CUDA/HIP context, cuBLAS/Metal workspaces, the allocator's slack: a constant per runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from qlab.models.loader import get_model
from qlab.models.preset import ATTENTION, DELTANET, SLIDING, ModelPreset
from qlab.models.quant_mix import kv_bytes_per_element, quantize

STATE_BYTES = 4          # DeltaNet recurrent state: fp32
CONV_STATE_BYTES = 2     # conv1d tail: activation dtype (bf16)
UBATCH = 512             # llama.cpp's default micro-batch: sizes the compute buffer
ACT_BYTES = 4            # llama.cpp keeps activations in fp32
# Runtime overhead by device vendor/kind, in GB (driver context + library workspaces + allocator slack).
RUNTIME_OVERHEAD_GB = {"nvidia": 0.55, "amd": 0.6, "intel": 0.5, "apple": 0.3, "cpu": 0.1}
KV_DTYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "FP8")


def kv_bytes_per_token(m: ModelPreset, context: int, kv_dtype: str = "F16") -> float:
    """Bytes of KV cache per sequence at `context` tokens, summed over layers (sliding layers capped)."""
    a = m.attention
    per_layer_token = 2 * a.kv_heads * a.head_dim * kv_bytes_per_element(kv_dtype)
    total = 0.0
    for kind in m.layer_types:
        if kind == ATTENTION:
            total += per_layer_token * context
        elif kind == SLIDING:
            total += per_layer_token * min(context, a.sliding_window)
    return total


def state_bytes(m: ModelPreset, conv_state_bytes: int = CONV_STATE_BYTES) -> float:
    """Recurrent state of one sequence: DeltaNet S (fp32) + conv tail, over the DeltaNet layers. The conv tail
    is kept in the activation dtype: `conv_state_bytes` 2 (bf16, the default here) or 4 (fp32: llama.cpp, and
    qlab's engine on CPU)."""
    d = m.deltanet
    if d is None:
        return 0.0
    per_layer = (d.value_heads * d.key_head_dim * d.value_head_dim * STATE_BYTES
                 + (d.conv_kernel - 1) * d.conv_dim * conv_state_bytes)
    return per_layer * m.count(DELTANET)


def activation_bytes(m: ModelPreset, batch: int = 1) -> float:
    """Peak compute buffer of a prompt micro-batch: logits block + hidden/attention/FFN intermediates."""
    widest = max(m.ffn.intermediate_size, m.ffn.expert_intermediate_size * max(1, m.ffn.active_experts))
    width = m.vocab_size + 4 * m.hidden_size + 2 * widest
    return UBATCH * width * ACT_BYTES


@dataclass(frozen=True)
class MemoryBreakdown:
    weights_gb: float
    kv_cache_gb: float
    state_gb: float
    activations_gb: float
    runtime_gb: float

    @property
    def overhead_gb(self) -> float:
        return self.activations_gb + self.runtime_gb

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.kv_cache_gb + self.state_gb + self.overhead_gb

    def as_contract(self) -> dict:
        """The `memory` object of the `qlab predict --json` contract (qlab/predict/README.md)."""
        return {"weights_gb": round(self.weights_gb, 4), "kv_cache_gb": round(self.kv_cache_gb, 4),
                "state_gb": round(self.state_gb, 4), "overhead_gb": round(self.overhead_gb, 4),
                "total_gb": round(self.total_gb, 4)}


def memory(model: str | ModelPreset, quant: str, context: int, batch: int = 1, kv_dtype: str = "F16",
           runtime: str = "nvidia") -> MemoryBreakdown:
    """Memory to serve `batch` sequences of `context` tokens. `runtime`: a key of RUNTIME_OVERHEAD_GB."""
    m = get_model(model)
    if context < 0 or batch < 1:
        raise ValueError(f"context must be >= 0 and batch >= 1, got context={context}, batch={batch}")
    weights = quantize(m, quant).file_bytes
    return MemoryBreakdown(
        weights_gb=weights / 1e9,
        kv_cache_gb=batch * kv_bytes_per_token(m, context, kv_dtype) / 1e9,
        state_gb=batch * state_bytes(m) / 1e9,
        activations_gb=activation_bytes(m, batch) / 1e9,
        runtime_gb=RUNTIME_OVERHEAD_GB.get(runtime, 0.5))


def fits(breakdown: MemoryBreakdown, device) -> bool:
    """Whether the total fits the memory the device lets a model use (Apple: the default GPU share)."""
    return breakdown.total_gb <= device.usable_memory_gb
