"""Turn a profile's measurements into the efficiencies the predictor reads (see qlab/predict/README.md), and
check that they reproduce what was measured.

- weights: streaming read bandwidth (microbench) ÷ the device's bandwidth figure in the profile;
- kv: the best attention-decode bandwidth the tuned kernels reached ÷ the same figure (when measured);
- compute, prefill: the best measured GEMM rate of a dtype with native instructions ÷ the device's peak;
- family_factor: per weight family (q8_0, kquant, ...), the factor that makes the predictor reproduce the
  decode loop measured at that quant — solved exactly, since a step's time is linear in the factor.

A ratio outside its physical range is never clamped into it: it is left out (the device class's value
stands) and recorded in `problems`. After the fit, every measured decode row must be reproduced within
TOLERANCE; if one is not, the fit is not published as measured: `basis` is "class" (the predictor uses the
device class's values on the measured specs), `problems` says why, and `check_class` shows that fallback.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from qlab.hwdb.device import Device

TOLERANCE = 0.10            # a calibration must reproduce every decode it measured within 10 %
RANGE = (0.02, 1.5)         # a plausible efficiency (fraction of the device's figure)
MIN_FACTOR = 0.05           # a family factor below this means the other terms already exceed the measurement
MAX_FACTOR = 50.0           # a weight family 50x slower than its bytes at the measured bandwidth is no streaming


def device_from_profile(doc: dict) -> Device:
    """The Device as the profile recorded it (measured values where the run replaced estimates)."""
    rec = doc["device"]
    fields = {f.name for f in dataclasses.fields(Device)}
    specs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in rec["specs"].items()
             if k in fields and k not in ("id", "name")}
    return Device(id=rec["id"], name=rec["name"], **specs)


def family_of(quant: str) -> str:
    """The predictor's weight family of a quant (qlab.predict.efficiency.FAMILIES)."""
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


def _ratio(eff: dict, problems: list[str], key: str, value: float, figure: float, what: str) -> None:
    r = value / figure
    if RANGE[0] <= r <= RANGE[1]:
        eff[key] = r
    else:
        problems.append(f"{key}: {what} is {r:.3g} x the device's figure, outside the plausible "
                        f"{RANGE[0]:g}-{RANGE[1]:g}; not used (the class value stands)")


def _is_attention_decode(k: dict) -> bool:
    op, impl = str(k.get("op", "")), str(k.get("impl", ""))
    return op == "attention_decode" or (op == "attention" and "decode" in impl)


def base_efficiencies(doc: dict, dev: Device, problems: list[str]) -> dict:
    eff: dict = {}
    mb = doc.get("microbench") or {}
    if mb.get("read_gbs"):
        _ratio(eff, problems, "weights", mb["read_gbs"], dev.mem_bandwidth_gbs, "measured read bandwidth")
    att = [k for k in doc.get("kernels") or [] if _is_attention_decode(k) and k.get("achieved_gbs")]
    if att:
        _ratio(eff, problems, "kv", max(k["achieved_gbs"] for k in att), dev.mem_bandwidth_gbs,
               "the best attention-decode bandwidth")
    rates = mb.get("matmul_tflops") or {}   # only dtypes with native instructions (qlab.profile.microbench)
    if rates and dev.peak_tflops:
        before = len(problems)
        _ratio(eff, problems, "compute", max(rates.values()), dev.peak_tflops, "the best GEMM rate")
        if len(problems) == before:
            eff["prefill"] = eff["compute"]
    return eff


def measured_rows(doc: dict) -> list[dict]:
    """The decode rows the calibration must reproduce: a whole-model measurement where one exists for a
    (quant, context), else the slice scaled to the whole model. Where the whole model was measured at one
    context of a quant, that quant's slice rows at other contexts are corrected by the ratio measured there
    (`slice_correction`): the slice's extrapolation error is a property of the quant's layers, not the depth."""
    rows = [r for r in doc.get("decode") or [] if "error" not in r]
    whole = {(r["quant"], r["context"]): r for r in rows if r.get("whole_model")}
    slices = {(r["quant"], r["context"]): r for r in rows if not r.get("whole_model")}
    ratio = {}
    for (q, c), w in whole.items():
        if (q, c) in slices:
            ratio.setdefault(q, w["scaled_tok_s"] / slices[(q, c)]["scaled_tok_s"])
    out = list(whole.values())
    for key, r in slices.items():
        if key in whole:
            continue
        if r["quant"] in ratio:
            r = dict(r, scaled_tok_s=r["scaled_tok_s"] * ratio[r["quant"]], slice_correction=ratio[r["quant"]])
        out.append(r)
    return out


