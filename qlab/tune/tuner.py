"""The tuner: for each (impl, shape) of an op, answer from the cache or search the impl's space within a time
budget, checking every candidate against the reference on its first evaluation before it may win.

The kernel's default configuration is always measured first: it is the baseline of the reported speedup and
a candidate itself, so the tuner never reports a configuration it measured slower than the default.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from qlab.errors import QlabError, unknown
from qlab.tune.cache import TuneCache, TuneCacheWarning, environment, make_key
from qlab.tune.ops import SELF_TEST_OPS, all_names, available_ops, impl_ops
from qlab.tune.ops.base import TunableOp, torch_threads
from qlab.tune.space import Config, SpaceError, config_key
from qlab.tune.strategies import Objective, get_strategy
from qlab.tune.timing import Timer

MIN_TASK_BUDGET_S = 0.05
CONFIRM_SHARE = 0.85
RACE_CUTOFF = 2.0   # a candidate whose first timed run is this much slower than the best is not timed further


@dataclass
class TuneResult:
    op: str
    impl: str
    device: str
    shape: dict
    bucket: dict
    config: dict | None
    default_config: dict
    time_s: float | None
    default_time_s: float | None
    speedup: float | None
    evaluations: int
    from_cache: bool
    bytes: float
    flops: float
    gbs: float | None
    gflops: float | None
    strategy: str
    space_size: int = 0
    valid_size: int = 0
    failures: dict = field(default_factory=dict)   # status -> count: wrong_answer, compile_error, ...
    tuned_shape: dict | None = None                # the shape actually timed (differs on a bucket hit)
    elapsed_s: float = 0.0
    history: list = field(default_factory=list)    # [{config, time_s | None, status}] in evaluation order

    def to_dict(self, history: bool = False) -> dict[str, Any]:
        """JSON-able; the per-evaluation history only when asked (it is long for GPU spaces)."""
        d = asdict(self)
        if not history:
            d.pop("history")
        return d


class CandidateFailed(Exception):
    def __init__(self, status: str, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


def _tensors(out) -> list:
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _tensors(v)]
    return [] if out is None else [out]


def _clone(inputs):
    if isinstance(inputs, Mapping):
        return {k: _clone(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_clone(v) for v in inputs)
    return inputs.clone() if hasattr(inputs, "clone") else inputs


def check(top: TunableOp, inputs, ref, config: Config, tol: float) -> None:
    """Run `config` once on a copy of the inputs and hold it to the reference; raise CandidateFailed if not."""
    from qlab.testing import rel_rms_error

    try:
        out = top.run(_clone(inputs), config)
    except Exception as e:  # noqa: BLE001 - any failure of a candidate is recorded, never fatal
        raise CandidateFailed(classify(e), f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    got, want = _tensors(out), _tensors(ref)
    if len(got) != len(want):
        raise CandidateFailed("wrong_answer", f"{len(got)} outputs, reference has {len(want)}")
    for g, w in zip(got, want):
        if tuple(g.shape) != tuple(w.shape):
            raise CandidateFailed("wrong_answer", f"shape {tuple(g.shape)} != {tuple(w.shape)}")
        err = rel_rms_error(w, g)
        if not err <= tol:  # NaN fails too
            raise CandidateFailed("wrong_answer", f"rel RMS {err:.2e} > {tol:.0e}")


def classify(e: BaseException) -> str:
    name, msg = type(e).__name__, str(e).lower()
    if "outofresources" in name.lower() or "out of resource" in msg or "out of memory" in msg \
            or "outofmemory" in name.lower():
        return "out_of_resources"
    if "compil" in name.lower() or "compil" in msg:
        return "compile_error"
    return "error"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise QlabError(f"device {device!r}: no CUDA device is available here (torch {torch.__version__}); "
                            "use --device cpu or auto")
        return device
    if device != "cpu":
        raise QlabError(f"device {device!r}: expected auto, cpu or cuda[:N]")
    return device


def _get_ops(op: str, device: str) -> list[TunableOp]:
    if op not in all_names():
        raise unknown("op", op, all_names())
    tops = impl_ops(op)
    if not tops:
        raise QlabError(f"op {op!r}: its kernel package (or its tunables.py) is not in this tree yet; "
                        f"available: {', '.join(available_ops() + tuple(SELF_TEST_OPS)) or 'none'}")
    kind = "cuda" if device.startswith("cuda") else "cpu"
    here = [t for t in tops if t.device_kind == kind]
    if not here:
        raise QlabError(f"op {op!r}: no tunable impl runs on {kind} "
                        f"(impls: {', '.join(t.impl for t in tops)})")
    return here


class _Task:
    """One (impl, shape) search, with the shared inputs and reference of its shape."""

    def __init__(self, top: TunableOp, shape: dict, device: str, timer: Timer, shared: dict):
        self.top, self.shape, self.device, self.timer, self.shared = top, shape, device, timer, shared
        self.failures: Counter = Counter()
        self.details: list[dict] = []
        self.status: dict[tuple, str] = {}

    def _inputs(self):
        key = (type(self.top).__name__, make_key(self.shape))
        if key not in self.shared:
            try:
                inputs = self.top.make_inputs(self.shape, self.device)
                self.shared[key] = (inputs, self.top.reference(_clone(inputs)))
            except (ValueError, TypeError, RuntimeError, MemoryError) as e:  # a shape the op (or reference) rejects
                raise QlabError(f"{self.top.op} at {self.shape}: cannot build inputs or the reference: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        return self.shared[key]

    def evaluate(self, config: Config, deadline: float | None, give_up_above: float | None = None) -> float:
        inputs, ref = self._inputs()
        with torch_threads(config.get("threads")):
            try:
                check(self.top, inputs, ref, config, self.top.tolerance(self.shape))
            except CandidateFailed as f:
                self.failures[f.status] += 1
                self.status[config_key(config)] = f.status
                self.details.append({"config": config, "status": f.status, "detail": f.detail})
                return math.inf
            fn = self.top.prepare(inputs, config)
            working_set = self.top.cost(self.shape, config).bytes
            return self.timer.measure(fn, working_set, deadline, give_up_above).median_s

    def confirm(self, *configs: Config, deadline: float | None = None) -> list[float]:
        inputs, _ = self._inputs()
        fns = [self.top.prepare(inputs, c) for c in configs]
        threads = [c.get("threads") for c in configs]
        ws = max(self.top.cost(self.shape, c).bytes for c in configs)
        import torch

        before = torch.get_num_threads()
        try:
            return self.timer.compare(fns, ws, before=lambda i: threads[i] and torch.set_num_threads(threads[i]),
                                      deadline=deadline)
        finally:
            torch.set_num_threads(before)


def _usable(top: TunableOp, hit: dict, shape: dict) -> bool:
    """A cached config every parameter of which is one of the impl's values, and that the impl accepts."""
    cfg = hit.get("config")
    if not isinstance(cfg, dict) or any(k not in top.params or v not in top.params[k] for k, v in cfg.items()):
        return False
    try:
        return top.is_valid(cfg, shape)
    except (TypeError, ValueError, KeyError):
        return False


