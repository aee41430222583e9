"""The summary `qlab profile` prints: achieved vs peak per kernel, decode measured vs predicted."""

from __future__ import annotations


def print_summary(doc: dict, console) -> None:
    from rich.table import Table

    dev = doc["device"]
    mb = doc.get("microbench") or {}
    spec_bw = dev["specs"]["mem_bandwidth_gbs"]
    console.print(f"[bold]{dev['name']}[/bold] ({dev['id']}, {dev['source']})")
    if mb:
        mm = ", ".join(f"{d} {v * 1e3:.0f} GFLOP/s" for d, v in mb["matmul_tflops"].items())
        console.print(f"memory: read {mb['read_gbs']:.1f} GB/s, copy {mb['copy_gbs']:.1f} GB/s "
                      f"(spec {spec_bw:.0f} GB/s); matmul: {mm}")
        for d, why in (mb.get("unsupported") or {}).items():
            console.print(f"matmul {d}: [yellow]unsupported[/yellow] — {why}; not used as a compute peak")
        if mb.get("noisy"):
            console.print("[yellow]noisy probes[/yellow] (spread of repeats after a re-measure): "
                          + ", ".join(f"{k} {100 * v:.0f} %" for k, v in mb["noisy"].items())
                          + " — the machine was loaded; treat this profile's figures as rough")
    for name, st in doc["stages"].items():
        if st["status"] != "done":
            console.print(f"[red]stage {name}: {st['status']}[/red] {st.get('error', '')}")
    if doc.get("kernels"):
        t = Table(title="kernels (tuned) — achieved vs measured peak")
        for c in ("op", "impl", "config", "time", "GB/s", "% BW", "GFLOP/s", "% FLOP"):
            t.add_column(c)
        for k in doc["kernels"]:
            t.add_row(k["op"], k["impl"], ", ".join(f"{a}={b}" for a, b in (k.get("config") or {}).items()),
                      f"{k['time_s'] * 1e3:.3f} ms", f"{k.get('achieved_gbs', 0):.1f}",
                      _pct(k.get("pct_of_peak_bw")), f"{k.get('achieved_tflops', 0) * 1e3:.1f}",
                      _pct(k.get("pct_of_peak_flops")))
        console.print(t)
    preds = {(p["quant"], p["context"]): p for p in doc.get("predictions") or []}
    if doc.get("decode"):
        t = Table(title=f"decode loop ({doc['options'].get('model', 'qwen3.6-27b')}) — measured vs predicted")
        for c in ("quant", "context", "layers run", "tok/s (slice)", "tok/s (64 layers)", "predicted from specs",
                  "predicted (calibrated)"):
            t.add_column(c)
        for d in doc["decode"]:
            p = preds.get((d["quant"], d["context"]), {})
            t.add_row(d["quant"], str(d["context"]), str(d["layers_run"]), f"{d['tok_s']:.2f}",
                      f"{d['scaled_tok_s']:.2f}" if "error" not in d else d["error"][:40],
                      f"{p['spec_decode_tok_s']:.2f}" if p else "-", f"{p['decode_tok_s']:.2f}" if p else "-")
        console.print(t)
    print_checks(doc, console)
    if doc.get("predictions"):
        t = Table(title="predictions for this machine (calibrated by this profile)")
        for c in ("quant", "context", "decode tok/s", "prefill tok/s", "memory GB", "fits"):
            t.add_column(c)
        for p in doc["predictions"]:
            t.add_row(p["quant"], str(p["context"]), f"{p['decode_tok_s']:.2f}", f"{p['prefill_tok_s']:.1f}",
                      f"{p['memory']['total_gb']:.1f}", "yes" if p["fits"] else "no")
        console.print(t)


def print_checks(doc: dict, console) -> None:
    """Kernel exclusions, the roofline point, slice vs whole model, and the calibration's own check, in words."""
    for op, v in (doc.get("kernel_validation") or {}).items():
        for impl, err in v.get("failed", {}).items():
            console.print(f"[red]kernel {op}/{impl} excluded[/red] (failed its reference check here): {err}")
    for p in doc.get("roofline") or []:
        console.print(f"roofline {p['quant']} @ {p['context']}: {p['intensity_flop_per_byte']:.2f} FLOP/byte vs ridge "
                      f"{p['ridge_flop_per_byte']:.1f} -> {p['bound']}-bound; {p['achieved_gbs']:.1f} GB/s achieved, "
                      f"{100 * p['of_roofline']:.0f} % of the roofline")
    for r in doc.get("decode") or []:
        if r.get("contended"):
            console.print(f"[yellow]{r['quant']} @ {r['context']} ({r.get('layers_run')} layers) was timed while other "
                          f"processes took {100 * r['others_cpu_share']:.0f} % of the CPUs[/yellow] (after "
                          f"{r.get('contention_retries', 0)} re-measures): the machine was loaded")
    for e in doc.get("extrapolation") or []:
        across = (f"; the slice run on its own {e['across_runs_error_pct']:+.1f} %, load changing between runs included"
                  if "across_runs_error_pct" in e else "")
        console.print(f"slice vs whole model, {e['quant']} @ {e['context']}: {e['slice_layers']}-layer slice scaled "
                      f"{e['slice_scaled_tok_s']:.3g} tok/s, whole {e['whole_tok_s']:.3g} tok/s ({e['error_pct']:+.1f} %"
                      f"{', ' + e['basis'] if e.get('basis') else ''}{across})")
    for q, why in (doc.get("whole_model") or {}).items():
        if why.startswith("not"):
            console.print(f"{q}: {why}")
    carried = doc.get("extrapolation_carried")
    if carried:
        errs = ", ".join(f"{r['quant']} {r['error_pct']:+.1f} %" for r in carried["rows"])
        console.print(f"the slice's whole-model figures carry the extrapolation error of {carried['from']} "
                      f"(same machine): {errs}")
    elif doc.get("options", {}).get("mode") == "quick" and doc.get("decode"):
        console.print("the slice's whole-model figures are an extrapolation never compared with the whole model "
                      "on this machine: run `qlab profile --gpu auto` once to measure its error")
    cal = doc.get("calibration") or {}
    for c in cal.get("check") or []:
        ok = abs(c["error_pct"]) <= cal.get("tolerance_pct", 10)
        console.print(f"calibration check {c['quant']} @ {c['context']}: measured {c['measured_tok_s']:.3g} tok/s, "
                      f"calibrated {c['predicted_tok_s']:.3g} ({c['error_pct']:+.1f} %) "
                      + ("[green]ok[/green]" if ok else "[red]off[/red]"))
    if cal.get("basis") == "class":
        console.print("[bold red]calibration not published as measured[/bold red]: "
                      + "; ".join(cal.get("problems", [])[:4])
                      + ". Predictions with this profile use the device class's efficiencies on the measured "
                        "bandwidth (basis: class).")
    elif cal.get("problems"):
        console.print("[yellow]calibration notes[/yellow]: " + "; ".join(cal["problems"][:4]))


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0f}%"
