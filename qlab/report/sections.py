"""The data behind each section of the report. Each function returns plain dicts for the template: predictor
results (whole dicts, so the template can print any field with its scenario), device records and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

from qlab.errors import QlabError
from qlab.report import figures, multigpu
from qlab.report.grid import (BEST_QUANTS, CURVE_CONTEXTS, CURVE_QUANTS, DENSE_CONTRAST, HEADLINE_CONTEXT,
                              HEADLINE_QUANT, KV_DTYPES, PROMPT_TOKENS, QUANTS, SUMMARY_CONTEXTS, Predictions)


def _within(device, budget) -> bool:
    return budget is None or (device.price_usd is not None and device.price_usd <= budget)


def _short(device) -> str:
    """A short display name for figure labels: the id reads well and is what `--hw` accepts."""
    return device.id


# -- summary ---------------------------------------------------------------------------------------------

def summary(devices, preds: Predictions, model: str, budget) -> dict:
    rows, cannot = [], []
    for d in devices:
        cells = []
        for c in SUMMARY_CONTEXTS:
            best = preds.best(d.id, c, model)
            if best is None:
                cells.append(None)
                continue
            p, kv = best
            cells.append({"p": p, "kv": kv, "ttft": preds.get(d.id, p["quant"], PROMPT_TOKENS, kv, model)})
        if cells[0] is None:
            reason = next((msg for key, msg in preds.refused.items() if key[0] == d.id), None)
            cannot.append({"device": d, "smallest": _smallest(d, preds, model), "reason": reason})
        else:
            rows.append({"device": d, "cells": cells, "within_budget": _within(d, budget)})
    headline = SUMMARY_CONTEXTS.index(HEADLINE_CONTEXT)

    def speed(row, i):
        cell = row["cells"][i]
        return cell["p"]["decode_tok_s"] if cell else -1.0

    rows.sort(key=lambda r: (-speed(r, headline), -speed(r, 0), r["device"].id))
    return {"rows": rows, "cannot": cannot, "order": [r["device"] for r in rows], "headline_index": headline}


def _smallest(device, preds, model) -> dict | None:
    """The least memory any quant needs at 4K (KV Q8_0): what a device that runs nothing is missing."""
    need = [p for q in QUANTS if (p := preds.get(device.id, q, PROMPT_TOKENS, "Q8_0", model)) is not None]
    return min(need, key=lambda p: p["memory"]["total_gb"]) if need else None


USABLE_TOK_S = 10.0  # below this, chat feels slow: the "cheapest" picks must at least reach it
TRUSTED = ("measured", "calibrated")  # a headline names only these; a roofline guess is shown, marked, never picked


BASIS_WORDS = {"measured": "measured", "calibrated": "calibrated", "roofline": "ROOFLINE GUESS"}


def trusted(p: dict | None) -> bool:
    return p is not None and p.get("basis") in TRUSTED


def picks(summary_, preds: Predictions, model: str, budget) -> list[dict]:
    """A few answers at a glance, each one row of the tables below (so each is checkable there). Only
    predictions calibrated on the device's class (or measured) can be picked; a faster roofline guess is
    named under the card instead."""
    rows = [r for r in summary_["rows"] if r["within_budget"]]
    out = []
    hi = summary_["headline_index"]
    fast = [r for r in rows if r["cells"][hi]]
    speed = lambda r: r["cells"][hi]["p"]["decode_tok_s"]  # noqa: E731
    sure = [r for r in fast if trusted(r["cells"][hi]["p"])]
    if sure:
        r = max(sure, key=speed)
        guesses = [g for g in fast if not trusted(g["cells"][hi]["p"]) and speed(g) > speed(r)]
        out.append({"title": f"Fastest at {HEADLINE_CONTEXT // 1024}K context", "device": r["device"],
                    "p": r["cells"][hi]["p"], "kv": r["cells"][hi]["kv"],
                    "guesses": [{"device": g["device"], "p": g["cells"][hi]["p"], "kv": g["cells"][hi]["kv"]}
                                for g in sorted(guesses, key=speed, reverse=True)[:3]]})
    value = []
    for r in rows:
        p = preds.get(r["device"].id, HEADLINE_QUANT, HEADLINE_CONTEXT, "F16", model)
        if p and p["fits"] and trusted(p) and r["device"].price_usd:
            value.append((p["decode_tok_s"] / r["device"].price_usd, r["device"], p))
    if value:
        _, d, p = max(value, key=lambda t: t[0])
        out.append({"title": "Most tokens/s per dollar", "device": d, "p": p, "kv": "F16"})
    for title, quant_limit, ctx in ((f"Cheapest for 128K context at Q8_0, ≥ {USABLE_TOK_S:.0f} tok/s", "Q8_0", 131072),
                                    (f"Cheapest for the full 256K context at Q4_K_M or better, ≥ {USABLE_TOK_S:.0f} tok/s",
                                     HEADLINE_QUANT, 262144)):
        if ctx not in SUMMARY_CONTEXTS:
            continue
        i = SUMMARY_CONTEXTS.index(ctx)
        ok = [r for r in rows if r["device"].price_usd and r["cells"][i] and trusted(r["cells"][i]["p"])
              and r["cells"][i]["p"]["decode_tok_s"] >= USABLE_TOK_S
              and BEST_QUANTS.index(r["cells"][i]["p"]["quant"]) <= BEST_QUANTS.index(quant_limit)]
        if ok:
            r = min(ok, key=lambda r: (r["device"].price_usd, -r["cells"][i]["p"]["decode_tok_s"]))
            out.append({"title": title, "device": r["device"], "p": r["cells"][i]["p"], "kv": r["cells"][i]["kv"]})
    return out


# -- fit matrix ------------------------------------------------------------------------------------------

def fit_matrix(devices, preds: Predictions, model: str) -> dict:
    """Per KV dtype: device rows (most memory first), cells per (context, quant) with the margin in GB."""
    order = sorted(devices, key=lambda d: (-d.usable_memory_gb, d.id))
    tables = []
    for kv in KV_DTYPES:
        rows = []
        for d in order:
            cells = []
            for c in SUMMARY_CONTEXTS:
                for q in QUANTS:
                    p = preds.get(d.id, q, c, kv, model)
                    margin = None if p is None else d.usable_memory_gb - p["memory"]["total_gb"]
                    cells.append({"p": p, "margin": margin, "context": c, "quant": q})
            rows.append({"device": d, "cells": cells})
        tables.append({"kv": kv, "rows": rows})
    return {"tables": tables}


# -- decode curves ---------------------------------------------------------------------------------------

def curves(order, preds: Predictions, model: str) -> dict:
    panels, table, shown = [], [], set()
    for d in order:
        series = {}
        # the standard quants, plus whatever smaller quant this device needs to run at all (16 GB cards)
        extra = {b[0]["quant"] for c in (CURVE_CONTEXTS[0], CURVE_CONTEXTS[-1]) if (b := preds.best(d.id, c, model))}
        quants = [q for q in QUANTS if q in CURVE_QUANTS or q in extra]
        shown.update(quants)
        for q in quants:
            pts = []
            for c in CURVE_CONTEXTS:
                p = preds.get(d.id, q, c, "F16", model)
                if p is not None and p["fits"]:
                    pts.append((c, p["decode_tok_s"]))
            series[q] = pts
        dense_pts = []
        for c in CURVE_CONTEXTS:
            p = preds.get(d.id, HEADLINE_QUANT, c, "F16", DENSE_CONTRAST)
            if p is not None and p["fits"]:
                dense_pts.append((c, p["decode_tok_s"]))
        ref = preds.get(d.id, HEADLINE_QUANT, CURVE_CONTEXTS[0], "F16", model)
        basis = BASIS_WORDS.get((ref or {}).get("basis"), "")
        note = f"{d.usable_memory_gb:.0f} GB usable · {d.mem_bandwidth_gbs:.0f} GB/s" + (f" · {basis}" if basis else "")
        svg = figures.decode_curves(d.name, series, dense_pts, CURVE_CONTEXTS, note)
        panels.append({"device": d, "svg": svg})
        table.append({"device": d, "cells": [preds.get(d.id, q, c, "F16", model) for q in CURVE_QUANTS
                                             for c in SUMMARY_CONTEXTS]})
    quants = [q for q in QUANTS if q in shown]
    return {"panels": panels, "table": table, "quants": quants,
            "colors": {q: figures.QUANT_COLORS.get(q, "#999") for q in quants}}


# -- prefill and TTFT ------------------------------------------------------------------------------------

PREFILL_QUANTS = ["Q8_0", HEADLINE_QUANT]


def prefill(order, preds: Predictions, model: str) -> dict:
    rows, bars = [], []
    for d in order:
        cells = [preds.get(d.id, q, c, "F16", model) for q in PREFILL_QUANTS for c in (PROMPT_TOKENS, HEADLINE_CONTEXT)]
        rows.append({"device": d, "cells": cells})
        p = preds.get(d.id, HEADLINE_QUANT, PROMPT_TOKENS, "F16", model)
        if p is not None and p["fits"] and p.get("ttft_s"):
            bars.append({"name": _short(d), "vendor": d.vendor, "ttft_s": p["ttft_s"], "guess": not trusted(p)})
    bars.sort(key=lambda r: r["ttft_s"])
    svg = figures.ttft_bars(bars, PROMPT_TOKENS, HEADLINE_QUANT) if bars else None
    return {"rows": rows, "svg": svg, "quants": PREFILL_QUANTS, "contexts": [PROMPT_TOKENS, HEADLINE_CONTEXT]}


# -- value: per dollar and per watt ----------------------------------------------------------------------

def value(order, preds: Predictions, model: str, budget, multi_rows=()) -> dict:
    rows, no_price = [], []
    for d in order:
        p = preds.get(d.id, HEADLINE_QUANT, HEADLINE_CONTEXT, "F16", model)
        if p is None or not p["fits"]:
            continue
        per_k = p["decode_tok_s"] / d.price_usd * 1000.0 if d.price_usd else None
        per_w = p["decode_tok_s"] / d.tdp_w if d.tdp_w else None
        if d.price_usd is None:
            no_price.append(d)
        rows.append({"device": d, "p": p, "per_kusd": per_k, "per_w": per_w, "within_budget": _within(d, budget)})
    rows.sort(key=lambda r: -(r["per_kusd"] or -1.0))
    points = [{"name": _short(r["device"]), "vendor": r["device"].vendor, "price": r["device"].price_usd,
               "tok_s": r["p"]["decode_tok_s"], "guess": not trusted(r["p"])} for r in rows if r["per_kusd"]]
    # multi-GPU setups that make the headline scenario fit where fewer GPUs could not (layer split, predicted)
    fitted = {r["device"].id for r in rows}
    for m in multi_rows:
        d = m["device"]
        if d.id in fitted or not d.price_usd:
            continue
        sp = multigpu.split_by_layers(d, m["n"], HEADLINE_QUANT, HEADLINE_CONTEXT, preds, "F16", model)
        if sp is not None and sp["fits"]:
            fitted.add(d.id)
            points.append({"name": f"{m['n']}× {_short(d)}", "vendor": d.vendor, "price": sp["price_usd"],
                           "tok_s": sp["decode_tok_s"], "multi": True, "guess": True})
    by_price = [{"name": _short(r["device"]), "vendor": r["device"].vendor, "value": r["per_kusd"],
                 "guess": not trusted(r["p"])} for r in rows if r["per_kusd"]]
    by_watt = sorted(({"name": _short(r["device"]), "vendor": r["device"].vendor, "value": r["per_w"],
                       "guess": not trusted(r["p"])} for r in rows if r["per_w"]), key=lambda r: -r["value"])
    return {
        "rows": rows, "no_price": no_price,
        "scatter": figures.value_scatter(points, HEADLINE_QUANT, HEADLINE_CONTEXT) if points else None,
        "per_price_svg": figures.ranked_bars(by_price, "decode tok/s per $1000 (price used: see table)") if by_price else None,
        "per_watt_svg": figures.ranked_bars(by_watt, "decode tok/s per W (board power / TDP)") if by_watt else None,
    }


# -- multi-GPU -------------------------------------------------------------------------------------------

def multi(devices, preds: Predictions, model: str, budget) -> dict:
    rows = multigpu.options(devices, SUMMARY_CONTEXTS, preds, model=model)
    for r in rows:
        d = r["device"]
        r["price"] = d.price_usd * r["n"] if d.price_usd else None
        r["within_budget"] = budget is None or (r["price"] is not None and r["price"] <= budget)
    return {"rows": rows}


# -- measured profiles -----------------------------------------------------------------------------------

DTYPE_SPEC = {"float32": "fp32_tflops", "fp32": "fp32_tflops", "bfloat16": "bf16_tflops", "bf16": "bf16_tflops",
              "float16": "fp16_tflops", "fp16": "fp16_tflops", "float8": "fp8_tflops", "fp8": "fp8_tflops"}


def _spec(device_doc: dict, key: str):
    """The spec sheet's value for `key`. For a host CPU the profile replaces its estimated specs with what it
    measured (keeping the estimates in details.estimated_specs): compare against the estimates, not itself."""
    estimated = (device_doc.get("details") or {}).get("estimated_specs") or {}
    if estimated.get(key):
        return estimated[key]
    return (device_doc.get("specs") or {}).get(key) or None


def measured(profile: dict, preds: Predictions, model: str) -> dict:
    """One measured profile: microbenchmarks against the spec sheet, kernels against peak, decode measured
    against predicted (with the profile's calibration, and from specs alone)."""
    dev = profile.get("device") or {}
    hw = dev.get("id", "?")
    spec_only = Predictions(devices=preds.devices)
    out = {"device": dev, "created": profile.get("created"), "qlab_version": profile.get("qlab_version"),
           "git_commit": profile.get("git_commit"), "options": profile.get("options") or {},
           "software": profile.get("software") or {}, "stages": profile.get("stages") or {}}

    mb = profile.get("microbench")
    if mb:
        spec_bw = _spec(dev, "mem_bandwidth_gbs")
        rows = [{"what": "memory read", "value": mb.get("read_gbs"), "unit": "GB/s", "spec": spec_bw},
                {"what": "memory copy", "value": mb.get("copy_gbs"), "unit": "GB/s", "spec": spec_bw}]
        for dtype, tf in sorted((mb.get("matmul_tflops") or {}).items()):
            key = DTYPE_SPEC.get(dtype.lower())
            rows.append({"what": f"matmul {dtype}", "value": tf, "unit": "TFLOPS", "spec": _spec(dev, key) if key else None})
        launch = (mb.get("launch") or {}).get("time_s")
        if launch:
            rows.append({"what": "kernel launch", "value": launch * 1e6, "unit": "µs", "spec": None})
        for r in rows:
            r["pct"] = 100.0 * r["value"] / r["spec"] if r["value"] and r["spec"] else None
        out["microbench"] = rows

    kernels = profile.get("kernels") or []
    out["kernels"] = [dict(k, label=f"{k.get('op')}/{k.get('impl')}", shape_text=_compact(k.get("shape")),
                           config_text=_compact(k.get("config")), default_text=_compact(k.get("default_config")))
                     for k in kernels]
    if kernels:
        out["kernel_svg"] = figures.kernel_efficiency(
            [{"label": f"{k['label']}\n{k['shape_text'][:48]}", "bw_pct": k.get("pct_of_peak_bw"),
              "flops_pct": k.get("pct_of_peak_flops")} for k in out["kernels"]],
            f"Kernel efficiency on {dev.get('name', hw)}")

    decode = []
    for run in profile.get("decode") or []:
        if run.get("error") or not run.get("scaled_tok_s"):
            decode.append({"run": run, "cal": None, "spec": None})
            continue
        cal = preds.get(hw, run["quant"], run["context"], "F16", model)
        spec = spec_only.get(hw, run["quant"], run["context"], "F16", model)
        decode.append({"run": run, "cal": cal, "spec": spec,
                       "cal_err": _err(cal, run["scaled_tok_s"]), "spec_err": _err(spec, run["scaled_tok_s"])})
    out["decode"] = decode
    ok = [r for r in decode if r["cal"] is not None or r["spec"] is not None]
    if ok:
        out["decode_svg"] = figures.measured_vs_predicted(
            [{"label": f"{r['run']['quant']} @ {r['run']['context']}", "measured": r["run"]["scaled_tok_s"],
              "calibrated": r["cal"]["decode_tok_s"] if r["cal"] else None,
              "spec": r["spec"]["decode_tok_s"] if r["spec"] else None} for r in ok],
            f"Decode, measured vs predicted — {dev.get('name', hw)}")
    broke = [r["run"] for r in decode if r["run"].get("breakdown")]
    if broke:
        out["breakdown_svg"] = figures.breakdown_bars(
            [{"label": f"{r['quant']} @ {r['context']}", **r["breakdown"]} for r in broke],
            "Time per token by part (measured; scaled to 64 layers where a slice ran)")
    out["calibration"] = calibration_tables(profile.get("calibration"))
    return out


def calibration_tables(cal) -> dict | None:
    """A profile's calibration for people: efficiencies as (name, value) rows, the decode check as a table,
    the method as a sentence; nothing printed as a dict."""
    if not isinstance(cal, dict) or not cal:
        return None
    eff = cal.get("efficiencies") if isinstance(cal.get("efficiencies"), dict) else {}
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                walk(f"{prefix} · {k}" if prefix else str(k), v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append({"name": prefix.replace("_", " "), "value": value})
        elif value not in (None, "", [], {}):
            rows.append({"name": prefix.replace("_", " "), "text": str(value)})

    walk("", eff)
    check = [c for c in (cal.get("check") or []) if isinstance(c, dict)]
    # basis "class": the fit failed its own check (qlab/predict/calibrate/from_profile.py); say so, with why
    problems = [str(p) for p in (cal.get("problems") or []) if isinstance(p, str)][:4]
    return {"efficiencies": rows, "check": check, "method": cal.get("method") or "",
            "basis": cal.get("basis") or "measured", "problems": problems,
            "tolerance_pct": cal.get("tolerance_pct") if isinstance(cal.get("tolerance_pct"), (int, float)) else 10}


def _err(p: dict | None, measured_tok_s: float) -> float | None:
    """Signed error of a prediction against a measurement, in % of the measurement."""
    if p is None or not p.get("decode_tok_s"):
        return None
    return 100.0 * (p["decode_tok_s"] - measured_tok_s) / measured_tok_s


def _compact(obj) -> str:
    if not obj:
        return ""
    return json.dumps(obj, separators=(", ", "="), sort_keys=True).replace('"', "")[1:-1] if isinstance(obj, dict) \
        else json.dumps(obj)


# -- methods ---------------------------------------------------------------------------------------------

SOURCE_FIELDS = [("mem_bandwidth_gbs", "bandwidth"), ("memory_gb", "memory"), ("bf16_tflops", "BF16 rate"),
                 ("tdp_w", "power")]  # prices have their own sources (qlab/hwdb/prices.toml), shown with each price


_URL = re.compile(r"(https?://[^\s;,()\]]+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|de|cn|it|ai|dev|me)"
                  r"(?:/[^\s;,()\]]*)?)", re.I)


def source_line(device) -> dict:
    """One line per device: each distinct source once, with the fields it backs; the first address in them
    as a link."""
    by_source: dict[str, list[str]] = {}
    for f, label in SOURCE_FIELDS:
        src = device.sources.get(f)
        if src:
            by_source.setdefault(src, []).append(label)
    text = " · ".join(f"{src} ({', '.join(labels)})" if len(by_source) > 1 else src
                      for src, labels in by_source.items())
    m = _URL.search(text)
    url = None
    if m:
        url = m.group(0).rstrip(".")
        url = url if url.startswith("http") else "https://" + url
    return {"device": device, "text": text, "url": url}


def methods(devices, preds: Predictions, model: str) -> dict:
    sources = [source_line(d) for d in devices]
    refused = sorted({msg for msg in preds.refused.values()})
    return {"sources": sources, "calibration": _calibration(), "refused": refused[:8], "n_refused": len(refused),
            "n_predictions": len(preds.cache)}


def _calibration() -> dict | None:
    """The predictor's calibration and its error per device class, from the fit it checked in
    (`qlab/predict/calibration.json`, written by scripts/calibrate.py); None where that is absent or unreadable."""
    path = Path(__file__).parent.parent / "predict" / "calibration.json"
    try:
        doc = json.loads(path.read_text())
        rows = [{"name": name, "n": c.get("n_rows"), "devices": ", ".join(c.get("devices") or []),
                 "weights": c.get("weights"), "kv": c.get("kv"), "mdape": c.get("mdape"),
                 "lodo_mdape": c.get("lodo_mdape")} for name, c in sorted(doc["classes"].items())]
        errors = doc.get("errors") or {}
        return {"rows": rows, "n_rows": doc.get("n_rows"), "mdape": errors.get("mdape"),
                "lodo_mdape": errors.get("lodo_mdape"), "about": doc.get("about"),
                "source": ", ".join(doc["csv"]) if isinstance(doc.get("csv"), list) else doc.get("csv")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# -- overview figure -------------------------------------------------------------------------------------

def overview(devices, summary_, preds: Predictions, model: str) -> str | None:
    """Every device at the headline quant and context, fastest first; devices where it does not fit last."""
    rows = []
    for d in devices:
        p = preds.get(d.id, HEADLINE_QUANT, HEADLINE_CONTEXT, "F16", model)
        if p is None:
            continue
        rows.append({"name": _short(d), "vendor": d.vendor, "tok_s": p["decode_tok_s"] if p["fits"] else None,
                     "guess": not trusted(p)})
    rows.sort(key=lambda r: (-(r["tok_s"] or -1.0), r["name"]))
    return figures.overview_bars(rows, HEADLINE_QUANT, HEADLINE_CONTEXT) if rows else None


# -- decode step breakdown -------------------------------------------------------------------------------

def step_breakdown(order, preds: Predictions, model: str, n_devices: int = 4) -> str | None:
    """Predicted time per token by term for a few devices spread over the speed ranking: the model at 4K and
    at its longest context, against the dense contrast model at 4K and its longest context."""
    try:
        from qlab.predict import breakdown
    except ImportError:  # a predictor without the breakdown: the section simply has no such figure
        return None
    if not order:
        return None
    picks = [order[round(i * (len(order) - 1) / max(1, n_devices - 1))] for i in range(min(n_devices, len(order)))]
    rows = []
    for d in dict.fromkeys(picks):
        for m in (model, DENSE_CONTRAST) if model != DENSE_CONTRAST else (model,):
            for c in (PROMPT_TOKENS, SUMMARY_CONTEXTS[-1], SUMMARY_CONTEXTS[-2]):
                p = preds.get(d.id, HEADLINE_QUANT, c, "F16", m)
                if p is None or not p["fits"]:
                    continue  # a chart never shows a setup the device cannot hold
                try:
                    parts = breakdown(preds.devices.get(d.id, d.id), m, HEADLINE_QUANT, c,
                                      profile=preds.profiles_by_hw.get(d.id))
                except QlabError:
                    continue  # beyond that model's context: try the next shorter one
                rows.append({"label": f"{d.id} · {m} @ {c // 1024}K" + ("" if trusted(p) else " (guess)"), **parts})
                if c != PROMPT_TOKENS:
                    break
    return figures.step_breakdown(rows) if rows else None
