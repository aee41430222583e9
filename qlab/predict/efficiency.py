"""Efficiencies: how close each kernel kind gets to the device's roofline, by device class.

The numbers come from `calibration.json` (fitted by `scripts/calibrate.py` on published llama.cpp decode
measurements), or from a profile measured on the machine (`efficiencies_from_profile`). A class with no
calibration rows gets the pooled values and the basis "roofline". Field meanings: see README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from qlab.errors import QlabError

CALIBRATION_PATH = Path(__file__).parent / "calibration.json"
# Prefill runs dense GEMMs: no prefill rows are fitted, so a fraction of the dense fp16 peak by class, set
# from llama.cpp pp512 figures as commonly reported (recalled, not fitted: e.g. 3090 Llama-3-8B Q4_K_M ~3.9k
# tok/s = 0.75 of 71 TFLOPS; A100 ~7k = 0.35 of 312; M2 Ultra Llama-2-7B Q4_0 ~1.2k = 0.6 of 27; 7900 XTX
# ~3.2k = 0.37 of 123). Big-peak datacenter parts sit lowest: llama.cpp's quantized GEMMs do not saturate
# them. A profile's measured "prefill" replaces these.
PREFILL_EFFICIENCY = {"nvidia-datacenter": 0.35, "nvidia-consumer": 0.75, "nvidia-unified": 0.5, "apple": 0.6,
                      "amd-consumer": 0.37, "amd-datacenter": 0.25, "amd-unified": 0.4, "intel": 0.3, "cpu": 0.5}
FAMILIES = ("float", "q8_0", "q4_0", "kquant", "mxfp4", "server")
# Classes the published rows never reach, where the pooled GPU numbers would mislead: a CPU streams weights
# at well under its DRAM peak (llama.cpp on desktop CPUs: about 0.6), its attention is no faster per byte,
# and it pays no kernel-launch cost per layer. Assumptions (basis "roofline") until a profile measures them.
# The CPU's dequantization runs in SIMD integer code beside the loads, not at the FP32 rate the GPU classes
# fit: its cost is a per-family time factor instead (dequant_ops 0). Weights 0.75 and the factors are what
# qlab measured on its reference CPU (profiles/cpu-host-*.json: Q8_0 streams at 0.8 of read bandwidth,
# K-quants at 0.45); a profile of the machine at hand replaces them.
UNCALIBRATED = {"cpu": {"weights": 0.75, "kv": 0.5, "layer_overhead_us": 2.0, "compute": 0.5,
                        "dequant_ops": {"float": 0.0, "q8_0": 0.0, "q4_0": 0.0, "kquant": 0.0, "mxfp4": 0.0},
                        "family_factor": {"q8_0": 1.0, "q4_0": 1.4, "kquant": 1.7, "mxfp4": 1.4}}}


@dataclass(frozen=True)
class Efficiencies:
    weights: float = 1.0                 # weight streaming (F16 matvec), fraction of peak bandwidth
    kv: float = 1.0                      # KV read by flash-attention decode at depth
    compute: float = 1.0                 # fraction of peak matrix FLOP/s in decode (batch)
    prefill: float = 0.5                 # fraction of peak matrix FLOP/s in prefill
    layer_overhead_s: float = 0.0        # fixed time per layer unit per step (launch/sync)
    family_factor: dict[str, float] = field(default_factory=dict, hash=False)  # time multiplier per weight family
    dequant_ops: dict[str, float] = field(default_factory=dict, hash=False)    # ALU ops per weight, per family
    deltanet_units: float = 1.5          # launch units of one DeltaNet layer (an attention layer = 1)
    kv_quant_factor: float = 1.0         # quantized KV cache: time relative to an F16 cache of the same length
    token_alu: float = 0.3               # small batches (<= 8 tokens, llama.cpp's matvec kernels): each extra
                                         # token costs its matmul FLOPs at this fraction of the FP32 rate
    source: str = "roofline"             # "roofline" | "calibrated" | "measured"

    def family(self, fam: str) -> float:
        return self.family_factor.get(fam, 1.0)


def device_class(dev) -> str:
    """The device class the efficiencies are kept for: vendor x memory system (HBM, GDDR, unified, CPU)."""
    vendor = (dev.vendor or "").lower()
    mem = (dev.memory_type or "").upper()
    if dev.kind == "cpu" or vendor == "cpu":
        return "cpu"
    if vendor == "apple":
        return "apple"
    if vendor in ("nvidia", "amd"):
        if "HBM" in mem:
            return f"{vendor}-datacenter"
        if dev.kind == "unified":
            return f"{vendor}-unified"
        return f"{vendor}-consumer"
    return vendor or "unknown"


@lru_cache(maxsize=1)
def load_calibration(path: str = str(CALIBRATION_PATH)) -> dict:
    p = Path(path)
    if not p.exists():
        return {}
    return json.loads(p.read_text())


def clear_caches() -> None:
    """Forget the loaded calibration (after scripts/calibrate.py rewrote it)."""
    load_calibration.cache_clear()
    _efficiencies_for_class.cache_clear()


def _from_entry(entry: dict, cal: dict, cls: str, source: str) -> Efficiencies:
    return Efficiencies(weights=entry["weights"], kv=entry["kv"], compute=entry.get("compute", 0.6),
                        prefill=entry.get("prefill", PREFILL_EFFICIENCY.get(cls, 0.4)),
                        layer_overhead_s=entry.get("layer_overhead_us", 0.0) * 1e-6,
                        family_factor=dict(entry.get("family_factor", cal.get("family_factor", {}))),
                        dequant_ops=dict(entry.get("dequant_ops", cal.get("dequant_ops", {}))),
                        deltanet_units=cal.get("deltanet_layer_units", 1.5),
                        kv_quant_factor=cal.get("kv_quant_factor", 1.0),
                        token_alu=(cal.get("setups") or {}).get("token_alu_eff", 0.3), source=source)


def efficiencies_for(dev) -> Efficiencies:
    """Calibrated efficiencies for the device's class, or the pooled ones (basis "roofline")."""
    return _efficiencies_for_class(device_class(dev))


