"""The per-head pieces around Qwen3.5/3.6 attention: q/k RMSNorm and the sigmoid output gate.

Convention (transformers Qwen3NextRMSNorm, which Qwen3_5RMSNorm subclasses; vLLM maps it to GemmaRMSNorm):
y = x / sqrt(mean(x²) + eps) · (1 + w), computed in fp32, weights stored zero-centred. GGUF files converted by
llama.cpp have the +1 already added to the stored weight, so pass unit_offset=False for those.
q_proj emits, per head, [query (D) | gate (D)] side by side; the attention output is o · sigmoid(gate)."""

from __future__ import annotations

import torch

EPS = 1e-6


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = EPS, unit_offset: bool = True) -> torch.Tensor:
    """RMSNorm over the last dim of x [..., D] with weight [D]; fp32 math, result in x's dtype."""
    if weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"weight: expected shape [{x.shape[-1]}], got {tuple(weight.shape)}")
    if not unit_offset and x.dtype == torch.float32:   # the C path on the CPU (elementwise.py), else torch's
        from qlab.kernels.elementwise import rms_norm as fast

        return fast(x, weight, eps)
    w = weight.float() + 1.0 if unit_offset else weight.float()
    # torch's fused op (one dispatch, not five: the decode loop norms ~14 small vectors per layer)
    return torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), w, eps).to(x.dtype)


def qk_norm(q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
            eps: float = EPS, unit_offset: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head RMSNorm of q [..., HQ, D] and k [..., HKV, D] (weights [D], shared by all heads)."""
    return rms_norm(q, q_weight, eps, unit_offset), rms_norm(k, k_weight, eps, unit_offset)


def split_q_gate(q_proj_out: torch.Tensor, num_heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q_proj output [..., HQ·2·D] -> (q [..., HQ, D], gate [..., HQ, D]), views, no copy."""
    if q_proj_out.shape[-1] != num_heads * 2 * head_dim:
        raise ValueError(f"q_proj_out: last dim {q_proj_out.shape[-1]} != num_heads·2·head_dim = "
                         f"{num_heads * 2 * head_dim}")
    per_head = q_proj_out.unflatten(-1, (num_heads, 2 * head_dim))
    return per_head[..., :head_dim], per_head[..., head_dim:]


def output_gate(o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """o · sigmoid(gate), both [..., HQ, D] (or flattened alike); fp32 math, result in o's dtype."""
    if o.shape != gate.shape:
        raise ValueError(f"gate: shape {tuple(gate.shape)} != o shape {tuple(o.shape)}")
    return (o.float() * torch.sigmoid(gate.float())).to(o.dtype)


def prepare_qk(q_proj_out: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
               positions, *, num_heads: int, head_dim: int, eps: float = EPS, unit_offset: bool = True,
               rotary_dim: int = 64, theta: float = 1e7, impl: str = "torch"):
    """Everything between the q/k projections and attention, in model order: split q_proj's output into query
    and gate, RMSNorm q and k per head, RoPE both (cos/sin computed once for the two).
    q_proj_out [*P, HQ·2·D], k [*P, HKV, D], positions [*P] -> (q [*P, HQ, D], k [*P, HKV, D], gate).
    impl "triton" runs norm + rope as one kernel per tensor (triton_norm_rope.py; CUDA or TRITON_INTERPRET)."""
    from .rope import apply_rope, rope_cos_sin

    q, gate = split_q_gate(q_proj_out, num_heads, head_dim)
    cs = rope_cos_sin(positions, rotary_dim, theta)
    if impl == "triton":
        from .triton_norm_rope import norm_rope

        kw = dict(eps=eps, unit_offset=unit_offset, rotary_dim=rotary_dim, cos_sin=cs)
        return norm_rope(q, q_weight, **kw), norm_rope(k, k_weight, **kw), gate
    if impl != "torch":
        raise ValueError(f"impl: prepare_qk impls are 'torch' and 'triton', got {impl!r}")
    q, k = qk_norm(q, k, q_weight, k_weight, eps, unit_offset)
    return (apply_rope(q, None, rotary_dim=rotary_dim, cos_sin=cs),
            apply_rope(k, None, rotary_dim=rotary_dim, cos_sin=cs), gate)