def _cache_fields(top: TunableOp, shape: dict, device: str) -> dict[str, Any]:
    return {**environment(device), "op": top.op, "impl": top.impl, "source": top.source_hash(),
            "bucket": top.bucket(shape)}


def tune_task(top: TunableOp, shape: dict, device: str, budget_s: float, strategy: str,
              cache: TuneCache | None, timer: Timer | None = None, shared: dict | None = None,
              seed: int = 0) -> TuneResult:
    t0 = time.monotonic()
    bucket = top.bucket(shape)
    fields = _cache_fields(top, shape, device)
    key = make_key(fields) if cache is not None else None
    hit = cache.get(key) if cache is not None else None
    if hit is None and cache is not None:
        cache.warn_if_stale(fields, same=("op", "impl", "bucket", "device"))
    if hit is not None and not _usable(top, hit, shape):
        warnings.warn(f"tune cache: the entry for {top.name} at {bucket} has config {hit.get('config')!r}, "
                      "outside the impl's space; ignoring it (re-tuning)", TuneCacheWarning, stacklevel=2)
        hit = None
    if hit is not None:
        cost = top.cost(hit.get("tuned_shape") or shape, hit["config"])
        t = hit.get("time_s")
        return TuneResult(top.op, top.impl, device, shape, bucket, hit["config"], hit.get("default_config", {}),
                          t, hit.get("default_time_s"), hit.get("speedup"), hit.get("evaluations", 0), True,
                          cost.bytes, cost.flops, cost.bytes / t / 1e9 if t else None,
                          cost.flops / t / 1e9 if t else None, hit.get("strategy", strategy),
                          hit.get("space_size", 0), hit.get("valid_size", 0), hit.get("failures", {}),
                          hit.get("tuned_shape"), time.monotonic() - t0)

    space = top.space(shape)
    valid = space.valid()   # raises SpaceError for an empty / contradictory space
    timer = timer or Timer(device)
    task = _Task(top, shape, device, timer, shared if shared is not None else {})
    deadline = t0 + max(CONFIRM_SHARE * budget_s, MIN_TASK_BUDGET_S)   # the rest: the confirmation
    objective = Objective(lambda c: task.evaluate(c, deadline, RACE_CUTOFF * objective.best_value), deadline=deadline)
    default = dict(top.defaults)
    default_time = objective(default)   # always measured, whatever the budget: the baseline
    get_strategy(strategy)(space, objective, lambda c: top.cost_model(c, shape, device), seed)

    best, best_time = objective.best, objective.best_value
    ok = best is not None and math.isfinite(best_time)
    if ok and math.isfinite(default_time) and best != default:
        # Search times come from moments of different load; the winner and the default are timed again,
        # alternating, and those paired numbers are what is reported (and decide between the two).
        default_time, best_time = task.confirm(default, best, deadline=t0 + budget_s)
        if default_time <= best_time:
            best, best_time = default, default_time
    d_time = default_time if math.isfinite(default_time) else None
    cost = top.cost(shape, best if ok else default)
    result = TuneResult(
        top.op, top.impl, device, shape, bucket, best if ok else None, default, best_time if ok else None, d_time,
        (d_time / best_time) if ok and d_time else None, objective.evaluations, False, cost.bytes, cost.flops,
        cost.bytes / best_time / 1e9 if ok else None, cost.flops / best_time / 1e9 if ok else None, strategy,
        space.size, len(valid), dict(task.failures), dict(shape), time.monotonic() - t0,
        [{"config": c, "time_s": v if math.isfinite(v) else None, "status": task.status.get(config_key(c), "ok")}
         for c, v in objective.history])
    if ok and cache is not None:
        entry = {k: v for k, v in result.to_dict().items() if k not in ("from_cache", "elapsed_s")}
        cache.put(key, dict(entry, key_fields=fields))
    if not ok:
        warnings.warn(f"{top.name} at {shape}: no configuration passed the reference check "
                      f"({dict(task.failures)}); first failure: {task.details[:1]}", stacklevel=2)
    return result


