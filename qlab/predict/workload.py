"""What one decode step and one prefill move and compute, by kernel kind, from the per-op cost formulas in
`qlab/kernels/*/cost.py` (written once there). Torch-free.

Decode step (batch B, depth S = tokens already cached):
- "weights": every stored matrix read once per step — the embedding table only for the B rows looked up,
  MoE experts only for the experts the step touches (B tokens x k active of E: E·(1-(1-k/E)^B) distinct);
- "kv": K and V of the full-attention layers at depth S, sliding layers at min(S, window), per sequence;
- "state": the DeltaNet state read and written, and the conv1d tail, per sequence.
FLOPs: 2 per weight per token for the matmuls, attention 4·HQ·S·D per layer, the DeltaNet update 7·HV·K·V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from qlab.kernels.cost import OpCost
from qlab.models.loader import get_model
from qlab.models.preset import ATTENTION, DELTANET, SLIDING, ModelPreset
from qlab.models.quant_mix import kv_bytes_per_element, quantize
from qlab.predict._costs import attention_cost, deltanet_cost, matmul_cost

# ggml type -> weight-streaming family: dequantizing kernels differ in how close they get to bandwidth
TYPE_FAMILY = {
    "F32": "float", "F16": "float", "BF16": "float",
    "Q8_0": "q8_0",
    "Q4_0": "q4_0", "Q4_1": "q4_0", "Q5_0": "q4_0", "Q5_1": "q4_0", "IQ4_NL": "q4_0",
    "Q2_K": "kquant", "Q3_K": "kquant", "Q4_K": "kquant", "Q5_K": "kquant", "Q6_K": "kquant", "IQ4_XS": "kquant",
    "MXFP4": "mxfp4",
    "INT4-G128": "server", "FP8": "server", "NVFP4": "server",
}
# Kernel launches per layer relative to a standard attention + dense FFN layer (llama.cpp graph nodes);
# a MoE FFN adds the router, top-k and the expert gather (+0.5). A DeltaNet layer (conv, gates, norms, the
# recurrence, five projections) counts `deltanet_units` each: calibrated (efficiency.Efficiencies).
LAYER_UNITS = {ATTENTION: 1.0, SLIDING: 1.0, DELTANET: 1.5}
MOE_UNITS = 0.5


@dataclass(frozen=True)
class StepCost:
    """Bytes by kind (weights by family) and FLOPs of one decode step for `batch` sequences."""
    weight_bytes: dict[str, float]     # family -> bytes
    kv_bytes: float
    state_bytes: float
    flops: float
    layer_units: float                 # launch units of the non-DeltaNet layers (attention + MoE)
    weight_elems: dict[str, float] = field(default_factory=dict)   # family -> weights dequantized per step
    n_deltanet: int = 0                # DeltaNet layers: their launch units are a calibrated number each
    kv_quantized: bool = False         # the KV cache is a block-quantized type (Q8_0, Q4_0, ...)
    kv_f16_bytes: float = 0.0          # the same KV at 2 bytes per value: attention over a quantized cache
                                       # is dequant-bound, its time follows the values, not the bytes
    batch: int = 1
    output_bytes: float = 0.0          # the output (LM head) matrix: the MTP draft reads it again
    token_flops: float = 0.0           # matmul FLOPs of one token (2 per weight used)
    n_attention: int = 0               # attention layers (full + sliding)

    @property
    def total_bytes(self) -> float:
        return sum(self.weight_bytes.values()) + self.kv_bytes + self.state_bytes


@lru_cache(maxsize=256)
def _layers(model_id: str) -> dict[str, int]:
    """Layers of each kind, counted once per model (a scenarios file asks the same model thousands of times)."""
    m = get_model(model_id)
    return {k: m.count(k) for k in (ATTENTION, SLIDING, DELTANET)}


def _n(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _distinct_experts(E: int, k: int, B: int) -> float:
    return E * (1.0 - (1.0 - k / E) ** B)


@lru_cache(maxsize=4096)
def _weights_step(model_id: str, quant: str, batch: int) -> tuple[tuple[tuple[str, float], ...], float, float,
                                                                  tuple[tuple[str, float], ...], float]:
    """(family bytes, matmul FLOPs, layer units, family weights, output-matrix bytes) of one decode step."""
    m = get_model(model_id)
    mix = quantize(m, quant)
    groups: dict[tuple, int] = {}
    for t in mix.tensors:
        key = (t.role, t.type, t.shape, t.nbytes, t.active_fraction)
        groups[key] = groups.get(key, 0) + 1
    fam: dict[str, float] = {}
    elems: dict[str, float] = {}
    flops = 0.0
    out_bytes = 0.0
    for (role, typ, shape, nbytes, frac), n in groups.items():
        f = TYPE_FAMILY.get(typ, "float")
        if role == "embed":                       # a row lookup per token, not a matmul
            b, fl = nbytes / shape[1] * min(batch, shape[1]), 0.0
        elif role == "expert":                    # [K, N, E]: only the touched experts are read
            K, N, E = shape
            k = m.ffn.active_experts
            b = _distinct_experts(E, k, batch) * nbytes / E
            fl = matmul_cost.matmul(batch, N, K, typ).flops * k
        elif role in ("matmul", "output"):
            c = matmul_cost.matmul(batch, shape[1], shape[0], typ)
            b, fl = c.bytes, c.flops
        else:                                     # router, norms, biases, conv weights: small, read once
            b, fl = nbytes * frac, 0.0
        fam[f] = fam.get(f, 0.0) + n * b
        flops += n * fl
        if role == "output":
            out_bytes += n * b
        if role == "expert":   # weights a matmul dequantizes, once per step
            elems[f] = elems.get(f, 0.0) + n * _distinct_experts(shape[2], m.ffn.active_experts, batch) * _n(shape[:2])
        elif role in ("matmul", "output"):
            elems[f] = elems.get(f, 0.0) + n * _n(shape)
    units = sum(LAYER_UNITS[k] for k in m.layer_types if k != DELTANET) + (MOE_UNITS * m.n_layers if m.is_moe else 0.0)
    return tuple(sorted(fam.items())), flops, units, tuple(sorted(elems.items())), out_bytes


def kv_step(m: ModelPreset, context: int, batch: int, kv_dtype: str) -> OpCost:
    """Attention at depth `context` over every attention layer (sliding layers capped at their window)."""
    a = m.attention
    kvb = kv_bytes_per_element(kv_dtype)
    total = OpCost(0.0, 0.0)
    n_full, n_slide = _layers(m.id)[ATTENTION], _layers(m.id)[SLIDING]
    if n_full:
        total = total + attention_cost.decode(batch, a.heads, a.kv_heads, a.head_dim, context, kvb) * n_full
    if n_slide:
        s = min(context, a.sliding_window)
        total = total + attention_cost.decode(batch, a.heads, a.kv_heads, a.head_dim, s, kvb) * n_slide
    return total


def state_step(m: ModelPreset, batch: int) -> OpCost:
    d = m.deltanet
    n = _layers(m.id)[DELTANET]
    if d is None or n == 0:
        return OpCost(0.0, 0.0)
    rec = deltanet_cost.recurrent(batch, 1, d.key_heads, d.value_heads, d.key_head_dim, d.value_head_dim)
    conv = deltanet_cost.conv1d(batch, 1, d.conv_dim, d.conv_kernel)
    return (rec + conv) * n


def decode_step(model: str | ModelPreset, quant: str, context: int, batch: int = 1, kv_dtype: str = "F16") -> StepCost:
    """The step at depth `context`. Only the attention terms depend on it, and the per-op formulas are affine
    in the depth (full layers) and in min(depth, window) (sliding layers): the step is built from cached
    coefficients (measured from `_decode_step_direct` at four depths), so a scenarios file of 100k rows does
    not redo the per-layer sums for every row. tests/test_predict.py checks it against the direct sum."""
    m = get_model(model)
    base, full, slide, window = _step_coefficients(m.id, quant, batch, kv_dtype)
    c = context
    cs = min(c, window) if window else 0
    return StepCost(base.weight_bytes, base.kv_bytes + full[0] * c + slide[0] * cs, base.state_bytes,
                    base.flops + full[1] * c + slide[1] * cs, base.layer_units, base.weight_elems, base.n_deltanet,
                    base.kv_quantized, base.kv_f16_bytes + full[2] * c + slide[2] * cs, base.batch,
                    base.output_bytes, base.token_flops, base.n_attention)


@lru_cache(maxsize=4096)
def _step_coefficients(model_id: str, quant: str, batch: int, kv_dtype: str):
    """(step at depth 0, per-token slopes of (kv bytes, flops, F16 kv bytes) for full and sliding layers, window)."""
    m = get_model(model_id)
    window = m.attention.sliding_window if _layers(model_id)[SLIDING] and m.attention.sliding_window else 0

    def at(c: int) -> tuple[float, float, float]:
        st = _decode_step_direct(m, quant, c, batch, kv_dtype)
        return st.kv_bytes, st.flops, st.kv_f16_bytes

    base = _decode_step_direct(m, quant, 0, batch, kv_dtype)
    v0, v1 = at(0), at(1)
    if window:
        vw, vw1 = at(window), at(window + 1)
        full = tuple(b - a for a, b in zip(vw, vw1))
        slide = tuple((b - a) - f for a, b, f in zip(v0, v1, full))
    else:
        full, slide = tuple(b - a for a, b in zip(v0, v1)), (0.0, 0.0, 0.0)
    return base, full, slide, window


def _decode_step_direct(m: ModelPreset, quant: str, context: int, batch: int = 1, kv_dtype: str = "F16") -> StepCost:
    fam, wflops, units, elems, out_bytes = _weights_step(m.id, quant, batch)
    kv = kv_step(m, context, batch, kv_dtype)
    st = state_step(m, batch)
    kv_q = kv_dtype.upper() not in ("F16", "BF16", "F32")
    kv16 = kv_step(m, context, batch, "F16").bytes if kv_q else kv.bytes
    return StepCost(dict(fam), kv.bytes, st.bytes, wflops + kv.flops + st.flops, units, dict(elems),
                    _layers(m.id)[DELTANET], kv_q, kv16, batch, out_bytes, wflops / batch,
                    _layers(m.id)[ATTENTION] + _layers(m.id)[SLIDING])


def weight_bytes_total(model: str | ModelPreset, quant: str) -> float:
    """Bytes of weights one batch-1 step reads (all families)."""
    m = get_model(model)
    return sum(b for _, b in _weights_step(m.id, quant, 1)[0])


def prefill_flops(model: str | ModelPreset, quant: str, tokens: int) -> float:
    m = get_model(model)
    return _prefill_flops(m.id, quant, tokens)


@lru_cache(maxsize=8192)
def _prefill_flops(model_id: str, quant: str, tokens: int) -> float:
    """FLOPs to prefill a `tokens`-long prompt (one sequence): matmuls over every token, causal attention
    (quadratic in full layers, window-capped in sliding ones), the chunked DeltaNet."""
    m = get_model(model_id)
    if tokens <= 0:
        return 0.0
    wflops_1 = _weights_step(m.id, quant, 1)[1]
    total = wflops_1 * tokens
    a = m.attention
    n_full, n_slide = _layers(m.id)[ATTENTION], _layers(m.id)[SLIDING]
    if n_full:
        total += attention_cost.prefill(1, tokens, a.heads, a.kv_heads, a.head_dim).flops * n_full
    if n_slide:
        w = min(tokens, a.sliding_window)
        # each query sees at most `w` keys: the causal triangle up to w, then a band of width w
        full = attention_cost.prefill(1, w, a.heads, a.kv_heads, a.head_dim).flops
        band = 4 * a.heads * a.head_dim * w * max(0, tokens - w)
        total += (full + band) * n_slide
    d = m.deltanet
    if d is not None:
        total += deltanet_cost.chunk(1, tokens, d.key_heads, d.value_heads, d.key_head_dim,
                                     d.value_head_dim).flops * _layers(m.id)[DELTANET]
    return total
