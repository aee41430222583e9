"""predict(): decode tok/s at a depth, prefill tok/s, TTFT and memory for one scenario (the `qlab predict --json` contract, README.md).

Decode step time (batch B):
    t_mem  = Σ_family weight_bytes·factor(family) / (BW·e_weights) + kv_bytes / (BW·e_kv) + state_bytes / (BW·e_weights)
           + Σ_family weights_dequantized·ops(family) / FP32 rate
    t_comp = FLOPs / (peak·e_compute)
    t_step = max(t_mem, t_comp) + layer_units · t_layer
decode_tok_s = B / t_step (per sequence at B = 1, total for B > 1). Prefill is compute-bound:
t_prefill(N) = prefill_FLOPs(N) / (peak·e_prefill) + weights read once per 512-token micro-batch.
"""

from __future__ import annotations

from functools import lru_cache

from qlab.errors import QlabError
from qlab.models.loader import get_model
from qlab.models.preset import SLIDING
from qlab.models.memory import KV_DTYPES, MemoryBreakdown, fits, memory
from qlab.models.quant_mix import normalize_quant
from qlab.predict.efficiency import Efficiencies, device_class, efficiencies_for, efficiencies_from_profile
from qlab.predict.workload import _prefill_flops, decode_step, prefill_flops, weight_bytes_total  # noqa: F401

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
    # dtypes the profile found no native instructions for have no peak (qlab/profile/README.md)
    measured.update({k: None for k in rec["details"].get("unsupported_specs") or ()
                     if k in ("bf16_tflops", "fp16_tflops")})
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


SMALL_BATCH = 8   # llama.cpp runs up to 8 tokens per matrix through its matvec kernels, more as a GEMM
# Unpacking quantized weights is integer work (shifts, masks, dp4a). The FP32 rate stands in for it, and the
# fitted ops per weight are relative to GeForce parts, whose INT32 rate is half their (dual-issue) FP32 rate;
# A100/H100/B200 run INT32 at their full FP32 rate, so per FP32 FLOP they unpack twice as fast.
INT_ALU_PER_FP32 = {"nvidia-datacenter": 2.0}


def alu_rate(dev) -> float:
    """Ops/s the dequantization ALU terms run at (FP32 rate, scaled by the INT32:FP32 ratio of the class)."""
    return (dev.fp32_tflops or dev.peak_tflops or 1.0) * 1e12 * INT_ALU_PER_FP32.get(device_class(dev), 1.0)


# llama.cpp on Metal does not amortize a small batch of K-quant rows: in sternryan's llama-batched-bench
# (github.com/sudoingX/qwen38-mtp PR 40, sweeps/apple-silicon.md; M4, b10450, Qwen3.8-27B Q3_K_XL) 8 rows cost
# 6.54x one row (an RTX 3090: 2.39x), and MTP there gains nothing (M4 1.0x, M3 Ultra Q6_K 1.06x). Its lead is
# ggml-metal's kernel choice (the mat-mat kernel only above 8 rows; the small-batch mat-vec takes K-quants from
# 4 rows only). So on Apple each extra row re-streams this share of the K-quant weights and their unpacking
# (published: 5.54 extra steps over 7 rows, over the K-quant share of the M4 step). Q8_0/Q4_0/F16 keep the ALU
# term: the M2 Ultra Q8_0 batch rows amortize (4 rows cost 1.41x one).
METAL_KQUANT_ROW_REREAD = 0.83


def token_alu_s(step, dev, eff: Efficiencies, rows: int | None = None) -> float:
    """Seconds one extra token adds to a small-batch step of `rows` tokens (default: the step's batch): its
    matmul FLOPs on the matvec kernels, which re-unpack the weights per token, at a fraction (`eff.token_alu`,
    fitted) of the ALU rate; on Apple, up to 8 rows (above that Metal's mat-mat kernel reads the weights once),
    at least the re-read of the K-quant weights (METAL_KQUANT_ROW_REREAD)."""
    t = step.token_flops / (alu_rate(dev) * eff.token_alu)
    rows = step.batch if rows is None else rows
    if device_class(dev) == "apple" and rows <= SMALL_BATCH and step.weight_bytes.get("kquant"):
        kq = (step.weight_bytes["kquant"] * eff.family("kquant") / (dev.mem_bandwidth_gbs * 1e9 * eff.weights)
              + step.weight_elems.get("kquant", 0.0) * eff.dequant_ops.get("kquant", 0.0) / alu_rate(dev))
        t = max(t, METAL_KQUANT_ROW_REREAD * kq)
    return t


