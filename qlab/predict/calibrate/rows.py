"""The published calibration rows and how a fitted parameter set predicts them (torch- and scipy-free).

Shared by `qlab.predict.calibrate.fit` (which fits) and the tests (which check the checked-in
calibration.json against the CSV), so both read the rows and apply the efficiencies the same way as
`predict()`. Every row file lives in `qlab/predict/data/` with a `source` column (a URL per row).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from qlab.predict.core import HW_ALIASES, step_time
from qlab.predict.efficiency import Efficiencies, device_class
from qlab.predict.workload import decode_step

DATA = Path(__file__).resolve().parents[1] / "data"
# llama.cpp batch-1 decode rows of dense and MoE models on 10 devices (sources per row)
DEFAULT_CSV = DATA / "published_decode_calibration.csv"
# Published llama.cpp rows of the target model family (Qwen3.5/3.6-27B) found while building the predictor:
# the shared CSV has no DeltaNet model and no quantized KV cache, which these rows pin down. Sources inside.
SUPPLEMENT_CSV = DATA / "supplement_decode.csv"
# Sources whose runs had flash attention on (newer llama-bench runs at depth); all others predate it or
# disabled it (the CUDA/Vulkan scoreboards, XiongjieDai's 2024 tables, the 2023 Apple discussion).
FLASH_ATTN_ON = ("pull/17505", "pull/26284", "benches/mac-m2-ultra")
# Sources measured with llama.cpp builds from before 2025 (2023-24: before CUDA graphs, Metal graph
# concurrency and the faster quantized matvec kernels). Predictions are for current builds; the fit gives
# these rows one shared time factor instead of letting them drag every class's efficiencies down.
LEGACY_BUILD = ("discussions/4167", "XiongjieDai", "dmatora", "llm-tracker")
# Qwen3.5/3.6 rows measured with llama.cpp builds from before its hybrid (DeltaNet) decode kernels caught
# up (b10450, 2026-08: the sudoingX/qwen38-mtp baselines say so): one shared time factor for them too.
EARLY_HYBRID_BUILD = ("tianchengwu.com", "jackrong-qwen36-eval")
COMPUTE_EFF = 0.5    # decode matrix efficiency at batch > 1: not identifiable from batch-1 rows (assumption)


def load_rows(path: Path = DEFAULT_CSV, tag: str = "shared") -> list[dict]:
    from qlab.hwdb import get_device

    rows = []
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            dev = get_device(HW_ALIASES.get(r["hw"], r["hw"]))
            row = {"line": i, "hw": dev.id, "csv_hw": r["hw"], "class": device_class(dev), "dev": dev,
                   "model": r["model"], "quant": r["quant"], "context": int(r["context"]),
                   "batch": int(r.get("batch") or 1), "measured": float(r["measured_decode_tok_s"]),
                   "fa": any(s in r["source"] for s in FLASH_ATTN_ON), "backend": r["backend"],
                   "legacy": any(s in r["source"] for s in LEGACY_BUILD), "set": tag,
                   "early_hybrid": any(s in r["source"] for s in EARLY_HYBRID_BUILD), "source": r["source"],
                   "kv_dtype": (r.get("kv_dtype") or "F16").strip()}
            if tag == "supplement":
                row["fa"] = True   # every supplement row ran with flash attention
            row["step"] = decode_step(row["model"], row["quant"], row["context"], row["batch"], row["kv_dtype"])
            rows.append(row)
    return rows


def efficiencies(params: dict, cls: str) -> Efficiencies:
    """params: {"classes": {cls: {weights, kv, layer_overhead_us}}, "pooled": {...}, "family_factor": {...}}."""
    e = params["classes"].get(cls, params["pooled"])
    return Efficiencies(weights=e["weights"], kv=e["kv"], compute=e.get("compute", COMPUTE_EFF),
                        layer_overhead_s=e["layer_overhead_us"] * 1e-6, family_factor=params.get("family_factor", {}),
                        dequant_ops=params.get("dequant_ops", {}),
                        deltanet_units=params.get("deltanet_layer_units", 1.5),
                        kv_quant_factor=params.get("kv_quant_factor", 1.0))


def predict_row(params: dict, row: dict) -> float:
    """Decode tok/s the parameters give for one calibration row (flash attention as the row ran it)."""
    eff = efficiencies(params, row["class"])
    if not row["fa"]:
        eff = replace(eff, kv=eff.kv / params["flash_attn_off_kv_factor"])
    t, _ = step_time(row["step"], row["dev"], eff)
    if row["legacy"]:
        t *= params.get("legacy_build_time_factor", 1.0)
    if row.get("early_hybrid"):
        t *= params.get("early_hybrid_build_time_factor", 1.0)
    return row["batch"] / t


def ape(params: dict, row: dict) -> float:
    return abs(predict_row(params, row) / row["measured"] - 1.0)


def p90(values) -> float:
    """The 90th percentile (nearest rank) of absolute percentage errors."""
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
