"""Turn a profile's measurements into the efficiencies the predictor reads (see qlab/predict/README.md).

- weights: streaming read bandwidth (microbench) ÷ the device's bandwidth figure in the profile;
- kv: the best attention-decode bandwidth the tuned kernels reached ÷ the same figure (when measured);
- compute, prefill: the best measured GEMM rate ÷ the device's dense peak;
- family_factor: per weight family (q8_0, kquant, ...), the factor that makes the predictor reproduce the
  decode loop measured at that quant — solved exactly, since a step's time is linear in the factor.
The result also records, per measured decode row, measured vs predicted after calibration.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from qlab.hwdb.device import Device


def device_from_profile(doc: dict) -> Device:
    """The Device as the profile recorded it (measured values where the run replaced estimates)."""
    rec = doc["device"]
    fields = {f.name for f in dataclasses.fields(Device)}
    specs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in rec["specs"].items()
             if k in fields and k not in ("id", "name")}
    return Device(id=rec["id"], name=rec["name"], **specs)


def _clamp(x: float, lo: float = 0.02, hi: float = 1.5) -> float:
    return max(lo, min(hi, x))


def _family_of(quant: str) -> str:
    from qlab.predict.efficiency import FAMILIES  # noqa: F401  (the names the predictor knows)

    q = quant.upper()
    if q == "Q8_0":
        return "q8_0"
    if q in ("Q4_0", "Q4_1", "IQ4_NL"):
        return "q4_0"
    if q == "MXFP4":
        return "mxfp4"
    if q in ("F16", "BF16", "F32"):
        return "float"
    return "kquant"


def base_efficiencies(doc: dict, dev: Device) -> dict:
    eff: dict = {}
    mb = doc.get("microbench") or {}
    if mb.get("read_gbs"):
        eff["weights"] = _clamp(mb["read_gbs"] / dev.mem_bandwidth_gbs)
    att = [k for k in doc.get("kernels") or [] if k.get("op") == "attention" and "decode" in str(k.get("impl", ""))
           and k.get("achieved_gbs")]
    if att:
        eff["kv"] = _clamp(max(k["achieved_gbs"] for k in att) / dev.mem_bandwidth_gbs)
    peak = dev.peak_tflops
    if mb.get("matmul_tflops") and peak:
        eff["compute"] = eff["prefill"] = _clamp(max(mb["matmul_tflops"].values()) / peak)
    return eff


def calibration_from_profile(doc: dict, model: str = "qwen3.6-27b") -> dict:
    from qlab.predict import predict

    dev = device_from_profile(doc)
    eff = base_efficiencies(doc, dev)
    rows = [r for r in doc.get("decode") or [] if "error" not in r]

    # On this machine the decode loop measured each family's whole cost: its dequantization ALU time is folded
    # into the family factor (dequant_ops 0), so the factor alone carries it and is solved exactly.
    measured_families = {_family_of(r["quant"]) for r in rows}
    eff["dequant_ops"] = {fam: 0.0 for fam in measured_families}

    def predicted_s(quant: str, context: int, family_factor: dict) -> float:
        cal = {"calibration": {"device_id": dev.id, "efficiencies": eff | {"family_factor": family_factor}}}
        return 1.0 / predict(dev, model, quant, context, profile=cal)["decode_tok_s"]

    factors: dict[str, list[float]] = {}
    for r in rows:
        fam = _family_of(r["quant"])
        t1 = predicted_s(r["quant"], r["context"], {fam: 1.0})
        t2 = predicted_s(r["quant"], r["context"], {fam: 2.0})
        measured = 1.0 / r["scaled_tok_s"]
        if t2 > t1:  # the weights of this family take time: solve t(f) = measured, t linear in f
            factors.setdefault(fam, []).append(max(0.05, 1.0 + (measured - t1) / (t2 - t1)))
    family_factor = {fam: math.exp(statistics.fmean(math.log(f) for f in fs)) for fam, fs in factors.items()}
    check = []
    for r in rows:
        p = 1.0 / predicted_s(r["quant"], r["context"], family_factor)
        check.append({"quant": r["quant"], "context": r["context"], "measured_tok_s": r["scaled_tok_s"],
                      "predicted_tok_s": p, "error_pct": 100 * (p / r["scaled_tok_s"] - 1)})
    return {"device_id": dev.id, "model": model, "efficiencies": eff | {"family_factor": family_factor},
            "check": check,
            "method": "weights = read GB/s ÷ spec bandwidth; kv = best tuned attention-decode GB/s ÷ spec; "
                      "compute = best GEMM ÷ spec peak; family factors solved from the measured decode loop"}
