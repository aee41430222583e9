"""predict(): decode tok/s at a depth, prefill tok/s, TTFT and memory for one scenario (DESIGN.md contract).

Decode step time (batch B):
    t_mem  = Σ_family weight_bytes·factor(family) / (BW·e_weights) + kv_bytes / (BW·e_kv) + state_bytes / (BW·e_weights)
           + Σ_family weights_dequantized·ops(family) / FP32 rate
    t_comp = FLOPs / (peak·e_compute)
    t_step = max(t_mem, t_comp) + layer_units · t_layer
decode_tok_s = B / t_step (per sequence at B = 1, total for B > 1). Prefill is compute-bound:
t_prefill(N) = prefill_FLOPs(N) / (peak·e_prefill) + weights read once per 512-token micro-batch.
"""

from __future__ import annotations

from qlab.errors import QlabError
from qlab.models.loader import get_model
from qlab.models.memory import KV_DTYPES, fits, memory
from qlab.models.quant_mix import normalize_quant
from qlab.predict.efficiency import Efficiencies, device_class, efficiencies_for, efficiencies_from_profile
from qlab.predict.workload import decode_step, prefill_flops, weight_bytes_total

PREFILL_UBATCH = 512
# ids that name a device family rather than one hwdb id (the published tables use them): the variant meant
HW_ALIASES = {"a100-80gb": "a100-80gb-pcie"}        # XiongjieDai lists "A100 PCIe 80GB"


_DEVICES: dict[str, object] = {}


def _measured_device(dev, profile: dict | None):
    """With a profile of this very device whose specs were measured (the host CPU, whose hwdb figures are
    estimates), predict from the measured specs: the profile's efficiencies are relative to them."""
    rec = profile.get("device") if isinstance(profile, dict) else None
    if not isinstance(rec, dict) or rec.get("id") != dev.id or not (rec.get("details") or {}).get("measured_specs"):
        return dev
    import dataclasses

    specs = rec.get("specs") or {}
    measured = {k: float(specs[k]) for k in rec["details"]["measured_specs"]
                if isinstance(specs.get(k), (int, float)) and specs[k] > 0}
    return dataclasses.replace(dev, **measured) if measured else dev


def _device(hw):
    """Device lookup, memoized per name within the process (a scenarios file repeats the same few)."""
    if not isinstance(hw, str):
        return hw
    dev = _DEVICES.get(hw)
    if dev is None:
        from qlab.hwdb import get_device

        try:
            dev = get_device(hw)
        except QlabError:
            if hw.strip().lower() not in HW_ALIASES:   # a family id the published tables use, e.g. a100-80gb
                raise
            dev = get_device(HW_ALIASES[hw.strip().lower()])
        _DEVICES[hw] = dev
    return dev


def _peak_flops(dev) -> float:
    tf = dev.peak_tflops
    if not tf:
        raise QlabError(f"device {dev.id}: no FLOP rate in the hwdb (fp16/bf16/fp32 TFLOPS); cannot predict compute")
    return tf * 1e12


def step_parts(step, dev, eff: Efficiencies) -> dict[str, float]:
    """Seconds of one decode step by term: weights stream, dequant ALU, KV read, state, compute, per-layer."""
    bw = dev.mem_bandwidth_gbs * 1e9
    alu = (dev.fp32_tflops or dev.peak_tflops or 1.0) * 1e12
    kv = step.kv_f16_bytes * eff.kv_quant_factor if step.kv_quantized else step.kv_bytes
    units = step.layer_units + step.n_deltanet * eff.deltanet_units
    return {"weights_s": sum(b * eff.family(f) for f, b in step.weight_bytes.items()) / (bw * eff.weights),
            "dequant_s": sum(n * eff.dequant_ops.get(f, 0.0) for f, n in step.weight_elems.items()) / alu,
            "kv_s": kv / (bw * eff.kv), "state_s": step.state_bytes / (bw * eff.weights),
            "compute_s": step.flops / (_peak_flops(dev) * eff.compute), "layer_overhead_s": units * eff.layer_overhead_s}


def breakdown(hw, model: str, quant: str, context: int, batch: int = 1, kv_dtype: str = "F16",
              profile: dict | None = None) -> dict[str, float]:
    """Where one decode step's time goes (seconds by term, as step_time adds them): for reports."""
    dev = _measured_device(_device(hw), profile)
    m = get_model(model)
    q, kv, _ = _check(m, quant, context, batch, kv_dtype)
    eff = efficiencies_from_profile(profile, dev) if profile is not None else efficiencies_for(dev)
    return step_parts(decode_step(m, q, _as_int(context), _as_int(batch), kv), dev, eff)