def step_parts(step, dev, eff: Efficiencies) -> dict[str, float]:
    """Seconds of one decode step by term: weights stream, dequant ALU, KV read, state, the extra tokens of
    a small batch, compute, per-layer. Why Q8_0 can beat Q4_K_M: `dequant_s` is unpacking ALU work at the
    ALU rate (`alu_rate`), so a part with much bandwidth and little ALU pays more to unpack K-quants (~8 ops per
    weight, fitted) than it saves in bytes over Q8_0 (~2 ops per weight)."""
    bw = dev.mem_bandwidth_gbs * 1e9
    alu = alu_rate(dev)
    kv = step.kv_f16_bytes * eff.kv_quant_factor if step.kv_quantized else step.kv_bytes
    units = step.layer_units + step.n_deltanet * eff.deltanet_units
    extra = min(step.batch, SMALL_BATCH) - 1
    return {"weights_s": sum(b * eff.family(f) for f, b in step.weight_bytes.items()) / (bw * eff.weights),
            "dequant_s": sum(n * eff.dequant_ops.get(f, 0.0) for f, n in step.weight_elems.items()) / alu,
            "kv_s": kv / (bw * eff.kv), "state_s": step.state_bytes / (bw * eff.weights),
            "batch_alu_s": extra * token_alu_s(step, dev, eff) if extra > 0 else 0.0,
            "compute_s": step.flops / (_peak_flops(dev) * eff.compute), "layer_overhead_s": units * eff.layer_overhead_s}


def breakdown(hw, model: str, quant: str, context: int, batch: int = 1, kv_dtype: str = "F16",
              profile: dict | None = None, setup=None) -> dict[str, float]:
    """Where one decode step's time goes (seconds by term, as step_time adds them): for reports. With a
    `setup`, its terms are added (seconds; MTP's per-step token count and offload's layer count as values)."""
    if setup is not None and not setup.plain:
        r = predict(hw, model, quant, context, batch, kv_dtype, profile, setup=setup)
        return {k: v.get("s", v.get("value")) for k, v in r["terms"].items()}
    dev = _measured_device(_device(hw), profile)
    m = get_model(model)
    q, kv, _ = _check(m, quant, context, batch, kv_dtype)
    eff = efficiencies_from_profile(profile, dev) if profile is not None else efficiencies_for(dev)
    return step_parts(decode_step(m, q, _as_int(context), _as_int(batch), kv), dev, eff)


def step_time(step, dev, eff: Efficiencies) -> tuple[float, str]:
    """Seconds for one decode step and which side bounds it."""
    return time_of_parts(step_parts(step, dev, eff))


def time_of_parts(p: dict) -> tuple[float, str]:
    t_mem = p["weights_s"] + p["dequant_s"] + p["kv_s"] + p["state_s"] + p["batch_alu_s"]
    bound = "memory" if t_mem >= p["compute_s"] else "compute"
    return max(t_mem, p["compute_s"]) + p["layer_overhead_s"], bound


def prefill_time(model, quant: str, tokens: int, dev, eff: Efficiencies) -> float:
    if tokens <= 0:
        return 0.0
    mid = model if isinstance(model, str) else model.id
    flops = _prefill_flops(mid, quant, tokens)
    n_ubatch = -(-tokens // PREFILL_UBATCH)
    t_weights = n_ubatch * _weight_bytes(mid, quant) / (dev.mem_bandwidth_gbs * 1e9 * eff.weights)
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
            profile: dict | None = None, setup=None, concurrency: bool = False, terms: bool = False,
            setup_params: dict | None = None) -> dict:
    """One scenario -> the `qlab predict --json` object (plus "warnings" when the context needs YaRN).

    `setup` (a `qlab.predict.setups.Setup`: MTP, several GPUs, offload) adds "setup", "terms" (seconds per
    term with its basis) and "per_gpu_gb"; `concurrency` adds how many sequences fit at `context` and their
    speed; `terms` adds the per-term breakdown to a plain prediction. The contract's fields never change.
    `setup_params` replaces calibration.json's "setups" numbers (the calibration fits them with it)."""
    dev = _measured_device(_device(hw), profile)
    m = get_model(model)
    q, kv, warnings = _check(m, quant, context, batch, kv_dtype)
    context, batch = _as_int(context), _as_int(batch)
    eff = efficiencies_from_profile(profile, dev) if profile is not None else efficiencies_for(dev)
    if setup_params and "token_alu_eff" in setup_params:
        import dataclasses

        eff = dataclasses.replace(eff, token_alu=setup_params["token_alu_eff"])
    t_step, bound = time_of_parts(parts_at(dev, m, q, context, batch, kv, eff))
    t_first = t_step if batch == 1 else time_of_parts(parts_at(dev, m, q, context, 1, kv, eff))[0]
    n_prefill = max(context, PREFILL_UBATCH)
    t_pp = prefill_time(m, q, n_prefill, dev, eff)
    ttft = (prefill_time(m, q, context, dev, eff) if context else 0.0) + t_first
    mem = memory_at(m, q, context, batch, kv, _runtime(dev))
    hw_id = f"{dev.id}@{dev.memory_gb:g}" if isinstance(hw, str) and "@" in hw else dev.id  # keep the memory option
    out = {"hw": hw_id, "model": m.id, "quant": q, "context": context, "batch": batch,
           "decode_tok_s": round(batch / t_step, 3), "prefill_tok_s": round(n_prefill / t_pp, 3),
           "ttft_s": round(ttft, 4), "memory": mem.as_contract(), "fits": fits(mem, dev), "bound": bound,
           "basis": eff.source}
    if setup is not None or terms or concurrency:
        step = decode_step(m, q, context, batch, kv)
        _add_setup(out, setup, dev, m, q, context, batch, kv, eff, step, t_step, mem, profile, concurrency,
                   setup_params)
    if warnings:
        out["warnings"] = warnings
    return out


