"""The selftest's one-page summary (Markdown): verdict, mismatches, bandwidth fractions against their targets."""

from __future__ import annotations


def _pct(x) -> str:
    return "—" if x is None else f"{x:.0%}"


def render(rec: dict) -> str:
    env = rec["environment"]
    where = env.get("gpu") or env.get("processor") or env["device"]
    lines = [f"# qlab selftest — {env['device']} ({where})", "",
             f"**{'PASS' if rec['passed'] else 'FAIL'}** in {rec['seconds']:.0f} s · torch {env['torch']} · "
             f"triton {env.get('triton') or 'not installed'}", ""]
    ks = rec["kernels"]
    lines.append(f"## Kernels against their references: {sum(r['ok'] for r in ks)}/{len(ks)} cases match")
    if rec["failures"]:
        lines += ["", "Mismatches (exit status 1):", ""]
        for r in ks:
            if not r["ok"]:
                detail = r["error"] or f"rel RMS {r['rel_rms']:.3g} > {r['tol']:.0e}"
                lines.append(f"- `{r['op']}/{r['impl']}` {r['case']}: {detail}")
    impls = sorted({(r["op"], r["impl"]) for r in ks})
    lines += ["", "Impls checked: " + ", ".join(f"`{o}/{i}`" for o, i in impls), ""]
    lines.append("## Decode loop against the fp32 reference (4-layer slice, width/8)")
    lines += ["", "| quant | rel RMS | tol | top-1 | host fallbacks | ok |", "|---|---|---|---|---|---|"]
    for r in rec["loop"]:
        rms = "—" if r["rel_rms"] is None else f"{r['rel_rms']:.4f}"
        top1 = _pct(r["top1"])
        lines.append(f"| {r['quant']} | {rms} | {r['tol']} | {top1} | {r['fallbacks'] or 'none'} | "
                     f"{'yes' if r['ok'] else 'NO: ' + (r['error'] or 'mismatch')} |")
    bw = rec["bandwidth"]
    copy = "not measured" if bw["copy_gb_s"] is None else f"{bw['copy_gb_s']:.1f} GB/s"
    lines += ["", f"## Bandwidth (measured copy: {copy})", "",
              "| kernel | shape | GB/s | of copy | GPU target |", "|---|---|---|---|---|"]
    for r in bw["kernels"]:
        shape = ", ".join(f"{k}={v}" for k, v in r["shape"].items() if k in ("M", "fmt", "T", "S"))
        gbs = r.get("error") or f"{r['gb_s']:.1f}"
        lines.append(f"| `{r['op']}/{r['impl']}` | {shape} | {gbs} | {_pct(r.get('fraction'))} | "
                     f"{_pct(r['target'])} |")
    ds = rec["decode_slice"]
    lines += ["", "## Decode slice (4-layer Q4_K_M)", ""]
    if ds.get("error"):
        lines.append(f"not run: {ds['error']}")
    else:
        lines.append(f"{ds['decode_tok_s']:.1f} tok/s at context {ds['context']}, {ds['achieved_gb_s']:.1f} GB/s = "
                     f"{_pct(ds['fraction'])} of copy bandwidth (target on a GPU: 80 %); host fallbacks: "
                     f"{ds['matmul_fallbacks'] or 'none'}")
    lines += ["", "Targets are the bar for a GPU's first run (kernel READMEs), not claims; on a CPU they are "
              "shown for reference only.", ""]
    return "\n".join(lines)
