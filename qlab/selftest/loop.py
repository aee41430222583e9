"""The decode loop on the device: the engine with the device's default kernels against the fp32 reference
(logits of a prefill and a few decode steps on a narrow 4-layer slice), then a short timed decode slice.

On CUDA the timed slice is a full-width 4-layer Q4_K_M slice at 4096 tokens of context (the weights a real
decode streams, ~2 GB); on the CPU a narrow one, so that the CPU run stays a CI-time check."""

from __future__ import annotations

PROMPT = [5, 17, 300, 2, 99, 511, 0, 42]
DECODE = 3
TOL = {"Q8_0": 1e-2, "Q4_K_M": 2e-2}   # the llama.cpp cross-check's tolerances (tests/test_llamacpp_crosscheck.py)


def _logits(model) -> "torch.Tensor":
    import torch

    from qlab.engine.model import decode_one_token, prefill

    st = model.new_state(32)
    outs = [prefill(model, torch.tensor([PROMPT], device=model.device), st, all_logits=True)[0]]
    token = outs[0][-1].argmax(-1).reshape(1)
    for _ in range(DECODE):
        logits = decode_one_token(model, token, st)
        outs.append(logits)
        token = logits.argmax(-1)
    return torch.cat(outs).float().cpu()


def check_loop(device: str, log=print) -> list[dict]:
    """Per quant: {"quant", "rel_rms", "tol", "top1", "fallbacks", "ok", "error"}."""
    from qlab.engine.config import QWEN36_27B
    from qlab.engine.model import Qwen35
    from qlab.engine.ops import default_backend, reference_backend
    from qlab.engine.weights import synthetic_weights
    from qlab.testing import rel_rms_error

    cfg = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)
    rows = []
    for quant, tol in TOL.items():
        row = {"quant": quant, "tol": tol, "rel_rms": None, "top1": None, "fallbacks": {}, "error": ""}
        try:
            w = synthetic_weights(cfg, quant, seed=42)
            want = _logits(Qwen35(w, reference_backend("cpu")))
            model = Qwen35(w, default_backend(device))
            got = _logits(model)
            row["rel_rms"] = rel_rms_error(want, got)
            row["top1"] = float((want.argmax(-1) == got.argmax(-1)).float().mean())
            row["fallbacks"] = dict(model.ops.fallbacks)
        except Exception as e:  # noqa: BLE001 - a crash in the loop is a failed check
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        # a matmul that falls back to the host on a GPU is a wiring failure, not a slow path to accept
        row["ok"] = not row["error"] and row["rel_rms"] <= tol and not (device != "cpu" and row["fallbacks"])
        log(f"  decode loop {quant} vs the fp32 reference: "
            + (row["error"] or f"rel RMS {row['rel_rms']:.4f} (tol {tol}), top-1 {row['top1']:.0%}"
               + (f", fallbacks {row['fallbacks']}" if row["fallbacks"] else "")))
        rows.append(row)
    return rows


def decode_slice(device: str, copy_gb_s: float, log=print) -> dict:
    """run_decode_bench on a 4-layer Q4_K_M slice: tok/s, achieved GB/s and its fraction of copy bandwidth."""
    from qlab.engine.bench import run_decode_bench

    gpu = device.startswith("cuda")
    kw = dict(context=4096, tokens=16) if gpu else dict(context=64, tokens=4, width_scale=8, vocab=4096,
                                                       prefill_tokens=16)
    try:
        rec = run_decode_bench(layers=4, quant="Q4_K_M", device=device, **kw)
    except Exception as e:  # noqa: BLE001 - recorded; the kernel and loop checks carry the verdict
        err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        log(f"  decode slice: not run: {err}")
        return {"error": err}
    out = {"quant": "Q4_K_M", "layers": 4, **kw, "decode_tok_s": rec.get("decode_tok_s"),
           "achieved_gb_s": rec.get("achieved_gb_s"), "matmul_fallbacks": rec.get("matmul_fallbacks", {}),
           "target": 0.80}
    out["fraction"] = out["achieved_gb_s"] / copy_gb_s if out["achieved_gb_s"] and copy_gb_s else None
    log(f"  decode slice (4-layer Q4_K_M, {'full width' if gpu else 'width/8'}): {out['decode_tok_s']:.1f} tok/s, "
        f"{out['achieved_gb_s']:.1f} GB/s = {out['fraction']:.0%} of copy (target on a GPU 80%)")
    return out