_PARTS: dict = {}


@lru_cache(maxsize=1024)
def _weight_bytes(model_id: str, quant: str) -> float:
    return weight_bytes_total(model_id, quant)


@lru_cache(maxsize=256)
def _runtime(dev) -> str:
    return "cpu" if device_class(dev) == "cpu" else (dev.vendor or "nvidia").lower()


def parts_at(dev, m, q: str, context: int, batch: int, kv: str, eff: Efficiencies) -> dict[str, float]:
    """`step_parts` of the step at `context`, from the parts at depth 0 and their per-token slopes (every term
    is affine in the KV bytes and FLOPs, which are affine in the depth and in min(depth, window)); cached per
    (device, model, quant, batch, KV dtype, efficiencies) for scenario files of many rows."""
    key = (id(dev), id(eff), m.id, q, batch, kv)
    hit = _PARTS.get(key)
    if hit is None or hit[0] is not dev or hit[1] is not eff:   # ids are only trusted with the objects alive
        from qlab.predict.workload import _step_coefficients

        window = _step_coefficients(m.id, q, batch, kv)[3]
        p0 = step_parts(decode_step(m, q, 0, batch, kv), dev, eff)
        p1 = step_parts(decode_step(m, q, 1, batch, kv), dev, eff)
        if window:
            pw, pw1 = (step_parts(decode_step(m, q, c, batch, kv), dev, eff) for c in (window, window + 1))
            full = {k: pw1[k] - pw[k] for k in p0}
            slide = {k: p1[k] - p0[k] - full[k] for k in p0}
        else:
            full, slide = {k: p1[k] - p0[k] for k in p0}, dict.fromkeys(p0, 0.0)
        if len(_PARTS) > 4096:
            _PARTS.clear()
        hit = _PARTS[key] = (dev, eff, p0, full, slide, window)
    _, _, p0, full, slide, window = hit
    cs = min(context, window) if window else 0
    return {k: p0[k] + full[k] * context + slide[k] * cs for k in p0}


def memory_at(m, q: str, context: int, batch: int, kv: str, runtime: str):
    """`qlab.models.memory.memory` at `context`: only the KV cache depends on it, affinely in the depth and in
    min(depth, window); built from the breakdown at depth 0 and cached per-token slopes."""
    base, full, slide, window = _memory_coefficients(m.id, q, batch, kv, runtime)
    c = context
    return MemoryBreakdown(base.weights_gb, base.kv_cache_gb + full * c + slide * (min(c, window) if window else 0),
                           base.state_gb, base.activations_gb, base.runtime_gb)


@lru_cache(maxsize=4096)
def _memory_coefficients(model_id: str, q: str, batch: int, kv: str, runtime: str):
    m = get_model(model_id)
    window = m.attention.sliding_window if SLIDING in m.layer_types and m.attention.sliding_window else 0

    def at(c: int) -> float:
        return memory(m, q, c, batch, kv, runtime=runtime).kv_cache_gb

    base = memory(m, q, 0, batch, kv, runtime=runtime)
    if window:
        full = at(window + 1) - at(window)
        slide = at(1) - base.kv_cache_gb - full
    else:
        full, slide = at(1) - base.kv_cache_gb, 0.0
    return base, full, slide, window


