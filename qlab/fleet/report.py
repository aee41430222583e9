"""The fleet comparison: measured vs predicted per machine, the spread between machines of one class, and
the fleet's best machine per quant and context; as a dict (the JSON contract) and as one HTML page.

A machine's *class* is what should make two machines alike: the GPU's name, or the CPU's model, core count
and memory size (from the profile's fingerprint). Two instances of one cloud type are two machines, one class.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from qlab.errors import QlabError
from qlab.fleet.manifest import MANIFEST


def load_fleet(directory: Path) -> dict:
    """The profiles in `directory` (each validated) and the fleet manifest if there is one."""
    from qlab.profile.schema import load_profile

    if not directory.is_dir():
        raise QlabError(f"--profiles {directory}: not a directory")
    manifest = {}
    if (directory / MANIFEST).is_file():
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise QlabError(f"{directory / MANIFEST}: not a readable fleet manifest ({e})") from None
    slots = manifest.get("slots", {}) if isinstance(manifest, dict) else {}
    by_file = {s.get("profile"): k for k, s in slots.items() if s.get("profile")}
    profiles = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == MANIFEST:
            continue
        profiles[by_file.get(path.name, path.stem)] = load_profile(path)
    if not profiles and not slots:
        raise QlabError(f"--profiles {directory}: no profiles (*.json) and no {MANIFEST}")
    return {"profiles": profiles, "slots": slots}


def machine_class(doc: dict) -> str:
    fp = doc.get("fingerprint") or {}
    gpu, cpu = fp.get("gpu"), fp.get("cpu") or {}
    if gpu:
        return gpu.get("name") or doc["device"]["name"]
    if cpu:
        return f"{cpu.get('model', '?')}, {cpu.get('cores', '?')} cores, {round(cpu.get('memory_gb') or 0)} GB"
    return doc["device"]["name"]


def _measured(row: dict) -> tuple[float | None, str]:
    """A decode row's full-model tok/s and how it was obtained (whole model, or a slice extrapolated)."""
    layers, full = row.get("layers"), row.get("full_layers")
    if layers and full and layers == full and row.get("decode_tok_s"):
        return row["decode_tok_s"], "whole model"
    fm = row.get("full_model") or {}
    if fm.get("tok_s"):
        return fm["tok_s"], f"{layers}-layer slice, extrapolated"
    if fm.get("ms_per_token"):
        return 1000.0 / fm["ms_per_token"], f"{layers}-layer slice, extrapolated"
    return None, "not measured"


def _spec_prediction(doc: dict, quant: str, context: int) -> dict | None:
    """What the hwdb (or the node's detected specs, for a CPU) predicts without this profile."""
    from qlab.predict import predict

    dev = doc["device"]
    try:
        if dev.get("known") and dev.get("id") not in (None, "cpu-host", "pending"):
            from qlab.hwdb import get_device

            return predict(get_device(dev["id"]), doc["options"].get("model", "qwen3.6-27b"), quant, context)
        from dataclasses import fields

        from qlab.hwdb.device import Device

        names = {f.name for f in fields(Device)}
        specs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (dev.get("specs") or {}).items()
                 if k in names}
        device = Device(id=dev["id"], name=dev["name"], **{"vendor": "cpu", "kind": dev.get("kind", "cpu"),
                                                          "architecture": "", **specs})
        return predict(device, doc["options"].get("model", "qwen3.6-27b"), quant, context)
    except (QlabError, TypeError, ValueError, KeyError):
        return None


