"""Several identical GPUs in the report: which 2x/4x setups change the answer (a better quant, or the model
at all, where fewer GPUs could not). The cost model is the predictor's (`qlab.predict.setups`: a layer split
runs the GPUs one after another, plus a hand-off of the hidden state per boundary; tensor parallel splits
every layer and all-reduces twice per layer); this module only picks and ranks setups for the page.
"""

from __future__ import annotations

from qlab.predict.setups import HOP_US, LAYER_IMBALANCE, link_gbs as _link
from qlab.report.grid import BEST_QUANTS, KV_DTYPES, MODEL, Predictions

HOP_LATENCY_S = HOP_US * 1e-6   # shown in the page's methods text
IMBALANCE = LAYER_IMBALANCE


def link_gbs(device) -> float:
    """The link a layer split hands activations over: the card's PCIe generation (the predictor's default)."""
    return _link(device, None)[0]


def split_by_layers(device, n: int, quant: str, context: int, preds: Predictions, kv_dtype: str = "F16",
                    model: str = MODEL) -> dict | None:
    """The prediction for `n` x `device` with the layers split evenly, or None where the predictor has no
    answer for the single device. Keys follow `qlab predict --json`, plus n_devices, per_device_gb, link_gbs."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    one = preds.get(device.id, quant, context, kv_dtype, model)
    if one is None or not one.get("decode_tok_s"):
        return None
    if n == 1:
        return {**one, "n_devices": 1, "per_device_gb": one["memory"]["total_gb"], "link_gbs": None,
                "price_usd": device.price_usd, "tdp_w": device.tdp_w}
    from qlab.predict import predict
    from qlab.predict.setups import Setup

    r = predict(preds.devices.get(device.id, device), model, quant, context, kv_dtype=kv_dtype,
                profile=preds.profiles_by_hw.get(device.id), setup=Setup(gpus=n, split="layer"))
    mem = one["memory"]
    return {
        **one,
        "hw": f"{n}x-{device.id}",
        "decode_tok_s": r["decode_tok_s"],
        "ttft_s": r["ttft_s"],
        "memory": {**mem, "total_gb": mem["weights_gb"] + mem["kv_cache_gb"] + mem["state_gb"] + n * mem["overhead_gb"]},
        "fits": r["fits"],
        "basis": "prediction (layer split)",
        "n_devices": n,
        "per_device_gb": r["per_gpu_gb"],
        "link_gbs": link_gbs(device),
        "price_usd": device.price_usd * n if device.price_usd else None,
        "tdp_w": device.tdp_w * n if device.tdp_w else None,
    }


def best_split(device, n: int, context: int, preds: Predictions, model: str = MODEL) -> tuple[dict, str] | None:
    """Like Predictions.best, for `n` x `device`: the highest-quality quant that fits, KV F16 before Q8_0."""
    for quant in BEST_QUANTS:
        for kv in KV_DTYPES:
            p = split_by_layers(device, n, quant, context, preds, kv, model)
            if p is not None and p["fits"]:
                return p, kv
    return None


def rank(best: tuple[dict, str] | None) -> int:
    """Smaller is better: the quant's place in BEST_QUANTS (KV Q8_0 half a step worse); nothing fits = worst."""
    if best is None:
        return 2 * len(BEST_QUANTS) + 2
    p, kv = best
    return 2 * BEST_QUANTS.index(p["quant"]) + (kv != "F16")


def options(devices, contexts, preds: Predictions, counts=(2, 4), model: str = MODEL) -> list[dict]:
    """Multi-GPU setups that change the answer: for each discrete GPU and n in `counts`, the setup is listed
    when at some context it runs a better quant (or runs at all) where n/2 (or 1) devices could not."""
    rows = []
    for d in devices:
        if d.kind != "gpu":
            continue  # unified-memory machines and CPUs are not split across boxes here
        previous = {c: preds.best(d.id, c, model) for c in contexts}
        for n in counts:
            current = {c: best_split(d, n, c, preds, model) for c in contexts}
            changed = [c for c in contexts if rank(current[c]) < rank(previous[c])]
            if changed:
                rows.append({"device": d, "n": n, "by_context": current, "before": previous, "changed": changed,
                             "link_gbs": link_gbs(d)})
            previous = current
    return rows
