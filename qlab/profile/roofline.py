"""Where each measured decode sits on this machine's roofline: bytes and FLOPs per token (the predictor's
workload model of the whole model) against the *measured* read bandwidth and the best native GEMM rate.
Decode is memory-bound when its arithmetic intensity (FLOP/byte) is below the ridge point (peak FLOP/s ÷
bytes/s); `of_roofline` is the share of the bound's time the measured step reached (1.0: at the roof)."""

from __future__ import annotations


def roofline_points(doc: dict, model: str = "qwen3.6-27b") -> list[dict]:
    from qlab.predict.workload import decode_step

    mb = doc.get("microbench") or {}
    bw = mb.get("read_gbs")
    rates = mb.get("matmul_tflops") or {}
    if not bw or not rates:
        return []
    peak_dtype, peak = max(rates.items(), key=lambda kv: kv[1])
    ridge = peak * 1e12 / (bw * 1e9)
    out = []
    for r in doc.get("decode") or []:
        if "error" in r:
            continue
        step = decode_step(model, r["quant"], r["context"])
        nbytes, flops = step.total_bytes, step.flops
        t_mem, t_flops = nbytes / (bw * 1e9), flops / (peak * 1e12)
        measured_s = 1.0 / r["scaled_tok_s"]
        out.append({"quant": r["quant"], "context": r["context"], "whole_model": bool(r.get("whole_model")),
                    "bytes_per_token": nbytes, "flops_per_token": flops, "intensity_flop_per_byte": flops / nbytes,
                    "ridge_flop_per_byte": ridge, "peak_dtype": peak_dtype, "read_gbs": bw, "peak_tflops": peak,
                    "bound": "memory" if flops / nbytes < ridge else "compute",
                    "achieved_gbs": nbytes / measured_s / 1e9, "of_roofline": max(t_mem, t_flops) / measured_s})
    return out