def step_time(step, dev, eff: Efficiencies) -> tuple[float, str]:
    """Seconds for one decode step and which side bounds it."""
    p = step_parts(step, dev, eff)
    t_mem = p["weights_s"] + p["dequant_s"] + p["kv_s"] + p["state_s"]
    bound = "memory" if t_mem >= p["compute_s"] else "compute"
    return max(t_mem, p["compute_s"]) + p["layer_overhead_s"], bound


def prefill_time(model, quant: str, tokens: int, dev, eff: Efficiencies) -> float:
    if tokens <= 0:
        return 0.0
    flops = prefill_flops(model, quant, tokens)
    n_ubatch = -(-tokens // PREFILL_UBATCH)
    t_weights = n_ubatch * weight_bytes_total(model, quant) / (dev.mem_bandwidth_gbs * 1e9 * eff.weights)
    return flops / (_peak_flops(dev) * eff.prefill) + t_weights


def _as_int(v) -> int | None:
    """Integers, numpy integers and whole floats are accepted; anything else is None."""
    import numbers

    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _check(m, quant: str, context: int, batch: int, kv_dtype: str) -> tuple[str, str, list[str]]:
    q = normalize_quant(quant)
    kv = kv_dtype.strip().upper()
    if kv not in KV_DTYPES:
        from qlab.errors import unknown

        raise unknown("KV dtype", kv_dtype, KV_DTYPES)
    if _as_int(context) is None or context < 0:
        raise QlabError(f"context: expected an integer >= 0 (tokens already in the cache), got {context!r}")
    if _as_int(batch) is None or batch < 1:
        raise QlabError(f"batch: expected an integer >= 1, got {batch!r}")
    warnings = []
    if context > m.max_context:
        if m.max_context_scaled and context <= m.max_context_scaled:
            warnings.append(f"context {context} is beyond {m.id}'s native {m.max_context}: needs RoPE scaling "
                            f"(YaRN) up to {m.max_context_scaled}")
        else:
            limit = m.max_context_scaled or m.max_context
            raise QlabError(f"context {context} is beyond {m.id}'s maximum {limit}"
                            + (" (with YaRN)" if m.max_context_scaled else ""))
    return q, kv, warnings


def predict(hw, model: str, quant: str, context: int, batch: int = 1, kv_dtype: str = "F16",
            profile: dict | None = None) -> dict:
    """One scenario -> DESIGN.md's `qlab predict --json` object (plus "warnings" when the context needs YaRN)."""
    dev = _measured_device(_device(hw), profile)
    m = get_model(model)
    q, kv, warnings = _check(m, quant, context, batch, kv_dtype)
    context, batch = _as_int(context), _as_int(batch)
    eff = efficiencies_from_profile(profile, dev) if profile is not None else efficiencies_for(dev)
    step = decode_step(m, q, context, batch, kv)
    t_step, bound = step_time(step, dev, eff)
    t_first = t_step if batch == 1 else decode_step_time_1(m, q, context, kv, dev, eff)
    n_prefill = max(context, PREFILL_UBATCH)
    t_pp = prefill_time(m, q, n_prefill, dev, eff)
    ttft = (prefill_time(m, q, context, dev, eff) if context else 0.0) + t_first
    runtime = "cpu" if device_class(dev) == "cpu" else (dev.vendor or "nvidia").lower()
    mem = memory(m, q, context, batch, kv, runtime=runtime)
    hw_id = f"{dev.id}@{dev.memory_gb:g}" if isinstance(hw, str) and "@" in hw else dev.id  # keep the memory option
    out = {"hw": hw_id, "model": m.id, "quant": q, "context": context, "batch": batch,
           "decode_tok_s": round(batch / t_step, 3), "prefill_tok_s": round(n_prefill / t_pp, 3),
           "ttft_s": round(ttft, 4), "memory": mem.as_contract(), "fits": fits(mem, dev), "bound": bound,
           "basis": eff.source}
    if warnings:
        out["warnings"] = warnings
    return out


def decode_step_time_1(m, q: str, context: int, kv: str, dev, eff: Efficiencies) -> float:
    """The first generated token after the prompt: one batch-1 step at depth `context`."""
    return step_time(decode_step(m, q, context, 1, kv), dev, eff)[0]


def predict_many(scenarios) -> list[dict]:
    """Each scenario is a dict of predict()'s keyword arguments (hw, model, quant, context, [batch, kv_dtype,
    profile]) or a tuple in predict()'s argument order."""
    return [predict(**s) if isinstance(s, dict) else predict(*s) for s in scenarios]
