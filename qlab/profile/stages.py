"""The stages of `qlab profile`, each a function (doc, options, ctx) -> None that fills its part of the
profile document. The runner saves the document after every stage (and inside long stages after every
item), so an interrupted run keeps what it finished."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

from qlab.errors import QlabError
from qlab.profile.options import ProfileOptions

@dataclasses.dataclass
class Context:
    """What the stages share in one run: the torch device and a callback that saves the document."""
    torch_device: str = "cpu"
    save: Callable[[], None] = lambda: None
    log: Callable[[str], None] = print
    path: object = None      # the profile's file, once known (a --quick run looks beside it for a whole-model run)


def _device_record(det) -> dict:
    dev = det.device
    specs = {k: v for k, v in dataclasses.asdict(dev).items() if k not in ("sources", "aliases", "id", "name", "notes")}
    return {"id": dev.id, "name": dev.name, "kind": dev.kind, "source": det.source, "known": bool(det.known),
            "specs": specs, "details": dict(det.details or {})}


def resolve_device(gpu: str):
    """`--device auto|cpu|cuda|mps|ID` (alias --gpu) -> (Detection, torch device string). Asking for hardware that is not
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
            raise QlabError(f"--device {gpu}: no {choice.upper()} device is available on this machine; "
                            f"available: {', '.join(here)} (or --device auto)")
        det = detect_device(choice if choice == "cuda" else "apple")
        return det, choice
    # A hwdb id: profile that device only if it is the one here.
    wanted = get_device(gpu)
    det = detect_device("auto")
    if det.device.id != wanted.id:
        raise QlabError(f"--device {gpu}: this machine has {det.device.name} ({det.device.id}), not {wanted.name}; "
                        f"profile it with --device auto, or predict {wanted.id} with `qlab predict --hw {wanted.id}`")
    return det, {"nvml": "cuda", "apple": "mps"}.get(det.source, "cpu")


