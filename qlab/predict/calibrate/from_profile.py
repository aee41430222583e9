"""Turn a profile's measurements into the efficiencies the predictor reads (see qlab/predict/README.md), and
check that they reproduce what was measured.

- weights: streaming read bandwidth (microbench) ÷ the device's bandwidth figure in the profile;
- kv: where a quant was decoded at two depths, the KV read's efficiency the decode's own growth with depth
  gives (solved with the family factors); else the best attention-decode bandwidth the tuned kernels reached
  ÷ the same figure (when measured);
- compute, prefill: the best measured GEMM rate of a dtype with native instructions ÷ the device's peak;
- family_factor: per weight family (q8_0, kquant, ...), the factor that makes the predictor reproduce the
  decode loop measured at that quant. A step's time is linear in each factor and in 1/kv, so all of them are
  solved at once by least squares in relative error (exact where there is one row per unknown).

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


def _class_kv(dev: Device) -> float:
    from qlab.predict.efficiency import efficiencies_for

    return efficiencies_for(dev).kv


def _check(doc: dict, dev: Device, model: str, rows: list[dict], cal: dict) -> list[dict]:
    out = []
    for r in rows:
        p = 1.0 / _predicted_s(doc, dev, model, r["quant"], r["context"], cal)
        out.append({"quant": r["quant"], "context": r["context"], "whole_model": bool(r.get("whole_model")),
                    **({"slice_correction": r["slice_correction"]} if "slice_correction" in r else {}),
                    **({"contended": True, "others_cpu_share": r.get("others_cpu_share")} if r.get("contended") else {}),
                    "measured_tok_s": r["scaled_tok_s"], "predicted_tok_s": p,
                    "error_pct": 100 * (p / r["scaled_tok_s"] - 1)})
    return out


def _step_s(doc: dict, dev: Device, model: str, quant: str, context: int, cal: dict) -> float:
    """The predictor's step time, unrounded (`predict` rounds tok/s to 3 decimals), on the same path."""
    from qlab.predict.core import breakdown, time_of_parts

    view = {"device": doc.get("device"), "calibration": cal}
    return time_of_parts(breakdown(dev, model, quant, context, profile=view))[0]


def _linear_terms(doc: dict, dev: Device, model: str, r: dict, cal_with) -> tuple[float, float, float] | None:
    """The row's predicted step as a + w·factor + k/e_kv (seconds), read off the predictor at three points;
    None where it is not linear there (compute-bound on the measured peak: the weights take no time)."""
    fam, q, c = family_of(r["quant"]), r["quant"], r["context"]
    t = {(f, e): _step_s(doc, dev, model, q, c, cal_with({fam: f}, e)) for f, e in ((1, 1), (2, 1), (1, .5), (2, .5))}
    w, k = t[(2, 1)] - t[(1, 1)], t[(1, .5)] - t[(1, 1)]
    a = t[(1, 1)] - w - k
    if w <= 0 or abs(a + 2 * w + 2 * k - t[(2, .5)]) > 1e-6 * t[(2, .5)]:
        return None
    return a, w, k


def _solve(rows: list[dict], terms: list[tuple], fit_kv: bool) -> tuple[dict, float | None]:
    """Least squares in relative error: each row's a + w·factor(family) + k·y = measured, y = 1/e_kv when
    `fit_kv` (the decode's own growth with depth), else the kv term stays as it is (y = 1 in `terms`)."""
    import numpy as np

    fams = sorted({family_of(r["quant"]) for r in rows})
    A, b = [], []
    for r, (a, w, k) in zip(rows, terms):
        T = 1.0 / r["scaled_tok_s"]
        line = [w / T if family_of(r["quant"]) == f else 0.0 for f in fams] + ([k / T] if fit_kv else [])
        A.append(line)
        b.append(1.0 - (a if fit_kv else a + k) / T)
    x = np.linalg.lstsq(np.array(A), np.array(b), rcond=None)[0]
    return dict(zip(fams, (float(v) for v in x[:len(fams)]))), (float(x[-1]) if fit_kv else None)


def _depths_differ(rows: list[dict]) -> bool:
    """Whether some quant was decoded at two depths: then the decode itself says what the KV read costs."""
    seen: dict[str, set] = {}
    for r in rows:
        seen.setdefault(r["quant"], set()).add(r["context"])
    return any(len(c) > 1 for c in seen.values())


