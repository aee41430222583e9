"""Fit the predictor's efficiencies on published llama.cpp decode measurements; write qlab/predict/calibration.json.

    python scripts/calibrate.py [--csv PATH] [--out PATH] [--no-lodo] [--verbose]

"Fit little, model much": the model (bytes by kernel kind, FLOPs, layer count: qlab.predict.workload) does
the work; the fit only sets, per device class, three numbers — weight-streaming efficiency, KV-read
efficiency, and a fixed time per layer — plus, shared by all classes, a time factor per weight-format family
(dequantizing Q4_0 costs more than streaming F16) and one factor for attention run without flash attention
(the older scoreboard rows). Classes are shrunk toward the pooled values (hierarchical prior), so a class
with four rows borrows from the rest. Residuals are log(pred/measured). Reproducible: deterministic
least squares (scipy), same CSV -> same JSON. Prints the error per device class and leave-one-device-out.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qlab.io import write_json_atomic  # noqa: E402
from qlab.predict.calibration import COMPUTE_EFF, DEFAULT_CSV, ape, load_rows, predict_row  # noqa: E402
from qlab.predict.efficiency import CALIBRATION_PATH  # noqa: E402

FAMILIES = ("q8_0", "q4_0", "kquant", "mxfp4")      # "float" is the reference (factor 1)
DEQUANT = ("float", "q8_0", "q4_0", "kquant", "mxfp4")  # ALU ops per weight, per family
MODE = "alu"         # "alu": ALU ops per weight (chosen: LODO 8.5 %); "factor": time factor per family (10.4 %); "both" (overfits)
SHRINK = 0.2         # prior weight: class log-params toward the pooled ones (chosen by leave-one-device-out)


class Params:
    """Vector layout: [families..., fa_off, legacy, pooled(w, kv, tau), class_1(w, kv, tau), ...] in log space."""

    def __init__(self, classes: list[str]):
        self.classes = classes
        self.nfac = len(FAMILIES) if MODE in ("factor", "both") else 0
        self.ndq = len(DEQUANT) if MODE in ("alu", "both") else 0
        self.nf = self.nfac + self.ndq

    def size(self) -> int:
        return self.nf + 2 + 3 * (1 + len(self.classes))

    def x0(self) -> np.ndarray:
        base = [math.log(0.75), math.log(0.6), math.log(20.0)]
        return np.array([0.1] * self.nfac + [math.log(4.0)] * self.ndq + [math.log(2.0), math.log(1.1)]
                        + base * (1 + len(self.classes)))

    def bounds(self):
        lo = [math.log(0.5)] * self.nfac + [math.log(0.01)] * self.ndq + [0.0, math.log(0.5)] + [math.log(0.05), math.log(0.03), math.log(0.05)] * (1 + len(self.classes))
        hi = [math.log(3.0)] * self.nfac + [math.log(300.0)] * self.ndq + [math.log(12.0), math.log(3.0)] + [math.log(1.0), math.log(1.2), math.log(400.0)] * (1 + len(self.classes))
        return np.array(lo), np.array(hi)

    def unpack(self, x: np.ndarray) -> dict:
        fam = {f: float(math.exp(x[i])) for i, f in enumerate(FAMILIES)} if self.nfac else {}
        deq = {f: float(math.exp(x[self.nfac + i])) for i, f in enumerate(DEQUANT)} if self.ndq else {}
        fa_off = float(math.exp(x[self.nf]))
        legacy = float(math.exp(x[self.nf + 1]))
        o = self.nf + 2

        def triple(k):
            w, kv, tau = (float(math.exp(v)) for v in x[o + 3 * k: o + 3 * k + 3])
            return {"weights": w, "kv": kv, "layer_overhead_us": tau}

        return {"family_factor": fam, "dequant_ops": deq, "flash_attn_off_kv_factor": fa_off, "legacy_build_time_factor": legacy,
                "pooled": triple(0),
                "classes": {c: triple(i + 1) for i, c in enumerate(self.classes)}}


def fit(rows: list[dict]) -> dict:
    classes = sorted({r["class"] for r in rows})
    P = Params(classes)

    def residuals(x):
        p = P.unpack(x)
        res = [math.log(predict_row(p, r) / r["measured"]) for r in rows]
        o = P.nf + 2
        for i in range(len(classes)):   # shrink each class toward the pooled values
            res += list(SHRINK * (x[o + 3 * (i + 1): o + 3 * (i + 2)] - x[o: o + 3]))
        return np.array(res)

    lo, hi = P.bounds()
    sol = least_squares(residuals, np.clip(P.x0(), lo + 1e-9, hi - 1e-9), bounds=(lo, hi), method="trf",
                        x_scale=1.0, max_nfev=4000)
    return P.unpack(sol.x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    ap.add_argument("--no-lodo", action="store_true", help="skip leave-one-device-out (faster)")
    ap.add_argument("--verbose", action="store_true", help="print every row")
    args = ap.parse_args(argv)
    rows = load_rows(args.csv)
    p = fit(rows)
    by_class = defaultdict(list)
    for r in rows:
        r["ape"] = ape(p, r)
        by_class[r["class"]].append(r["ape"])
    lodo = {}
    if not args.no_lodo:
        for hw in sorted({r["hw"] for r in rows}):
            q = fit([r for r in rows if r["hw"] != hw])
            for r in rows:
                if r["hw"] == hw:
                    r["lodo_ape"] = ape(q, r)
        lodo = {"mdape": statistics.median(r["lodo_ape"] for r in rows)}
    mdape = statistics.median(r["ape"] for r in rows)
    print(f"{len(rows)} rows; fit MdAPE {100 * mdape:.1f}%" +
          (f"; leave-one-device-out MdAPE {100 * lodo['mdape']:.1f}%" if lodo else ""))
    print(f"{'class':20s} {'rows':>4s} {'MdAPE':>7s} {'LODO':>7s}  e_weights  e_kv  t_layer_us")
    classes_out = {}
    for c in sorted(by_class):
        e = p["classes"][c]
        lo = statistics.median(r["lodo_ape"] for r in rows if r["class"] == c) if lodo else float("nan")
        print(f"{c:20s} {len(by_class[c]):4d} {100 * statistics.median(by_class[c]):6.1f}% {100 * lo:6.1f}%"
              f"  {e['weights']:9.3f} {e['kv']:5.3f} {e['layer_overhead_us']:10.2f}")
        classes_out[c] = {**{k: round(v, 4) for k, v in e.items()}, "compute": COMPUTE_EFF, "n_rows": len(by_class[c]),
                          "devices": sorted({r["hw"] for r in rows if r["class"] == c}),
                          "mdape": round(statistics.median(by_class[c]), 4)}
        if lodo:
            classes_out[c]["lodo_mdape"] = round(lo, 4)
    print("family time factors: " + ", ".join(f"{k} {v:.3f}" for k, v in p["family_factor"].items())
          + "; dequant ALU ops/weight: " + ", ".join(f"{k} {v:.2f}" for k, v in p["dequant_ops"].items())
          + f"; flash-attention-off KV factor {p['flash_attn_off_kv_factor']:.2f}"
          + f"; pre-2025 build time factor {p['legacy_build_time_factor']:.2f}")
    if args.verbose:
        for r in rows:
            print(f"  line {r['line']:3d} {r['hw']:16s} {r['model']:16s} {r['quant']:7s} {r['context']:6d} "
                  f"meas {r['measured']:7.2f} pred {predict_row(p, r):7.2f} ({100 * (predict_row(p, r) / r['measured'] - 1):+.1f}%)"
                  + (f" lodo {100 * r['lodo_ape']:.1f}%" if lodo else ""))
    out = {
        "about": "Efficiencies fitted by scripts/calibrate.py on published llama.cpp batch-1 decode rows; "
                 "see qlab/predict/README.md",
        "csv": str(args.csv.name), "n_rows": len(rows), "shrink": SHRINK,
        "family_factor": {k: round(v, 4) for k, v in p["family_factor"].items()},
        "dequant_ops": {k: round(v, 4) for k, v in p["dequant_ops"].items()},
        "flash_attn_off_kv_factor": round(p["flash_attn_off_kv_factor"], 4),
        "legacy_build_time_factor": round(p["legacy_build_time_factor"], 4),
        "pooled": {**{k: round(v, 4) for k, v in p["pooled"].items()}, "compute": COMPUTE_EFF},
        "classes": classes_out,
        "errors": {"mdape": round(mdape, 4), **({"lodo_mdape": round(lodo["mdape"], 4)} if lodo else {})},
    }
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