def _predicted_s(doc: dict, dev: Device, model: str, quant: str, context: int, cal: dict) -> float:
    from qlab.predict import predict

    # the same path `qlab predict --hw <id> --profile FILE` takes: the profile's device record applies
    view = {"device": doc.get("device"), "calibration": cal}
    return 1.0 / predict(dev, model, quant, context, profile=view)["decode_tok_s"]


def _check(doc: dict, dev: Device, model: str, rows: list[dict], cal: dict) -> list[dict]:
    out = []
    for r in rows:
        p = 1.0 / _predicted_s(doc, dev, model, r["quant"], r["context"], cal)
        out.append({"quant": r["quant"], "context": r["context"], "whole_model": bool(r.get("whole_model")),
                    **({"slice_correction": r["slice_correction"]} if "slice_correction" in r else {}),
                    "measured_tok_s": r["scaled_tok_s"], "predicted_tok_s": p,
                    "error_pct": 100 * (p / r["scaled_tok_s"] - 1)})
    return out


def calibration_from_profile(doc: dict, model: str = "qwen3.6-27b", tolerance: float = TOLERANCE) -> dict:
    dev = device_from_profile(doc)
    problems: list[str] = []
    eff = base_efficiencies(doc, dev, problems)
    rows = measured_rows(doc)

    # On this machine the decode loop measured each family's whole cost: its dequantization ALU time is folded
    # into the family factor (dequant_ops 0), so the factor alone carries it and is solved exactly.
    families = {family_of(r["quant"]) for r in rows}
    eff["dequant_ops"] = {fam: 0.0 for fam in families}

    def cal_with(factors: dict) -> dict:
        return {"device_id": dev.id, "efficiencies": eff | {"family_factor": factors}}

    factors: dict[str, list[float]] = {}
    for r in rows:
        fam = family_of(r["quant"])
        t1 = _predicted_s(doc, dev, model, r["quant"], r["context"], cal_with({fam: 1.0}))
        t2 = _predicted_s(doc, dev, model, r["quant"], r["context"], cal_with({fam: 2.0}))
        measured = 1.0 / r["scaled_tok_s"]
        if t2 <= t1:
            problems.append(f"{r['quant']} @ {r['context']}: the weights take no time in the prediction (the step "
                            "comes out compute-bound on the measured peak), so no weight factor can be solved")
            continue
        f = 1.0 + (measured - t1) / (t2 - t1)   # t(f) = measured, t linear in f
        if f < MIN_FACTOR:
            problems.append(f"{r['quant']} @ {r['context']}: the other terms already predict {1 / t1:.3g} tok/s "
                            f"against {r['scaled_tok_s']:.3g} measured (factor {f:.3g}); not used")
            continue
        if f > MAX_FACTOR:
            problems.append(f"{r['quant']} @ {r['context']}: its weights would stream {f:.3g}x slower than the "
                            f"measured bandwidth allows (over {MAX_FACTOR:g}x); not used")
            continue
        factors.setdefault(fam, []).append(f)
    family_factor = {fam: math.exp(statistics.fmean(math.log(f) for f in fs)) for fam, fs in factors.items()}
    for fam in families - set(family_factor):
        problems.append(f"family {fam}: no factor could be solved from its decode rows")
    cal = cal_with(family_factor)
    check = _check(doc, dev, model, rows, cal)
    off = [c for c in check if not abs(c["error_pct"]) <= 100 * tolerance]
    for c in off:
        problems.append(f"{c['quant']} @ {c['context']}: the calibration predicts {c['predicted_tok_s']:.3g} tok/s "
                        f"against {c['measured_tok_s']:.3g} measured ({c['error_pct']:+.1f} %)")
    out = {"device_id": dev.id, "model": model, "tolerance_pct": 100 * tolerance, "check": check,
           "method": "weights = read GB/s ÷ the device's bandwidth; kv = best tuned attention-decode GB/s ÷ it; "
                     "compute = best native GEMM ÷ peak; family factors solved from the measured decode loop; "
                     f"published as measured only if every measured decode is reproduced within {100 * tolerance:g} %"}
    if not rows:
        problems.append("no decode was measured: nothing to calibrate against")
    if off or not rows:
        out |= {"basis": "class", "efficiencies": {}, "fitted": cal["efficiencies"], "problems": problems}
        out["check_class"] = _check(doc, dev, model, rows, {"device_id": dev.id, "basis": "class",
                                                            "efficiencies": {}})
        return out
    return out | {"basis": "measured", "efficiencies": cal["efficiencies"], "problems": problems}
