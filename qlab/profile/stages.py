"""The stages of `qlab profile`, each a function (doc, options, ctx) -> None that fills its part of the
profile document. The runner saves the document after every stage (and inside long stages after every
item), so an interrupted run keeps what it finished."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qlab.errors import QlabError
from qlab.profile.options import ProfileOptions

@dataclasses.dataclass
class Context:
    """What the stages share in one run: the torch device and a callback that saves the document."""
    torch_device: str = "cpu"
    save: Callable[[], None] = lambda: None
    log: Callable[[str], None] = print


def _device_record(det) -> dict:
    dev = det.device
    specs = {k: v for k, v in dataclasses.asdict(dev).items() if k not in ("sources", "aliases", "id", "name", "notes")}
    return {"id": dev.id, "name": dev.name, "kind": dev.kind, "source": det.source, "known": bool(det.known),
            "specs": specs, "details": dict(det.details or {})}


def resolve_device(gpu: str):
    """`--gpu auto|cpu|cuda|mps|ID` -> (Detection, torch device string). Asking for hardware that is not
    here is an error that says what is."""
    import torch

    from qlab.hwdb import get_device
    from qlab.hwdb.detect import Detection, detect_device

    have_cuda = torch.cuda.is_available()
    have_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    here = ["cpu"] + (["cuda"] if have_cuda else []) + (["mps"] if have_mps else [])
    choice = gpu.lower()
    if choice == "auto":
        det = detect_device("auto")
        return det, {"nvml": "cuda", "apple": "mps"}.get(det.source, "cpu")
    if choice == "cpu":
        return detect_device("cpu"), "cpu"
    if choice in ("cuda", "mps"):
        if choice not in here:
            raise QlabError(f"--gpu {gpu}: no {choice.upper()} device is available on this machine; "
                            f"available: {', '.join(here)} (or --gpu auto)")
        det = detect_device(choice if choice == "cuda" else "apple")
        return det, choice
    # A hwdb id: profile that device only if it is the one here.
    wanted = get_device(gpu)
    det = detect_device("auto")
    if det.device.id != wanted.id:
        raise QlabError(f"--gpu {gpu}: this machine has {det.device.name} ({det.device.id}), not {wanted.name}; "
                        f"profile it with --gpu auto, or predict {wanted.id} with `qlab predict --hw {wanted.id}`")
    return det, {"nvml": "cuda", "apple": "mps"}.get(det.source, "cpu")


def stage_detect(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    det, torch_device = resolve_device(opts.gpu)
    doc["device"] = _device_record(det) | {"torch_device": torch_device}
    ctx.torch_device = torch_device
    warn = fits_warning(det.device, opts)
    if warn:
        doc["device"]["details"]["fit_warning"] = warn
        ctx.log(warn)


def fits_warning(device, opts: ProfileOptions) -> str | None:
    """Say up front when the full model fits at none of the asked quants, and which quant would fit."""
    try:
        from qlab.predict import predict
    except ImportError:
        return None
    asked = {q: predict(device, opts.model, q, min(opts.contexts))["fits"] for q in opts.quants}
    if any(asked.values()):
        return None
    fitting = [q for q in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S", "IQ4_XS", "Q3_K_M", "Q2_K")
               if predict(device, opts.model, q, min(opts.contexts))["fits"]]
    also = f"; would fit: {', '.join(fitting)}" if fitting else "; no quant of the full model fits"
    return (f"{device.id}: {opts.model} does not fit in {device.usable_memory_gb:.1f} GB at "
            f"{', '.join(opts.quants)}{also}. Kernels and a slice are still measured.")


def stage_microbench(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    from qlab.profile.microbench import run_all

    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    doc["microbench"] = mb = run_all(ctx.torch_device, quick=opts.mode == "quick")
    if doc["device"]["source"] == "cpu":
        # The host CPU's bandwidth and peak were estimates: from now on the profile's device carries what was
        # measured, so that predictions for cpu-host rest on this machine's real figures.
        specs = doc["device"]["specs"]
        measured = {"mem_bandwidth_gbs": mb["read_gbs"], "fp32_tflops": mb["matmul_tflops"].get("float32"),
                    "bf16_tflops": mb["matmul_tflops"].get("bfloat16")}
        doc["device"]["details"]["estimated_specs"] = {k: specs.get(k) for k in measured}
        specs.update({k: v for k, v in measured.items() if v})
        doc["device"]["details"]["measured_specs"] = sorted(k for k, v in measured.items() if v)


def _peak(doc: dict) -> tuple[float, float]:
    mb = doc.get("microbench") or {}
    tflops = max((mb.get("matmul_tflops") or {"x": 0.0}).values())
    return mb.get("read_gbs") or doc["device"]["specs"]["mem_bandwidth_gbs"], tflops


def tune_shapes_for(op: str, mode: str) -> list[dict]:
    """The tuner's Qwen3.6-27B shapes; --quick keeps the decode ones (one token, depth ≤ 4K), since decode is
    what the profile's predictions rest on and prefill shapes take seconds per call on a CPU."""
    from qlab.tune.shapes import preset_shapes

    shapes = preset_shapes(op)
    if mode != "quick":
        return shapes
    return [s for s in shapes if s.get("T", 1) == 1 and s.get("M", 1) == 1 and s.get("S", 0) <= 4096]


