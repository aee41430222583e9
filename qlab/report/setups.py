"""The report's "other setups" section: what MTP, 2x/4x GPUs, offload and many users change, from the
predictor's setup models (`qlab.predict.setups`; formulas and errors in qlab/predict/README.md).

- mtp: decode tok/s at the headline quant and context without and with MTP (2 drafts, the published
  default acceptance), for every device;
- multi: 2x and 4x of each discrete GPU, tensor parallel and layer split, the link named;
- offload: for cards that cannot hold the headline quant, tok/s against the layers kept on the GPU (-ngl);
- serving: for serving-class parts (datacenter HBM or >= 48 GB), how many sequences fit at each context
  and their aggregate and per-user tok/s.
Every figure is a prediction (never measured here) and carries the predictor's basis.
"""

from __future__ import annotations

from qlab.errors import QlabError
from qlab.report.grid import HEADLINE_CONTEXT, HEADLINE_QUANT, MODEL

SERVING_CONTEXTS = (8192, 32768, 131072)
OFFLOAD_CONTEXT = 4096
OFFLOAD_POINTS = (0, 16, 32, 48)       # GPU layers on the curve, plus "as many as fit"
MULTI_COUNTS = (2, 4)
MAX_ROWS = 12                          # keep each table short: the first devices in the page's order


def _predict(dev, model, quant, context, setup=None, concurrency=False, profile=None):
    from qlab.predict import predict

    try:
        return predict(dev, model, quant, context, setup=setup, concurrency=concurrency, profile=profile)
    except QlabError:
        return None


def mtp_rows(devices, model: str = MODEL, profiles: dict | None = None) -> list[dict]:
    from qlab.predict.setups import Setup

    rows = []
    for d in devices[:MAX_ROWS]:
        base = _predict(d, model, HEADLINE_QUANT, HEADLINE_CONTEXT, profile=(profiles or {}).get(d.id))
        with_mtp = _predict(d, model, HEADLINE_QUANT, HEADLINE_CONTEXT, Setup(mtp=True), profile=(profiles or {}).get(d.id))
        if base is None or with_mtp is None:
            continue
        rows.append({"device": d, "plain": base["decode_tok_s"], "mtp": with_mtp["decode_tok_s"],
                     "speedup": with_mtp["decode_tok_s"] / base["decode_tok_s"], "fits": base["fits"],
                     "basis": base["basis"], "acceptance": with_mtp["setup"]["acceptance"]})
    return rows


def multi_rows(devices, model: str = MODEL, quant: str = "Q8_0", context: int = HEADLINE_CONTEXT) -> list[dict]:
    from qlab.predict.setups import Setup

    rows = []
    for d in [d for d in devices if d.kind == "gpu"][:MAX_ROWS]:
        links = ["pcie"] + (["nvlink"] if d.peer_link_gbs else [])
        for n in MULTI_COUNTS:
            for split in ("tensor", "layer"):
                for link in links:
                    if split == "layer" and link == "nvlink":
                        continue   # a layer split hands over a few KB per token: the link hardly matters
                    if link == "nvlink" and n > 2 and d.memory_type and "HBM" not in d.memory_type:
                        continue   # GeForce/workstation NVLink bridges join pairs of cards, not four
                    r = _predict(d, model, quant, context,
                                 Setup(gpus=n, split=split, link="nvlink" if link == "nvlink" else None))
                    if r is None:
                        continue
                    rows.append({"device": d, "n": n, "split": split, "link": r["setup"]["link"],
                                 "tok_s": r["decode_tok_s"], "per_gpu_gb": r["per_gpu_gb"], "fits": r["fits"],
                                 "basis": r["basis"]})
    return rows


def offload_rows(devices, model: str = MODEL, quant: str = HEADLINE_QUANT) -> list[dict]:
    from qlab.predict.setups import AUTO, Setup

    rows = []
    for d in devices:
        if d.kind != "gpu":
            continue
        plain = _predict(d, model, quant, OFFLOAD_CONTEXT)
        if plain is None or plain["fits"]:
            continue   # the curve is for cards that cannot hold the model
        auto = _predict(d, model, quant, OFFLOAD_CONTEXT, Setup(gpu_layers=AUTO))
        points = [(g, _predict(d, model, quant, OFFLOAD_CONTEXT, Setup(gpu_layers=g))) for g in OFFLOAD_POINTS]
        rows.append({"device": d, "points": [(g, r["decode_tok_s"], r["fits"]) for g, r in points if r],
                     "auto_layers": auto["setup"]["gpu_layers"] if auto else None,
                     "auto_tok_s": auto["decode_tok_s"] if auto else None})
        if len(rows) >= MAX_ROWS:
            break
    return rows


def serving_rows(devices, model: str = MODEL, quant: str = HEADLINE_QUANT) -> list[dict]:
    from qlab.predict.efficiency import device_class

    rows = []
    for d in devices:
        if not (device_class(d).endswith("datacenter") or (d.kind == "gpu" and d.memory_gb >= 48)):
            continue
        by_ctx = {}
        for c in SERVING_CONTEXTS:
            r = _predict(d, model, quant, c, concurrency=True)
            by_ctx[c] = r["concurrency"] if r else None
        rows.append({"device": d, "by_context": by_ctx})
        if len(rows) >= MAX_ROWS:
            break
    return rows


def build(devices, model: str = MODEL, profiles: dict | None = None) -> dict:
    """Everything the section shows; tables with no rows are left out by the template."""
    from qlab.predict.setups import DEFAULT_ACCEPTANCE, DEFAULT_HOST_BW_GBS

    return {"mtp": mtp_rows(devices, model, profiles), "multi": multi_rows(devices, model),
            "offload": offload_rows(devices, model), "serving": serving_rows(devices, model),
            "quant": HEADLINE_QUANT, "context": HEADLINE_CONTEXT, "offload_context": OFFLOAD_CONTEXT,
            "offload_points": OFFLOAD_POINTS, "serving_contexts": SERVING_CONTEXTS,
            "acceptance": DEFAULT_ACCEPTANCE[2], "host_bw_gbs": DEFAULT_HOST_BW_GBS}