@lru_cache(maxsize=64)
def _efficiencies_for_class(cls: str) -> Efficiencies:
    """One frozen Efficiencies per class (callers never mutate it; dataclasses.replace makes new ones)."""
    cal = load_calibration()
    if cls in cal.get("classes", {}):
        return _from_entry(cal["classes"][cls], cal, cls, "calibrated")
    if cls in UNCALIBRATED:
        return _from_entry(UNCALIBRATED[cls], cal, cls, "roofline")
    if "pooled" in cal:
        return _from_entry(cal["pooled"], cal, cls, "roofline")
    return Efficiencies(prefill=PREFILL_EFFICIENCY.get(cls, 0.4))


def _same_device(profile_id: str, dev) -> bool:
    if profile_id.lower() in (dev.id.lower(), *(a.lower() for a in dev.aliases)):
        return True
    try:
        from qlab.hwdb import get_device

        return get_device(profile_id).id == dev.id
    except QlabError:
        return False


def efficiencies_from_profile(profile: dict, dev=None) -> Efficiencies:
    """Efficiencies measured by `qlab profile` (see README.md for the fields). Missing kinds fall back to the
    calibrated values of the device's class, so a partial profile still predicts."""
    cal = profile.get("calibration") if isinstance(profile, dict) else None
    if not isinstance(cal, dict) or not isinstance(cal.get("efficiencies"), dict):
        raise QlabError("profile: expected profile['calibration']['efficiencies'] = {'weights': ..., 'kv': ..., ...} "
                        "(see qlab/predict/README.md)")
    eff = cal["efficiencies"]
    if dev is not None and cal.get("device_id") and not _same_device(str(cal["device_id"]), dev):
        raise QlabError(f"profile: measured on {cal['device_id']!r}, not on {dev.id!r}; predict with --hw "
                        f"{cal['device_id']} or use a profile of {dev.id}")
    base = efficiencies_for(dev) if dev is not None else Efficiencies()
    vals = {}
    for key in ("weights", "kv", "compute", "prefill"):
        if key in eff:
            v = eff[key]
            if not isinstance(v, (int, float)) or not 0 < v <= 1.5:
                raise QlabError(f"profile: calibration.efficiencies.{key} must be a number in (0, 1.5], got {v!r}")
            vals[key] = float(v)
    if "layer_overhead_us" in eff:
        v = eff["layer_overhead_us"]
        if not isinstance(v, (int, float)) or v < 0:
            raise QlabError(f"profile: calibration.efficiencies.layer_overhead_us must be >= 0, got {v!r}")
        vals["layer_overhead_s"] = float(v) * 1e-6
    fam = dict(base.family_factor)
    if isinstance(eff.get("family_factor"), dict):
        fam.update({str(k): float(v) for k, v in eff["family_factor"].items()})
    deq = dict(base.dequant_ops)
    if isinstance(eff.get("dequant_ops"), dict):
        deq.update({str(k): float(v) for k, v in eff["dequant_ops"].items()})
    # basis "class": the profile's own fit failed its check (qlab/predict/calibrate/from_profile.py); its
    # measured specs still apply, the efficiencies are the class's, and the output says so
    source = "class" if cal.get("basis") == "class" else "measured"
    return replace(base, **vals, family_factor=fam, dequant_ops=deq, source=source)
