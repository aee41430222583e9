"""Achieved GB/s of the decode-time kernels ÷ the device's measured copy bandwidth, beside the bar each is to
meet on a GPU (the kernels' READMEs, "Performance targets"). The fractions are measured, never assumed; a
fraction under its target is reported, not a failure: only wrong answers fail the selftest."""

from __future__ import annotations

# (op, shape overrides at Qwen3.6-27B's decode shapes, target fraction of copy bandwidth on a GPU)
CASES = [
    ("dequant_matmul", {"M": 1, "fmt": "Q4_K"}, 0.85),
    ("dequant_matmul", {"M": 1, "fmt": "Q6_K"}, 0.85),
    ("dequant_matmul", {"M": 1, "fmt": "Q8_0"}, 0.85),
    ("deltanet", {"T": 1}, 0.80),
    ("attention_decode", {"S": 32768}, 0.85),
]
CPU_ATTENTION_S = 4096   # the CPU's attention case is shorter: the selftest on the CPU must stay a CI-time check


def copy_gb_s(device: str) -> float:
    """Measured copy bandwidth (bytes read + written per second), GB/s: qlab.measure's probe."""
    from qlab.measure import copy_bandwidth_gbs

    # 512 MB on a GPU (past its L2), measure's default 256 MB on the CPU (past a server's L3)
    return copy_bandwidth_gbs(device, nbytes=1 << 29) if device.startswith("cuda") else copy_bandwidth_gbs(device)


def measure(device: str, failed: set, log=print, kernels: bool = True) -> dict:
    """{"copy_gb_s", "kernels": [{op, impl, shape, bytes, time_s, gb_s, fraction, target, meets}]}; impls in
    `failed` ({(op, impl)}) gave wrong answers and are not timed; kernels=False: the copy bandwidth alone."""
    from qlab.measure import median_s
    from qlab.tune.tuner import _get_ops

    copy = copy_gb_s(device)
    log(f"  copy bandwidth: {copy:.1f} GB/s")
    rows = []
    repeats = 20 if device.startswith("cuda") else 3
    for op, over, target in CASES if kernels else ():
        if op == "attention_decode" and not device.startswith("cuda"):
            over = {"S": CPU_ATTENTION_S}
        try:
            tops = _get_ops(op, device)
        except Exception:  # noqa: BLE001 - no impl of this op on the device kind
            continue
        for top in tops:
            if (op, top.impl) in failed:
                continue
            shape = top.full_shape(over, device)
            row = {"op": op, "impl": top.impl, "shape": {k: v for k, v in shape.items()}, "target": target}
            try:
                inputs = top.make_inputs(shape, device)
                fn = top.prepare(inputs, dict(top.defaults))
                t = median_s(fn, device, warmup=1, repeats=repeats)
                nbytes = top.cost(shape).bytes
                row |= {"bytes": nbytes, "time_s": t, "gb_s": nbytes / t / 1e9}
                row["fraction"] = row["gb_s"] / copy
                row["meets"] = row["fraction"] >= target
                log(f"  {op}/{top.impl} {_short(over)}: {row['gb_s']:.1f} GB/s = {row['fraction']:.0%} of copy "
                    f"(target {target:.0%})")
            except Exception as e:  # noqa: BLE001 - recorded; a timing that cannot run is not a wrong answer
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                log(f"  {op}/{top.impl}: not timed: {row['error']}")
            rows.append(row)
    return {"copy_gb_s": copy, "kernels": rows}


def _short(shape: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items())
