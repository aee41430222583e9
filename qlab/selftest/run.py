"""The selftest's steps in order, one JSON record: kernels checked against their references on the device, the
decode loop checked against the fp32 reference, bandwidth fractions measured, a short decode slice timed.
Exit status 1 when any kernel or the loop gives a wrong answer (performance below target is reported only)."""

from __future__ import annotations

import platform
import time

SCHEMA = "qlab.selftest/1"


def environment(device: str) -> dict:
    import torch

    env = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
           "machine": platform.machine(), "processor": platform.processor() or platform.machine()}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        env |= {"gpu": p.name, "compute_capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                "gpu_memory_gb": p.total_memory / 1e9}
    return env


STEPS = ("kernels", "loop", "bandwidth", "slice")


def run_selftest(device: str, log=print, steps: tuple[str, ...] = STEPS) -> dict:
    """The steps in `steps` (all by default); a step left out is recorded as an empty result."""
    from . import bandwidth, kernels, loop

    t0 = time.perf_counter()
    rec = {"schema": SCHEMA, "environment": environment(device), "steps": list(steps), "kernels": [], "loop": [],
           "bandwidth": {"copy_gb_s": None, "kernels": []}, "decode_slice": {"error": "not run (--only)"}}
    if "kernels" in steps:
        log(f"kernels against their references on {device}:")
        rec["kernels"] = kernels.check_all(device, log)
    if "loop" in steps:
        log("the decode loop against the fp32 reference:")
        rec["loop"] = loop.check_loop(device, log)
    failed = {(r["op"], r["impl"]) for r in rec["kernels"] if not r["ok"]}
    if "bandwidth" in steps or "slice" in steps:
        log("bandwidth (achieved / measured copy bandwidth):")
        rec["bandwidth"] = bandwidth.measure(device, failed, log, kernels="bandwidth" in steps)
    if "slice" in steps:
        log("decode slice:")
        rec["decode_slice"] = loop.decode_slice(device, rec["bandwidth"]["copy_gb_s"], log)
    bad_kernels = [f"{r['op']}/{r['impl']} {r['case']}" for r in rec["kernels"] if not r["ok"]]
    bad_loop = [f"decode loop {r['quant']}" for r in rec["loop"] if not r["ok"]]
    rec["failures"] = bad_kernels + bad_loop
    rec["passed"] = not rec["failures"]
    rec["seconds"] = time.perf_counter() - t0
    return rec
