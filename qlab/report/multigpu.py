"""Several identical GPUs with the model split by layers (llama.cpp's `--split-mode layer`), predicted from
the single-device prediction.

With a layer split the GPUs work one after another on each token: GPU k reads only its own layers' weights
and KV cache, so the time per token is the single device's time (as if its memory were large enough) plus
one hand-off of the hidden state per boundary. Memory adds up; bandwidth per token does not.
  per-GPU memory  = (weights + KV cache + recurrent state) / n × IMBALANCE + overhead   (overhead per GPU)
  decode time     = 1 / decode_tok_s(1 GPU) + (n − 1) × (hidden × 2 B / link + HOP_LATENCY_S)
  TTFT            = ttft(1 GPU) + (n − 1) × (prompt × hidden × 2 B / link + HOP_LATENCY_S)
These are predictions from specs, not measurements; the report marks them so.
"""

from __future__ import annotations

from qlab.report.grid import BEST_QUANTS, KV_DTYPES, MODEL, PROMPT_TOKENS, Predictions

ACT_BYTES = 2               # fp16 activations
HOP_LATENCY_S = 20e-6       # one device-to-device copy and sync through PCIe (no NVLink P2P assumed)
IMBALANCE = 1.05            # the output matrix lands on the last GPU, so its share is a little larger
DEFAULT_LINK_GBS = 16.0     # PCIe 3.0 x16 one direction, where the hwdb names no link


def link_gbs(device) -> float:
    """The link a layer split hands activations over: NVLink/Infinity Fabric where present, else PCIe."""
    return device.peer_link_gbs or device.host_link_gbs or DEFAULT_LINK_GBS


def split_by_layers(device, n: int, quant: str, context: int, preds: Predictions, kv_dtype: str = "F16",
                    model: str = MODEL) -> dict | None:
    """The prediction for `n` × `device` with the layers split evenly, or None where the predictor has no
    answer for the single device. Keys follow `qlab predict --json`, plus n_devices, per_device_gb, link_gbs."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    one = preds.get(device.id, quant, context, kv_dtype, model)
    if one is None or not one.get("decode_tok_s"):
        return None
    if n == 1:
        return {**one, "n_devices": 1, "per_device_gb": one["memory"]["total_gb"], "link_gbs": None,
                "price_usd": device.price_usd, "tdp_w": device.tdp_w}
    from qlab.models.loader import get_model

    hidden = get_model(model).hidden_size  # the activation handed from one GPU to the next, per token
    mem = one["memory"]
    shared = mem["weights_gb"] + mem["kv_cache_gb"] + mem["state_gb"]
    per_device = shared / n * IMBALANCE + mem["overhead_gb"]
    link = link_gbs(device)
    hop = ACT_BYTES * hidden / (link * 1e9) + HOP_LATENCY_S
    decode_s = 1.0 / one["decode_tok_s"] + (n - 1) * hop
    prompt_hop = ACT_BYTES * hidden * PROMPT_TOKENS / (link * 1e9) + HOP_LATENCY_S
    ttft = one["ttft_s"] + (n - 1) * prompt_hop if one.get("ttft_s") else None
    return {
        **one,
        "hw": f"{n}x-{device.id}",
        "decode_tok_s": 1.0 / decode_s,
        "ttft_s": ttft,
        "memory": {**mem, "total_gb": shared + n * mem["overhead_gb"]},
        "fits": per_device <= device.usable_memory_gb,
        "basis": "prediction (layer split)",
        "n_devices": n,
        "per_device_gb": per_device,
        "link_gbs": link,
        "price_usd": device.price_usd * n if device.price_usd else None,
        "tdp_w": device.tdp_w * n if device.tdp_w else None,
    }


def best_split(device, n: int, context: int, preds: Predictions, model: str = MODEL) -> tuple[dict, str] | None:
    """Like Predictions.best, for `n` × `device`: the highest-quality quant that fits, KV F16 before Q8_0."""
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