def term_bases(eff: Efficiencies, profile: dict | None) -> dict[str, str]:
    """The basis of each step_parts term: the device's efficiencies, or an assumption where nothing fitted it."""
    from qlab.predict.efficiency import load_calibration

    measured = ((profile or {}).get("calibration") or {}).get("efficiencies") or {} if isinstance(profile, dict) else {}
    fitted_alu = "token_alu_eff" in (load_calibration().get("setups") or {})
    return {"weights_s": eff.source, "dequant_s": eff.source, "kv_s": eff.source, "state_s": eff.source,
            "batch_alu_s": "fitted" if fitted_alu else "assumed",
            "compute_s": "measured" if "compute" in measured else "assumed", "layer_overhead_s": eff.source}


def _add_setup(out: dict, setup, dev, m, q, context, batch, kv, eff, step, t_step, mem, profile, concurrency,
               setup_params=None) -> None:
    from qlab.predict import setups as S
    from qlab.predict.efficiency import load_calibration

    p = step_parts(step, dev, eff)
    bases = term_bases(eff, profile)
    terms = {k: {"s": round(v, 7), "basis": bases[k]} for k, v in p.items()}
    if setup is not None and not setup.plain:
        S.check_setup(setup, dev, m)
        params = S.fitted_params({"setups": setup_params} if setup_params is not None else load_calibration())
        p["token_alu_s"] = token_alu_s(step, dev, eff, rows=setup.draft + 1 if setup.mtp else None)
        r = S.apply(setup, p=p, step=step, dev=dev, eff=eff, m=m, t_step=t_step, mem=mem, params=params)
        terms.update({k: {"s" if k.endswith("_s") else "value": round(v, 7), "basis": b}
                      for k, (v, b) in r["terms"].items()})
        out["decode_tok_s"] = round(batch / r["t_token"], 3)
        out["fits"] = bool(r["fits"])
        out["per_gpu_gb"] = round(r["per_gpu_gb"], 4)
        sd = setup.as_dict()
        if setup.gpus > 1:
            sd["link"] = S.link_gbs(dev, setup.link)[1]
        if setup.mtp:
            sd["acceptance"] = S.acceptance(setup)[0]
        if r["gpu_layers"] is not None:
            sd["gpu_layers"] = r["gpu_layers"]
        out["setup"] = sd
        if setup.gpus > 1 and setup.split == "layer" and context:
            out["ttft_s"] = round(out["ttft_s"] + S.layer_split_prompt_s(setup, dev, m, context), 4)
        out["notes"] = ["prefill_tok_s is the single-device figure; TTFT adds only a layer split's prompt hand-off"]
    out["terms"] = terms
    if concurrency:
        out["concurrency"] = _concurrency(out, setup, dev, m, q, context, kv, mem, profile)


def _concurrency(out: dict, setup, dev, m, q, context, kv, mem, profile) -> dict:
    """How many sequences fit at `context` beside the weights (KV cache in the attention layers only, plus a
    fixed DeltaNet state per sequence), and the speed at that many: aggregate and per user."""
    from qlab.predict.setups import concurrency as n_fit

    n_gpu = setup.gpus if setup is not None else 1
    per_seq = (mem.kv_cache_gb + mem.state_gb) / max(1, out["batch"])
    fixed = mem.weights_gb / n_gpu + mem.overhead_gb
    n = n_fit(None, per_seq / n_gpu, fixed, dev.usable_memory_gb)
    res = {"max_sequences": n, "per_sequence_gb": round(per_seq, 4)}
    if n >= 1:
        b = min(n, 1024)
        r = predict(dev, m.id, q, context, batch=b, kv_dtype=kv, profile=profile,
                    setup=setup if setup is not None and not setup.plain else None)
        res.update({"batch": b, "aggregate_tok_s": r["decode_tok_s"], "per_user_tok_s": round(r["decode_tok_s"] / b, 3),
                    "bound": r["bound"]})
    return res


def decode_step_time_1(m, q: str, context: int, kv: str, dev, eff: Efficiencies) -> float:
    """The first generated token after the prompt: one batch-1 step at depth `context`."""
    return step_time(decode_step(m, q, context, 1, kv), dev, eff)[0]


def predict_many(scenarios) -> list[dict]:
    """Each scenario is a dict of predict()'s keyword arguments (hw, model, quant, context, [batch, kv_dtype,
    profile]) or a tuple in predict()'s argument order."""
    return [predict(**s) if isinstance(s, dict) else predict(*s) for s in scenarios]