def stage_tune(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    """Tune every kernel op present at Qwen3.6-27B shapes; the tuner's cache makes a second run fast.
    An op that fails is recorded with its error and the others still run."""
    from qlab.tune import OPS, tune_shapes

    kernels = doc.setdefault("kernels", [])
    errors = doc.setdefault("kernel_errors", {})
    done = {k["op"] for k in kernels}
    ops = [op for op in OPS if op not in done]
    budget = opts.tune_budget_s / max(1, len(ops))
    bw, tflops = _peak(doc)
    for op in ops:
        shapes = tune_shapes_for(op, opts.mode)
        if not shapes:
            errors[op] = f"skipped in --{opts.mode} mode (prefill shapes only)"
            continue
        try:
            results = tune_shapes(op, shapes, device=ctx.torch_device, budget_s=budget)
        except Exception as e:  # noqa: BLE001 — recorded per op; the next op still runs
            errors[op] = f"{type(e).__name__}: {str(e)[:300]}"
            ctx.log(f"tuning {op} failed: {errors[op]}")
            continue
        errors.pop(op, None)
        for r in results:
            row = r.to_dict() if hasattr(r, "to_dict") else dict(r)
            if not row.get("time_s"):
                continue  # nothing valid was measured for this impl
            row["op"] = op
            row["config"] = row.get("config") or {}
            t = row["time_s"]
            row["achieved_gbs"] = row["bytes"] / t / 1e9
            row["achieved_tflops"] = row["flops"] / t / 1e12
            row["pct_of_peak_bw"] = 100 * row["achieved_gbs"] / bw if bw else None
            row["pct_of_peak_flops"] = 100 * row["achieved_tflops"] / tflops if tflops else None
            kernels.append(row)
        ctx.save()


def stage_decode(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    from qlab.engine.bench import run_decode_bench

    results = doc.setdefault("decode", [])
    done = {(r["quant"], r["context"]) for r in results if "error" not in r}
    results[:] = [r for r in results if (r["quant"], r["context"]) in done]  # retry failed items on resume
    for quant in opts.quants:
        for context in opts.contexts:
            if (quant, context) in done:
                continue
            try:
                r = run_decode_bench(model=opts.model, layers=opts.layers, quant=quant, context=context,
                                     tokens=opts.tokens, device=ctx.torch_device, threads=opts.threads)
                results.append(_decode_row(r, quant, context, opts.layers))
            except (MemoryError, RuntimeError) as e:  # out of memory (torch raises RuntimeError subclasses)
                if not isinstance(e, MemoryError) and "out of memory" not in str(e).lower():
                    raise
                results.append({"quant": quant, "context": context, "layers_run": opts.layers, "tok_s": 1e-9,
                                "scaled_tok_s": 1e-9, "error": f"out of memory: {str(e)[:200]}"})
            ctx.save()


def _decode_row(r: dict, quant: str, context: int, layers: int) -> dict:
    """Keep the engine's result as it is, plus the fields the profile schema names."""
    row = dict(r)
    row.update(quant=quant, context=context, layers_run=int(r.get("layers", layers)),
               tok_s=float(r["decode_tok_s"]), scaled_tok_s=float(r.get("scaled_decode_tok_s", r["decode_tok_s"])),
               prefill_tok_s=r.get("prefill_tok_s"), peak_rss_gb=r.get("peak_rss_gb"),
               breakdown=r.get("breakdown_s_per_token") or r.get("breakdown") or {})
    return row


def stage_calibrate(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    from qlab.predict.calibrate.from_profile import calibration_from_profile

    doc["calibration"] = calibration_from_profile(doc, opts.model)


def stage_predict(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    from qlab.predict import predict
    from qlab.predict.calibrate.from_profile import device_from_profile

    device = device_from_profile(doc)
    rows = []
    for quant in opts.quants:
        for context in sorted(set(opts.contexts) | {4096, 32768, 131072, 262144}):
            spec_only = predict(device, opts.model, quant, context)
            measured = predict(device, opts.model, quant, context, profile=doc)
            rows.append(measured | {"spec_decode_tok_s": spec_only["decode_tok_s"], "spec_basis": spec_only["basis"]})
    doc["predictions"] = rows


STAGES: dict[str, Callable[[dict, ProfileOptions, Context], None]] = {
    "detect": stage_detect,
    "microbench": stage_microbench,
    "tune": stage_tune,
    "decode": stage_decode,
    "calibrate": stage_calibrate,
    "predict": stage_predict,
}
# Rough share of a run's time per stage, for the ETA before anything was measured.
STAGE_WEIGHT = {"detect": 1, "microbench": 5, "tune": 25, "decode": 60, "calibrate": 1, "predict": 2}
