"""Fit the predictor's efficiencies on published llama.cpp decode measurements; write qlab/predict/calibration.json.

    python scripts/calibrate.py [--csv PATH] [--out PATH] [--no-lodo] [--verbose]     (the entry point)

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
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from qlab.io import write_json_atomic
from qlab.predict.calibrate.rows import COMPUTE_EFF, DEFAULT_CSV, SUPPLEMENT_CSV, ape, load_rows, p90, predict_row
from qlab.predict.efficiency import CALIBRATION_PATH

FAMILIES = ("q8_0", "q4_0", "kquant", "mxfp4")      # "float" is the reference (factor 1)
DEQUANT = ("float", "q8_0", "q4_0", "kquant", "mxfp4")  # ALU ops per weight, per family
MODE = "alu"         # "alu": ALU ops per weight (chosen: LODO 8.5 %); "factor": time factor per family (10.4 %); "both" (overfits)
SHRINK = 0.2         # prior weight: class log-params toward the pooled ones (chosen by leave-one-device-out)


# Shared parameters: (name, start, lower, upper). The last two only move when supplement rows are present
# (the shared CSV has no DeltaNet model and no quantized KV cache).
GLOBALS = [("flash_attn_off_kv_factor", 2.0, 1.0, 12.0), ("legacy_build_time_factor", 1.1, 0.5, 3.0),
           ("deltanet_layer_units", 1.5, 0.5, 8.0), ("kv_quant_factor", 1.0, 0.2, 5.0),
           ("early_hybrid_build_time_factor", 1.1, 0.5, 3.0)]
CLASS_PARAMS = [("weights", 0.75, 0.05, 1.0), ("kv", 0.6, 0.03, 1.2), ("layer_overhead_us", 20.0, 0.05, 400.0)]


class Params:
    """Vector layout, all in log space: [family params..., globals..., pooled(class params), class_1(...), ...]."""

    def __init__(self, classes: list[str]):
        self.classes = classes
        self.nfac = len(FAMILIES) if MODE in ("factor", "both") else 0
        self.ndq = len(DEQUANT) if MODE in ("alu", "both") else 0
        self.nf = self.nfac + self.ndq
        self.o = self.nf + len(GLOBALS)          # first class parameter
        self.nc = len(CLASS_PARAMS)

    def _spec(self, i: int) -> list[float]:
        fam = [(1.1, 0.5, 3.0)] * self.nfac + [(4.0, 0.01, 300.0)] * self.ndq
        glob = [g[i + 1] for g in GLOBALS]
        cls = [c[i + 1] for c in CLASS_PARAMS] * (1 + len(self.classes))
        return [math.log(v[i]) for v in fam] + [math.log(v) for v in glob] + [math.log(v) for v in cls]

    def x0(self) -> np.ndarray:
        return np.array(self._spec(0))

    def bounds(self):
        return np.array(self._spec(1)), np.array(self._spec(2))

    def unpack(self, x: np.ndarray) -> dict:
        e = [float(math.exp(v)) for v in x]
        out = {"family_factor": dict(zip(FAMILIES, e[: self.nfac])) if self.nfac else {},
               "dequant_ops": dict(zip(DEQUANT, e[self.nfac: self.nf])) if self.ndq else {}}
        out.update({g[0]: e[self.nf + i] for i, g in enumerate(GLOBALS)})

        def group(k):
            return {c[0]: e[self.o + self.nc * k + j] for j, c in enumerate(CLASS_PARAMS)}

        out["pooled"] = group(0)
        out["classes"] = {c: group(i + 1) for i, c in enumerate(self.classes)}
        return out


def fit(rows: list[dict]) -> dict:
    classes = sorted({r["class"] for r in rows})
    P = Params(classes)

    def residuals(x):
        p = P.unpack(x)
        res = [math.log(predict_row(p, r) / r["measured"]) for r in rows]
        pooled = x[P.o: P.o + P.nc]
        for i in range(len(classes)):   # shrink each class toward the pooled values
            res += list(SHRINK * (x[P.o + P.nc * (i + 1): P.o + P.nc * (i + 2)] - pooled))
        return np.array(res)

    lo, hi = P.bounds()
    sol = least_squares(residuals, np.clip(P.x0(), lo + 1e-9, hi - 1e-9), bounds=(lo, hi), method="trf",
                        x_scale=1.0, max_nfev=4000)
    return P.unpack(sol.x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--supplement", type=Path, default=SUPPLEMENT_CSV,
                    help="published Qwen3.5/3.6 rows (DeltaNet layers, quantized KV); '' to fit on --csv alone")
    ap.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    ap.add_argument("--no-lodo", action="store_true", help="skip leave-one-device-out (faster)")
    ap.add_argument("--verbose", action="store_true", help="print every row")
    ap.add_argument("--no-setups", action="store_true", help="skip the MTP/multi-GPU/offload/batch fit")
    args = ap.parse_args(argv)
    rows = load_rows(args.csv)
    if str(args.supplement):
        rows += load_rows(args.supplement, tag="supplement")
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
        lodo = {"mdape": statistics.median(r["lodo_ape"] for r in rows), "p90": p90(r["lodo_ape"] for r in rows)}
        for src in sorted({r["source"] for r in rows}):   # leave-one-source-out, as the setups are judged
            q = fit([r for r in rows if r["source"] != src])
            for r in rows:
                if r["source"] == src:
                    r["loso_ape"] = ape(q, r)
        lodo["loso_mdape"] = statistics.median(r["loso_ape"] for r in rows)
        lodo["loso_p90"] = p90(r["loso_ape"] for r in rows)
    mdape = statistics.median(r["ape"] for r in rows)
    per_set = {}
    for tag in sorted({r["set"] for r in rows}):
        sub = [r for r in rows if r["set"] == tag]
        per_set[tag] = {"n_rows": len(sub), "mdape": round(statistics.median(r["ape"] for r in sub), 4)}
        if lodo:
            per_set[tag]["lodo_mdape"] = round(statistics.median(r["lodo_ape"] for r in sub), 4)
    print(f"batch 1: {len(rows)} rows; fit MdAPE {100 * mdape:.1f}% p90 {100 * p90(r['ape'] for r in rows):.1f}%" +
          (f"; leave-one-device-out MdAPE {100 * lodo['mdape']:.1f}% p90 {100 * lodo['p90']:.1f}%"
           f"; leave-one-source-out MdAPE {100 * lodo['loso_mdape']:.1f}% p90 {100 * lodo['loso_p90']:.1f}%" if lodo else ""))
    for tag, v in per_set.items():
        print(f"  {tag:10s} {v['n_rows']:3d} rows: fit MdAPE {100 * v['mdape']:.1f}%"
              + (f", LODO {100 * v['lodo_mdape']:.1f}%" if lodo else ""))
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
          + f"; pre-2025 build time factor {p['legacy_build_time_factor']:.2f}"
          + f"; DeltaNet layer units {p['deltanet_layer_units']:.2f}; quantized-KV factor {p['kv_quant_factor']:.2f}"
          + f"; early-hybrid-build time factor {p['early_hybrid_build_time_factor']:.2f}")
    if args.verbose:
        for r in rows:
            print(f"  {r['set'][:4]} line {r['line']:3d} {r['hw']:16s} {r['model']:16s} {r['quant']:7s} {r['context']:6d} "
                  f"meas {r['measured']:7.2f} pred {predict_row(p, r):7.2f} ({100 * (predict_row(p, r) / r['measured'] - 1):+.1f}%)"
                  + (f" lodo {100 * r['lodo_ape']:.1f}%" if lodo else ""))
    out = {
        "about": "Efficiencies fitted by scripts/calibrate.py on published llama.cpp batch-1 decode rows; "
                 "see qlab/predict/README.md",
        "csv": [str(args.csv.name)] + ([str(args.supplement.name)] if str(args.supplement) else []),
        "n_rows": len(rows), "shrink": SHRINK,
        "family_factor": {k: round(v, 4) for k, v in p["family_factor"].items()},
        "dequant_ops": {k: round(v, 4) for k, v in p["dequant_ops"].items()},
        "flash_attn_off_kv_factor": round(p["flash_attn_off_kv_factor"], 4),
        "legacy_build_time_factor": round(p["legacy_build_time_factor"], 4),
        "deltanet_layer_units": round(p["deltanet_layer_units"], 4),
        "kv_quant_factor": round(p["kv_quant_factor"], 4),
        "early_hybrid_build_time_factor": round(p["early_hybrid_build_time_factor"], 4),
        "pooled": {**{k: round(v, 4) for k, v in p["pooled"].items()}, "compute": COMPUTE_EFF},
        "classes": classes_out,
        "errors": {"mdape": round(mdape, 4), "p90": round(p90(r["ape"] for r in rows), 4),
                   **({"lodo_mdape": round(lodo["mdape"], 4), "lodo_p90": round(lodo["p90"], 4),
                       "loso_mdape": round(lodo["loso_mdape"], 4), "loso_p90": round(lodo["loso_p90"], 4)}
                      if lodo else {}),
                   "by_set": per_set},
    }
    write_json_atomic(args.out, out)
    if not args.no_setups:   # the setup models stand on the batch-1 fit just written
        from qlab.predict.calibrate import setups
        from qlab.predict.efficiency import CALIBRATION_PATH as default_path, clear_caches

        if args.out.resolve() != default_path.resolve():
            print("(setups fitted against the checked-in calibration.json, not --out)")
        clear_caches()
        params, errors = setups.evaluate(setups.load_setup_rows(), verbose=args.verbose)
        out["setups"] = params
        out["errors"]["setups"] = errors
        write_json_atomic(args.out, out)
    print(f"wrote {args.out}")
    return 0