def tune_shapes(op: str, shapes: list[dict] | None = None, device: str = "cpu", budget_s: float = 30,
                strategy: str = "budgeted", cache: bool | TuneCache = True, timer: Timer | None = None,
                seed: int = 0) -> list[TuneResult]:
    """Tune every tunable impl of `op` on `device` at each shape (default: the Qwen3.6-27B preset), sharing
    `budget_s` among them: each (impl, shape) gets an equal share of what is left when it starts."""
    if not isinstance(budget_s, (int, float)) or not budget_s > 0 or not math.isfinite(budget_s):
        raise QlabError(f"budget {budget_s!r}: expected a positive number of seconds")
    get_strategy(strategy)
    device = resolve_device(device)
    tops = _get_ops(op, device)
    from qlab.tune.shapes import check_shape, preset_shapes

    shapes = preset_shapes(op, "qwen3.6-27b") if shapes is None else [check_shape(op, dict(s)) for s in shapes]
    store = cache if isinstance(cache, TuneCache) else (TuneCache() if cache else None)
    timer = timer or Timer(device)
    tasks = [(top, top.full_shape(s, device)) for s in shapes for top in tops]
    results, shared, t_end = [], {}, time.monotonic() + budget_s
    skipped = []
    for i, (top, shape) in enumerate(tasks):
        share = (t_end - time.monotonic()) / (len(tasks) - i)
        try:
            results.append(tune_task(top, shape, device, share, strategy, store, timer, shared, seed))
        except QlabError as e:   # SpaceError, or inputs the op rejects at this shape: the other tasks go on
            skipped.append(e)
    if not results:
        kind = SpaceError if all(isinstance(e, SpaceError) for e in skipped) else QlabError
        raise kind("; ".join(map(str, skipped)))
    for s in skipped:
        warnings.warn(f"skipped: {s}", stacklevel=2)
    return results


def tune(op: str, shape: dict | None = None, device: str = "cpu", budget_s: float = 30,
         strategy: str = "budgeted", cache: bool = True) -> list[TuneResult]:
    """Tune `op` (one of qlab.tune.OPS) at `shape` (a dict of the op's dims; None: the Qwen3.6-27B preset
    shapes) on `device` within `budget_s` seconds in total. One TuneResult per (impl, shape)."""
    return tune_shapes(op, None if shape is None else [shape], device, budget_s, strategy, cache)
