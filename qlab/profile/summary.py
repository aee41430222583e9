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
    if doc.get("predictions"):
        t = Table(title="predictions for this machine (calibrated by this profile)")
        for c in ("quant", "context", "decode tok/s", "prefill tok/s", "memory GB", "fits"):
            t.add_column(c)
        for p in doc["predictions"]:
            t.add_row(p["quant"], str(p["context"]), f"{p['decode_tok_s']:.2f}", f"{p['prefill_tok_s']:.1f}",
                      f"{p['memory']['total_gb']:.1f}", "yes" if p["fits"] else "no")
        console.print(t)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0f}%"