def stage_detect(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    det, torch_device = resolve_device(opts.gpu)
    from qlab.profile.machine import record_fingerprint

    doc["device"] = _device_record(det) | {"torch_device": torch_device}
    doc["device"]["details"].pop("fingerprint", None)   # kept once, at the top level
    record_fingerprint(doc, det.details or {})
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
    doc.setdefault("fingerprint", {}).update(read_gbs=mb["read_gbs"], read_noisy=bool(mb["read"].get("noisy")))
    for d, why in mb["unsupported"].items():
        ctx.log(f"matmul {d}: unsupported here ({why}); not used as a compute peak")
    if mb["noisy"]:
        ctx.log("noisy probes (spread of repeats after a re-measure): "
                + ", ".join(f"{k} {100 * v:.0f} %" for k, v in mb["noisy"].items()) + "; the machine is loaded")
    if doc["device"]["source"] == "cpu":
        # The host CPU's bandwidth and peak were estimates: from now on the profile's device carries what was
        # measured, so that predictions for cpu-host rest on this machine's real figures. A dtype without
        # native instructions gets no peak at all (its estimate from the flags would be the compute peak).
        specs = doc["device"]["specs"]
        rates = mb["matmul_tflops"]
        measured = {"mem_bandwidth_gbs": mb["read_gbs"], "fp32_tflops": rates.get("float32"),
                    "bf16_tflops": rates.get("bfloat16"), "fp16_tflops": rates.get("float16")}
        doc["device"]["details"]["estimated_specs"] = {k: specs.get(k) for k in measured}
        specs.update({k: v for k, v in measured.items() if v})
        unsupported = [f"{'bf16' if d == 'bfloat16' else 'fp16'}_tflops" for d in mb["unsupported"]
                       if d in ("bfloat16", "float16")]
        for k in unsupported:
            specs.pop(k, None)
        doc["device"]["details"]["measured_specs"] = sorted(k for k, v in measured.items() if v)
        doc["device"]["details"]["unsupported_specs"] = sorted(unsupported)


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


# Share of the tune budget spent on the decode step itself (threads, impl per op, configs at decode shapes);
# the rest tunes each op's kernels alone at Qwen3.6-27B shapes.
DECODE_TUNE_SHARE = 0.5


def run_decode_tuner(**kwargs) -> dict:
    """`qlab.tune.decode.tune_decode(**kwargs)` in a process of its own: the slice it loads (GBs) is gone when
    it returns, so it never counts against the whole model the decode stage loads next (in-process, the weights
    and their x8 copies stayed resident)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from qlab.tune.decode import tune_decode

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(tune_decode, **kwargs).result()


def tune_decode_step(doc: dict, opts: ProfileOptions, ctx: Context) -> bool:
    """`qlab tune --op decode` on the slice the decode stage runs (first quant, first context): its choices go
    into the tune cache, where the decode stage's `resolve` finds them; `decode_tuning` records them and the
    impls decode runs per op. False when the decode step could not be tuned (recorded in `kernel_errors`)."""
    errors = doc.setdefault("kernel_errors", {})
    if "decode_tuning" in doc:   # a resumed run: the cache already holds the choices
        return True
    try:
        rec = run_decode_tuner(model=opts.model, layers=opts.layers, quant=opts.quants[0], width_scale=opts.width_scale,
                          vocab=opts.vocab, context=opts.contexts[0], device=ctx.torch_device,
                          budget_s=DECODE_TUNE_SHARE * opts.tune_budget_s)
    except Exception as e:  # noqa: BLE001 — the per-op tuning still runs, with the default choices
        errors["decode"] = f"{type(e).__name__}: {str(e)[:300]}"
        ctx.log(f"tuning the decode step failed: {errors['decode']}")
        return False
    runs: dict[str, set[str]] = {}
    for r in rec["resolved"]:
        runs.setdefault(r["op"], set()).add(r["impl"])
    doc["decode_tuning"] = {k: rec[k] for k in ("quant", "context", "layers", "threads", "default_threads",
                                                "impls", "default_ms_per_token", "tuned_ms_per_token", "speedup",
                                                "others_cpu_share", "threads_cached")}
    if not rec["threads_cached"]:
        ctx.log(f"decode tuning: other processes took {100 * rec['others_cpu_share']:.0f} % of the CPUs; its "
                f"thread count ({rec['threads']}) is not cached, decode runs torch's default")
    doc["decode_tuning"]["runs"] = {op: sorted(v) for op, v in runs.items()}
    ctx.save()
    return True


def _engine_impl(op: str, shape: dict, device: str) -> str | None:
    """The impl the decode loop runs for `op` at `shape` on `device` (what the engine's ops ask the registry)."""
    from qlab.kernels import registry

    try:
        return registry.resolve(op, shape, device)[0].name
    except (KeyError, ValueError, registry.ImplUnavailableError):
        return None


def stage_tune(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    """Tune the decode step (threads, impl per op, configs), then validate and tune, op by op at Qwen3.6-27B
    shapes, exactly the impls that decode runs; the tuner's cache makes a second run fast. An impl that fails
    validation on this device is excluded and recorded (`kernel_validation`); an op that fails is recorded with
    its error and the others still run."""
    from qlab.profile.kernel_check import validated_ops
    from qlab.tune import OPS
    from qlab.tune.cache import TuneCache
    from qlab.tune.tuner import tune_task

    kernels = doc.setdefault("kernels", [])
    errors = doc.setdefault("kernel_errors", {})
    validation = doc.setdefault("kernel_validation", {})
    decode_tuned = tune_decode_step(doc, opts, ctx)
    done = {k["op"] for k in kernels}
    ops = [op for op in OPS if op not in done]
    budget = opts.tune_budget_s * (1 - DECODE_TUNE_SHARE if decode_tuned else 1) / max(1, len(ops))
    bw, tflops = _peak(doc)
    cache = TuneCache()
    for op in ops:
        shapes = tune_shapes_for(op, opts.mode)
        if not shapes:
            errors[op] = f"skipped in --{opts.mode} mode (prefill shapes only)"
            continue
        try:
            tops, failed = validated_ops(op, ctx.torch_device, ctx.log)
            validation[op] = {"passed": [t.impl for t in tops], "failed": failed}
            if not tops:
                raise QlabError(f"no impl of {op} passed validation on {ctx.torch_device}")
            # Tune, at each shape, the impl the engine runs there (registry.resolve: the decode tuner's choice
            # where it made one, else the best-ranked impl), nothing else.
            tasks, untunable = [], set()
            for s in shapes:
                runs_here = _engine_impl(op, s, ctx.torch_device)
                match = [top for top in tops if top.impl == runs_here]
                tasks += [(top, top.full_shape(s, ctx.torch_device)) for top in match]
                if not match:
                    untunable.add(runs_here or "no impl")
            if untunable:
                errors[op] = (f"the engine runs {', '.join(sorted(untunable))} at some of these shapes, which "
                              f"has nothing to tune or did not validate here")
            if not tasks:
                continue
            results = []
            for top, shape in tasks:
                try:
                    with warnings.catch_warnings(record=True) as caught:   # the tuner's notes, as one line each
                        warnings.simplefilter("always")
                        results.append(tune_task(top, shape, ctx.torch_device, budget / len(tasks), "budgeted",
                                                 cache))
                    for w in caught:
                        ctx.log(f"tune {op}/{top.impl}: {w.message}")
                except QlabError as e:   # a shape this impl rejects: the other tasks go on
                    errors[f"{op}/{top.impl}"] = str(e)[:300]
        except Exception as e:  # noqa: BLE001 — recorded per op; the next op still runs
            errors[op] = f"{type(e).__name__}: {str(e)[:300]}"
            ctx.log(f"tuning {op} failed: {errors[op]}")
            continue
        if op not in errors or not errors[op].startswith("the engine runs"):
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


def _key(r: dict) -> tuple:
    return r["quant"], r["context"], bool(r.get("whole_model"))


def _oom(e: BaseException) -> bool:
    from qlab.engine.memory import DoesNotFitError

    return isinstance(e, (MemoryError, DoesNotFitError)) or "out of memory" in str(e).lower()


def stage_decode(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    """The decode loop on the slice at each quant x context; in default and full mode also the whole model
    where it fits (qlab/profile/whole_model.py), and how far the slice's extrapolation landed from it."""
    from qlab.engine.bench import forget_loaded, run_decode_bench
    from qlab.profile import whole_model
    from qlab.profile.options import WHOLE_PREFILL_TOKENS, WHOLE_TOKENS

    results = doc.setdefault("decode", [])
    done = {_key(r) for r in results if "error" not in r}
    results[:] = [r for r in results if _key(r) in done]  # retry failed items on resume
    # the whole model first: the engine keeps the last weights it loaded (for the next depth), and a slice held
    # then would count against the whole model's fit check
    items = [(q, c, True) for q in opts.quants for c in opts.whole_contexts()]
    items += [(q, c, False) for q in opts.quants for c in opts.contexts]
    skipped = doc.setdefault("whole_model", {})
    for quant, context, whole in items:
        if (quant, context, whole) in done:
            continue
        try:
            if whole:
                forget_loaded()   # the last quant's whole model must not count as in use
                fit = whole_model.plan(opts.model, quant, context, opts.width_scale, opts.vocab)
                if not fit["fits"]:
                    skipped[quant] = f"not decoded whole: {fit['why']}"
                    ctx.log(f"{quant}: the whole model is not decoded ({fit['why']}); the slice stands alone")
                    continue
                path = whole_model.ensure_model_file(opts.model, quant, opts.width_scale, opts.vocab, ctx.log)
                # the slice's first layers timed beside it, step for step, in the same memory: the
                # extrapolation's error under the same load (record_extrapolation)
                r = uncontended(lambda: run_decode_bench(
                    model=opts.model, layers=None, quant=quant, context=context, tokens=WHOLE_TOKENS,
                    device=ctx.torch_device, threads=opts.threads, gguf=str(path),
                    prefill_tokens=WHOLE_PREFILL_TOKENS, side_slice=opts.layers), f"{quant} whole", ctx.log)
                skipped[quant] = f"decoded whole from {path.name}"
            else:
                # where the whole model's file is here, the slice is read from it: the layers the whole model
                # streams, memory-mapped and repacked the same way
                path = whole_model.existing_model_file(opts.model, quant, opts.width_scale, opts.vocab)
                r = uncontended(lambda: run_decode_bench(
                    model=opts.model, layers=opts.layers, quant=quant, context=context, tokens=opts.tokens,
                    device=ctx.torch_device, threads=opts.threads, width_scale=opts.width_scale, vocab=opts.vocab,
                    gguf=str(path) if path else None), f"{quant} @ {context}", ctx.log)
            results.append(_decode_row(r, quant, context, opts.layers, whole))
        except Exception as e:  # noqa: BLE001 — out of memory is recorded and the next item runs
            if not _oom(e):
                raise
            results.append({"quant": quant, "context": context, "layers_run": 64 if whole else opts.layers,
                            "whole_model": whole, "tok_s": 1e-9, "scaled_tok_s": 1e-9,
                            "error": f"out of memory: {str(e)[:200]}"})
        ctx.save()
    record_extrapolation(doc, opts, ctx)


# A decode timed while other processes took more than qlab.measure.CONTENDED of the machine's CPUs is measured
# again (after a pause) up to CONTENDED_RETRIES times; the least contended run is kept, and flagged `contended`
# if it is still above: a loaded machine must not produce a confident profile.
CONTENDED_RETRIES = 2
CONTENDED_PAUSE_S = 10.0


def uncontended(run: Callable[[], dict], what: str, log: Callable[[str], None]) -> dict:
    import time

    from qlab.measure import CONTENDED

    best: dict | None = None
    for attempt in range(1 + CONTENDED_RETRIES):
        r = run()
        share = r.get("others_cpu_share")
        if best is None or (share or 0.0) < (best.get("others_cpu_share") or 0.0):
            best = r
        if share is None or share <= CONTENDED:
            break
        if attempt < CONTENDED_RETRIES:
            log(f"{what}: other processes took {100 * share:.0f} % of the CPUs while it was timed; "
                f"measuring again in {CONTENDED_PAUSE_S:g} s")
            time.sleep(CONTENDED_PAUSE_S)
    best["contention_retries"] = attempt
    if (best.get("others_cpu_share") or 0.0) > CONTENDED:
        best["contended"] = True
        log(f"{what}: still contended ({100 * best['others_cpu_share']:.0f} % of the CPUs taken by other "
            "processes); kept, flagged `contended`")
    return best


def record_extrapolation(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    """Slice extrapolation vs the whole model (both measured here); a --quick run carries the error the
    newest whole-model profile of this machine measured, when one is in the same directory."""
    from qlab.profile import whole_model

    rows = [r for r in doc.get("decode") or [] if "error" not in r]
    slices = {(r["quant"], r["context"]): r for r in rows if not r.get("whole_model")}
    pairs = [(slices.get((r["quant"], r["context"])), r) for r in rows
             if r.get("whole_model") and ((r["quant"], r["context"]) in slices or r.get("side_by_side"))]
    if pairs:
        doc["extrapolation"] = [whole_model.extrapolation_error(s, w) for s, w in pairs]
        for e in doc["extrapolation"]:
            across = (f"; the slice run on its own: {e['across_runs_error_pct']:+.1f} %"
                      if "across_runs_error_pct" in e else "")
            ctx.log(f"{e['quant']} @ {e['context']}: {e['slice_layers']}-layer slice scaled to the whole model "
                    f"{e['slice_scaled_tok_s']:.3g} tok/s, whole model {e['whole_tok_s']:.3g} ({e['error_pct']:+.1f} %"
                    f" {e['basis']}{across})")
    elif opts.mode == "quick":
        carried = whole_model.carried_error(opts.out, doc.get("fingerprint"), exclude=ctx.path)
        if carried:
            doc["extrapolation_carried"] = carried


def _decode_row(r: dict, quant: str, context: int, layers: int, whole: bool = False) -> dict:
    """Keep the engine's result as it is, plus the fields the profile schema names."""
    row = dict(r)
    row.update(quant=quant, context=context, layers_run=int(r.get("layers", layers)), whole_model=whole,
               tok_s=float(r["decode_tok_s"]), scaled_tok_s=float(r.get("scaled_decode_tok_s", r["decode_tok_s"])),
               prefill_tok_s=r.get("prefill_tok_s"), peak_rss_gb=r.get("peak_rss_gb"),
               breakdown=r.get("breakdown_s_per_token") or r.get("breakdown") or {})
    if whole:
        row["scaled_tok_s"] = row["tok_s"]   # nothing to scale: every layer ran
    return row


def stage_calibrate(doc: dict, opts: ProfileOptions, ctx: Context) -> None:
    from qlab.predict.calibrate.from_profile import calibration_from_profile
    from qlab.profile.roofline import roofline_points

    doc["roofline"] = roofline_points(doc, opts.model)
    doc["calibration"] = cal = calibration_from_profile(doc, opts.model)
    if cal["basis"] == "class":
        ctx.log("calibration NOT published as measured: " + "; ".join(cal["problems"][:3])
                + " — predictions use the device class's values on the measured bandwidth (basis: class)")


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