def _pct(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(100.0 * (a - b) / b, 1)


def compare_fleet(fleet: dict) -> dict:
    machines, failed = [], []
    for key, slot in sorted(fleet["slots"].items()):
        if slot.get("status") != "done":
            failed.append({"key": key, "status": slot.get("status"), "error": slot.get("error"),
                           "host": slot.get("host"), "attempts": slot.get("attempts")})
    for key, doc in sorted(fleet["profiles"].items()):
        preds = {(p["quant"], p["context"]): p for p in doc.get("predictions", []) if p.get("batch", 1) == 1}
        rows = []
        for row in doc.get("decode", []):
            tok_s, how = _measured(row)
            mine = preds.get((row["quant"], row["context"]), {})
            spec = _spec_prediction(doc, row["quant"], row["context"])
            rows.append({"quant": row["quant"], "context": row["context"], "measured_tok_s": tok_s, "measured": how,
                         "profile_tok_s": mine.get("decode_tok_s"), "profile_basis": mine.get("basis"),
                         "spec_tok_s": spec["decode_tok_s"] if spec else None,
                         "spec_basis": spec.get("basis") if spec else None,
                         "spec_error_pct": _pct(spec["decode_tok_s"] if spec else None, tok_s)})
        micro = doc.get("microbench") or {}
        read = (micro.get("read") or {}).get("gbs") if isinstance(micro.get("read"), dict) else micro.get("read_gbs")
        stages = doc.get("stages", {})
        machines.append({"key": key, "host": fleet["slots"].get(key, {}).get("host"), "class": machine_class(doc),
                         "device_id": doc["device"]["id"], "device_name": doc["device"]["name"],
                         "read_gbs": read, "decode": rows,
                         "stages": {n: s.get("status") for n, s in stages.items()},
                         "calibration": (doc.get("calibration") or {}).get("basis"),
                         "predictions": list(preds.values())})
    return {"machines": machines, "failed": failed, "spread": _spreads(machines), "best": _best(machines)}


def _spread(values: list[float]) -> dict:
    lo, hi, mid = min(values), max(values), statistics.median(values)
    return {"n": len(values), "min": lo, "median": mid, "max": hi, "spread_pct": round(100 * (hi - lo) / mid, 1)}


def _spreads(machines: list[dict]) -> list[dict]:
    """Per class with two or more machines: how far apart its machines measured."""
    out = []
    for cls in sorted({m["class"] for m in machines}):
        group = [m for m in machines if m["class"] == cls]
        if len(group) < 2:
            continue
        reads = [m["read_gbs"] for m in group if m["read_gbs"]]
        if len(reads) >= 2:
            out.append({"class": cls, "metric": "read GB/s"} | _spread(reads))
        for q, c in sorted({(r["quant"], r["context"]) for m in group for r in m["decode"]}):
            vals = [r["measured_tok_s"] for m in group for r in m["decode"]
                    if (r["quant"], r["context"]) == (q, c) and r["measured_tok_s"]]
            if len(vals) >= 2:
                out.append({"class": cls, "metric": f"decode tok/s {q} @ {c}"} | _spread(vals))
    return out


def _best(machines: list[dict]) -> list[dict]:
    """The fastest machine that fits, per quant and context; measured (or profile-calibrated) figures only."""
    best: dict[tuple, dict] = {}
    for m in machines:
        for p in m["predictions"]:
            if not p.get("fits") or p.get("basis") not in ("measured", "calibrated", "class"):
                continue
            k = (p["quant"], p["context"])
            if k not in best or p["decode_tok_s"] > best[k]["decode_tok_s"]:
                best[k] = {"quant": p["quant"], "context": p["context"], "key": m["key"],
                           "device_name": m["device_name"], "decode_tok_s": p["decode_tok_s"], "basis": p["basis"]}
    return [best[k] for k in sorted(best)]


def write_fleet_report(out: Path, comparison: dict) -> Path:
    import jinja2

    from qlab.io import write_atomic

    env = jinja2.Environment(loader=jinja2.PackageLoader("qlab.fleet", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))

    def num(x, digits=3):
        return "—" if x is None else f"{x:.{digits}g}"

    env.filters["num"] = num
    html = env.get_template("fleet.html.j2").render(c=comparison)
    if out.exists() and out.is_dir():
        raise QlabError(f"--out {out}: is a directory; give a file name")
    return write_atomic(out, html)
