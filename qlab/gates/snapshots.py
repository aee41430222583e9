"""Deterministic gates that need no timing: the AOT compile report and a golden table of predictions.

Both are checked-in JSON snapshots; any difference fails the gate and is printed, so that a change in a
kernel's register use or in the predictor is a visible, reviewed diff (`qlab bench gate --update-snapshots`
rewrites them after review).
"""

from __future__ import annotations

import json
from pathlib import Path

from qlab.errors import QlabError
from qlab.io import write_json_atomic

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "snapshots"
COMPILE_SNAPSHOT = SNAPSHOT_DIR / "compile_report.json"
GOLDEN_SNAPSHOT = SNAPSHOT_DIR / "golden_predictions.json"

GOLDEN_HW = ("rtx-3090", "rtx-4090", "rtx-5090", "a100-80gb-sxm", "h100-sxm", "m4-max-40c", "m3-ultra", "dgx-spark")
GOLDEN_MODELS = ("qwen3.6-27b", "qwen3-32b")
GOLDEN_QUANTS = ("Q4_K_M", "Q8_0")
GOLDEN_CONTEXTS = (4096, 32768, 131072)
GOLDEN_FIELDS = ("decode_tok_s", "prefill_tok_s", "ttft_s", "fits", "bound", "basis")


def compile_snapshot() -> dict[str, dict]:
    from qlab.kernels.aot import compile_report

    return {f"{r.op}/{r.name}/sm_{r.cc}/w{r.num_warps}/s{r.num_stages}":
            {"regs": r.regs, "spills": r.spills, "shared_bytes": r.shared_bytes, "error": r.error}
            for r in compile_report()}


def golden_snapshot() -> dict[str, dict]:
    from qlab.predict import predict

    out = {}
    for hw in GOLDEN_HW:
        for model in GOLDEN_MODELS:
            for quant in GOLDEN_QUANTS:
                for ctx in GOLDEN_CONTEXTS:
                    p = predict(hw, model, quant, ctx)
                    row = {k: p[k] for k in GOLDEN_FIELDS}
                    row["total_gb"] = p["memory"]["total_gb"]
                    out[f"{hw}/{model}/{quant}/{ctx}"] = row
    return out


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= rtol * max(abs(float(a)), abs(float(b)), 1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def diff_snapshots(expected: dict, actual: dict, rtol: float = 1e-6) -> list[str]:
    """Human-readable lines, one per difference (empty when equal)."""
    lines = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual:
            lines.append(f"- {key}: gone (was {expected[key]})")
        elif key not in expected:
            lines.append(f"+ {key}: new {actual[key]}")
        else:
            for field in sorted(set(expected[key]) | set(actual[key])):
                e, a = expected[key].get(field), actual[key].get(field)
                if not _close(e, a, rtol):
                    lines.append(f"~ {key} {field}: {e} -> {a}")
    return lines


def load_snapshot(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise QlabError(f"snapshot {path}: no such file (make it with `qlab bench gate --update-snapshots`)") from None
    except json.JSONDecodeError as e:
        raise QlabError(f"snapshot {path}: not JSON ({e})") from None


def check(kind: str, path: Path | None = None, update: bool = False) -> list[str]:
    """Compare the current snapshot of `kind` ("compile" or "golden") with the checked-in one."""
    make, default = {"compile": (compile_snapshot, COMPILE_SNAPSHOT), "golden": (golden_snapshot, GOLDEN_SNAPSHOT)}[kind]
    path = Path(path or default)
    actual = make()
    if update:
        write_json_atomic(path, actual)
        return []
    expected = load_snapshot(path)
    if kind == "compile":
        from qlab.kernels.aot import CUPY_PREFIX, nvcc_path

        if nvcc_path() is None:  # the CuPy rows need nvcc (the CUDA toolkit): without it, Triton's alone
            expected = {k: v for k, v in expected.items() if not k.split("/")[1].startswith(CUPY_PREFIX)}
    return diff_snapshots(expected, actual)