def calibration_from_profile(doc: dict, model: str = "qwen3.6-27b", tolerance: float = TOLERANCE) -> dict:
    dev = device_from_profile(doc)
    problems: list[str] = []
    eff = base_efficiencies(doc, dev, problems)
    rows = measured_rows(doc)

    # On this machine the decode loop measured each family's whole cost: its dequantization ALU time is folded
    # into the family factor (dequant_ops 0), so the factor alone carries it and is solved exactly.
    families = {family_of(r["quant"]) for r in rows}
    eff["dequant_ops"] = {fam: 0.0 for fam in families}

    def cal_with(factors: dict, kv: float | None = None) -> dict:
        return {"device_id": dev.id, "efficiencies": eff | {"family_factor": factors}
                | ({"kv": kv} if kv is not None else {})}

    usable, terms = [], []
    for r in rows:
        lin = _linear_terms(doc, dev, model, r, cal_with)
        if lin is None:
            problems.append(f"{r['quant']} @ {r['context']}: the weights take no time in the prediction (the step "
                            "comes out compute-bound on the measured peak), so no weight factor can be solved")
            continue
        usable.append(r)
        terms.append(lin)
    family_factor: dict[str, float] = {}
    kv_from = "the best tuned attention-decode kernel" if "kv" in eff else "the device class"
    if usable:
        kv_now = eff.get("kv")
        # with two depths of a quant the KV read's cost is what the decode grew by, not a kernel probe's rate
        fit_kv = _depths_differ(usable)
        terms_now = [(a, w, k if fit_kv else k / (kv_now or _class_kv(dev))) for a, w, k in terms]
        factors, y = _solve(usable, terms_now, fit_kv)
        if fit_kv:
            if y > 0 and RANGE[0] <= 1 / y <= RANGE[1]:
                eff["kv"] = 1 / y
                kv_from = "the decode's growth with depth"
            else:
                what = f"{1 / y:.3g}" if y > 0 else "no positive value"
                problems.append(f"kv: the decode's growth with depth gives a KV read efficiency of {what}, outside "
                                f"the plausible {RANGE[0]:g}-{RANGE[1]:g}; not used")
                terms_now = [(a, w, k / (kv_now or _class_kv(dev))) for a, w, k in terms]
                factors, _ = _solve(usable, terms_now, False)
        for fam, f in factors.items():
            if f < MIN_FACTOR:
                problems.append(f"family {fam}: the other terms already predict more time than measured (factor "
                                f"{f:.3g}); not used")
            elif f > MAX_FACTOR:
                problems.append(f"family {fam}: its weights would stream {f:.3g}x slower than the measured bandwidth "
                                f"allows (over {MAX_FACTOR:g}x); not used")
            else:
                family_factor[fam] = f
    for fam in families - set(family_factor):
        problems.append(f"family {fam}: no factor could be solved from its decode rows")
    cal = cal_with(family_factor)
    check = _check(doc, dev, model, rows, cal)
    off = [c for c in check if not abs(c["error_pct"]) <= 100 * tolerance]
    for c in off:
        loaded = (f", timed while other processes took {100 * c['others_cpu_share']:.0f} % of the CPUs"
                  if c.get("contended") and c.get("others_cpu_share") is not None else "")
        problems.append(f"{c['quant']} @ {c['context']}: the calibration predicts {c['predicted_tok_s']:.3g} tok/s "
                        f"against {c['measured_tok_s']:.3g} measured ({c['error_pct']:+.1f} %{loaded})")
    out = {"device_id": dev.id, "model": model, "tolerance_pct": 100 * tolerance, "check": check, "kv_from": kv_from,
           "method": "weights = read GB/s ÷ the device's bandwidth; kv = what the decode grew by between two depths "
                     "of a quant (else the best tuned attention-decode GB/s ÷ the bandwidth); compute = best native "
                     "GEMM ÷ peak; family factors (and kv) solved by least squares in relative error from the "
                     "measured decode loop; published as measured only if every measured decode is reproduced "
                     f"within {100 * tolerance:g} %"}
    if not rows:
        problems.append("no decode was measured: nothing to calibrate against")
    if off or not rows:
        out |= {"basis": "class", "efficiencies": {}, "fitted": cal["efficiencies"], "problems": problems}
        out["check_class"] = _check(doc, dev, model, rows, {"device_id": dev.id, "basis": "class",
                                                            "efficiencies": {}})
        return out
    return out | {"basis": "measured", "efficiencies": cal["efficiencies"], "problems": problems}
