"""The whole model where it fits: a synthetic GGUF of every layer, decoded by the engine, next to the slice.

Why a file: synthetic weights drawn in memory keep both the GGUF-layout matrices and the row-interleaved (x8)
copies the CPU kernels make of Q4_K/Q6_K matrices, about twice the model. Read from a GGUF, the file is
memory-mapped and each matrix's pages are released once its x8 copy exists (qlab/kernels/dequant_matmul/
cpu_x8.py), so the process holds about one model's worth: that is what `fits` checks. The file is written
under $QLAB_HOME/models/ (reused by the next run with the same model, quant and width) and costs its size on
disk; `extrapolation_error` compares the slice's 64-layer figure with the whole-model measurement.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from qlab.paths import qlab_home

GB = 1e9
METADATA_SLACK = 64 << 20   # a GGUF's header: tensor table and vocabulary (a few MB for 248K tokens)
MEMORY_MARGIN = 0.85     # of MemAvailable: the OS, the page cache of the file and the profile run itself


def models_dir() -> Path:
    return qlab_home() / "models"


def model_config(model: str, width_scale: float = 1.0, vocab: int | None = None):
    from qlab.engine.gguf_io import default_synth_config

    return default_synth_config(model, None, width_scale, vocab)


def plan(model: str, quant: str, context: int, width_scale: float = 1.0, vocab: int | None = None,
         available_bytes: int | None = None, disk_free_bytes: int | None = None) -> dict:
    """Whether the whole model at `quant` fits here, and why not: {"fits", "file_bytes", "needs_bytes", "why"}."""
    from qlab.engine import memory
    from qlab.engine.weights import synthetic_nbytes

    cfg = model_config(model, width_scale, vocab)
    file_bytes = synthetic_nbytes(cfg, quant)
    # x8 copies replace the pages they were made from: one model's worth, plus the cache and the states
    needs = file_bytes + cfg.kv_cache_bytes(context + 64, 2) + cfg.state_bytes()
    path = model_path(model, quant, width_scale, vocab)
    available = memory.available_bytes() if available_bytes is None else available_bytes
    if disk_free_bytes is None:
        models_dir().mkdir(parents=True, exist_ok=True)
        disk_free_bytes = shutil.disk_usage(models_dir()).free
    out = {"fits": True, "file_bytes": file_bytes, "needs_bytes": needs, "path": str(path), "why": ""}
    if available is not None and needs > MEMORY_MARGIN * available:
        out |= {"fits": False, "why": f"needs {needs / GB:.1f} GB of memory, {available / GB:.1f} GB available"}
    elif not path.exists() and file_bytes > disk_free_bytes * 0.9:
        out |= {"fits": False, "why": f"the {file_bytes / GB:.1f} GB model file does not fit in the "
                                      f"{disk_free_bytes / GB:.1f} GB free under {models_dir()}"}
    return out


def model_path(model: str, quant: str, width_scale: float = 1.0, vocab: int | None = None) -> Path:
    width = "" if width_scale == 1.0 and not vocab else f"-w{width_scale:g}-v{vocab or 'full'}"
    return models_dir() / f"{model}-{quant.upper()}{width}-seed0.gguf"


def ensure_model_file(model: str, quant: str, width_scale: float = 1.0, vocab: int | None = None,
                      log=print) -> Path:
    """The synthetic whole-model GGUF, written once (atomically) and reused while its size is what the current
    tensor table and quant mix give (tensor data plus at most the metadata's slack): a file written before the
    mix changed is written again."""
    from qlab.engine.gguf_io import write_synthetic_gguf
    from qlab.engine.weights import synthetic_nbytes

    cfg = model_config(model, width_scale, vocab)
    path = existing_model_file(model, quant, width_scale, vocab)
    if path is not None:
        return path
    path = model_path(model, quant, width_scale, vocab)
    log(f"writing the whole {model} at {quant} ({synthetic_nbytes(cfg, quant) / GB:.1f} GB) to {path} "
        "(once; later runs reuse it)")
    return write_synthetic_gguf(path, cfg, quant.upper(), 0)


def extrapolation_error(slice_row: dict | None, whole_row: dict) -> dict:
    """How far the slice's whole-model figure lands from the whole model measured at the same quant and context.
    Where the whole-model run timed the slice's layers beside it (`side_by_side`, one slice step after each
    whole step, same memory), that is the error: the arithmetic's alone, the machine's load changing between
    the two runs cancels. The slice run on its own is compared too (`across_runs_error_pct`)."""
    side = whole_row.get("side_by_side")
    out = {"quant": whole_row["quant"], "context": whole_row["context"], "whole_tok_s": whole_row["tok_s"]}
    if slice_row is not None:
        across = 100 * (slice_row["scaled_tok_s"] / whole_row["tok_s"] - 1)
        out |= {"slice_layers": slice_row["layers_run"], "slice_scaled_tok_s": slice_row["scaled_tok_s"],
                "error_pct": across, "basis": "slice run on its own"}
    if side:
        out |= {"slice_layers": side["layers"], "slice_scaled_tok_s": side["scaled_tok_s"],
                "error_pct": side["error_pct"], "basis": "slice timed beside the whole model, step for step"}
        if slice_row is not None:
            out["across_runs_error_pct"] = across
    return out


def existing_model_file(model: str, quant: str, width_scale: float = 1.0, vocab: int | None = None) -> Path | None:
    """The whole-model GGUF `ensure_model_file` wrote, when it is here and complete; None otherwise."""
    from qlab.engine.weights import synthetic_nbytes

    path = model_path(model, quant, width_scale, vocab)
    data = synthetic_nbytes(model_config(model, width_scale, vocab), quant)
    ok = path.exists() and data <= path.stat().st_size <= data * 1.01 + METADATA_SLACK
    return path if ok else None


def carried_error(out_dir: Path, fingerprint: dict | None, exclude: Path | None = None) -> dict | None:
    """The extrapolation errors measured by the newest whole-model profile of this machine in `out_dir`
    (what a --quick profile's slice figure carries), or None when there is none."""
    from qlab.errors import QlabError
    from qlab.profile.machine import differences
    from qlab.profile.schema import load_profile

    best = None
    for f in sorted(Path(out_dir).glob("*.json")) if Path(out_dir).is_dir() else []:
        if exclude is not None and f.resolve() == Path(exclude).resolve():
            continue
        try:
            doc = load_profile(f)
        except QlabError:
            continue    # an unreadable or foreign file is not evidence
        if not doc.get("extrapolation") or not isinstance(doc.get("fingerprint"), dict) or not fingerprint:
            continue
        if differences(doc["fingerprint"], fingerprint, "cpu") or differences(doc["fingerprint"], fingerprint, "gpu"):
            continue
        if best is None or doc["created"] > best[1]["created"]:
            best = (f, doc)
    if best is None:
        return None
    return {"from": best[0].name, "created": best[1]["created"], "rows": best[1]["extrapolation"]}
