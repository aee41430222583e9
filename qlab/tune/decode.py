"""`qlab tune --op decode`: tune the engine's own choices with the decode loop itself as the objective.

What is tuned is what the decode step runs: the CPU thread count, the impl of each op the step calls (matmul,
DeltaNet decode, attention decode: every impl the kernel registry says runs here and reads the weights'
formats) and each impl's config (one config per op, applied to every shape the step uses). The search is a
coordinate descent from the defaults: one choice at a time, each candidate timed as the median step time over a
few tokens of the real loop, and a change kept only if it wins a paired re-measurement against the current
best (alternating, so a change in the machine's load hits both alike).

The answer is written into the tune cache under the keys `qlab.kernels.registry.resolve` reads — the config of
each impl at each decode shape's bucket, the impl chosen for each shape, and the thread count — so the next
decode (`qlab bench decode`, a profile) runs it without being told. `tune_decode` returns one JSON-able record.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

from qlab import measure
from qlab.tune.cache import threads_fields, tuned_threads  # noqa: F401 - tuned_threads: the reader

DECODE_FIELDS = ("matmul", "deltanet_decode", "attn_decode")
WIN = 0.97              # a candidate must be this much faster than the best so far (3%) to replace it


class _Loop:
    """The model, its state filled to `context`, and a timer of `tokens` decode steps under a backend."""

    def __init__(self, weights, device: str, context: int, tokens: int, max_steps: int, seed: int = 0):
        import torch

        from qlab.engine.bench import fill_synthetic
        from qlab.engine.model import Qwen35
        from qlab.engine.ops import default_backend

        self.tokens = tokens
        self.model = Qwen35(weights, default_backend(device, tuned=False))
        self.state = self.model.new_state(context + max_steps * (tokens + 1) + 1)
        fill_synthetic(self.state, context, seed)
        self.token = torch.randint(0, weights.cfg.vocab, (1,), generator=torch.Generator().manual_seed(seed))
        self.steps = 0
        self.max_steps = max_steps

    def time(self, backend, threads: int) -> float:
        """Median seconds per decode step of `tokens` steps (after one untimed step that resolves the ops)."""
        from qlab.engine.model import decode_one_token

        if self.steps >= self.max_steps:
            raise RuntimeError("decode tuner: the state's context is used up")
        self.steps += 1
        self.model.set_backend(backend)
        with measure.threads(threads):
            self.token = decode_one_token(self.model, self.token, self.state).argmax(-1)
            times = []
            for _ in range(self.tokens):
                t0 = time.perf_counter()
                self.token = decode_one_token(self.model, self.token, self.state).argmax(-1)
                measure.sync(backend.device)
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def _candidates(loop: _Loop, device: str) -> dict[str, list[str]]:
    """Impls per decode field that run here and take every shape the step gives that field."""
    from qlab.engine.ops import FIELD_OPS
    from qlab.kernels import registry

    shapes: dict[str, list[dict]] = {}
    for (field_name, _), (_, _, _, shape) in loop.model.ops.plan.items():
        shapes.setdefault(field_name, []).append(shape)
    out = {}
    for field_name in DECODE_FIELDS:
        op = FIELD_OPS[field_name]
        names = []
        for rec in registry.available(op, device):
            if rec.reference or registry.device_kind(device) not in rec.devices:
                continue
            ok = all(("fmt" not in s or rec.reads(s["fmt"]) or rec.delegates) and (rec.fits is None or rec.fits(s))
                     for s in shapes.get(field_name, []))
            if ok:
                names.append(rec.name)
        out[field_name] = names
    return out


def tune_decode(model: str = "qwen3.6-27b", layers: int | None = 4, quant: str = "Q4_K_M", gguf: str | None = None,
                *, width_scale: float = 1.0, vocab: int | None = None, context: int = 256, device: str = "cpu",
                budget_s: float = 60.0, tokens: int = 3, cache: bool = True, seed: int = 0) -> dict:
    """Tune the decode step's threads, impls and configs within `budget_s` seconds of search (after the weights
    are loaded; the final paired re-measurement comes on top); write the answer into the
    tune cache (unless `cache` is False) and return the record: default and tuned ms per token, the choices,
    and every candidate timed."""
    import torch

    from qlab.engine.bench import load_weights
    from qlab.engine.config import get_config
    from qlab.engine.ops import default_backend
    from qlab.kernels import registry
    from qlab.tune.ops.base import thread_choices

    full = get_config(model)
    weights = load_weights(model, layers, quant, gguf, width_scale, vocab, seed=seed)
    loop = _Loop(weights, device, context, tokens, max_steps=400)
    with measure.OthersCpu() as others:   # a neighbour's load makes fewer threads win: see below
        t_end = time.monotonic() + budget_s   # the search's budget: loading the weights is not counted
        base_threads = torch.get_num_threads()
        default = best_b = default_backend(device, tuned=False)
        best_t = base_threads
        loop.time(best_b, best_t)   # first use: packed layouts built, C kernels loaded
        best_s = loop.time(best_b, best_t)
        history = [{"choice": "default", "ms": 1e3 * best_s}]

        def trial(label: str, backend, threads: int) -> None:
            nonlocal best_b, best_t, best_s
            if time.monotonic() > t_end or loop.steps > loop.max_steps - 12:   # keep room for the final pairs
                return
            s = loop.time(backend, threads)
            history.append({"choice": label, "ms": 1e3 * s})
            if s < WIN * best_s:   # confirm, paired and alternating, before keeping it
                a, b = [], []
                for _ in range(2):
                    a.append(loop.time(backend, threads))
                    b.append(loop.time(best_b, best_t))
                if statistics.median(a) < WIN * statistics.median(b):
                    best_b, best_t, best_s = backend, threads, statistics.median(a)
                    history[-1]["kept"] = True

        if registry.device_kind(device) == "cpu":
            for n in thread_choices():
                if n != best_t:
                    trial(f"threads={n}", best_b, n)
        for field_name, names in _candidates(loop, device).items():
            loop.time(best_b, best_t)   # the plan of the best so far: which impl it runs now
            current = _impl_of(loop, field_name)
            for name in names:
                if name != current:
                    trial(f"{field_name}={name}", replace(best_b, **{field_name: name}), best_t)
        for field_name in DECODE_FIELDS:   # configs of the impls now chosen, one parameter at a time
            loop.model.set_backend(best_b)
            loop.time(best_b, best_t)
            name = _impl_of(loop, field_name)
            if name is None:
                continue
            rec = registry.get(registry_op(field_name), name)
            for param, values in rec.space().items():
                current = {**rec.defaults(), **best_b.configs.get(field_name, {})}
                for v in values:
                    if v != current.get(param):
                        cfg = {**best_b.configs.get(field_name, {}), param: v}
                        trial(f"{field_name}.{param}={v}", replace(best_b, configs={**best_b.configs, field_name: cfg}),
                              best_t)
        # the default and the final choice timed again, alternating (paired: the reported speedup), the final one
        # last so that its plan, resolved at every decode shape, is what is written and what the next decode runs
        d, t = [], []
        for _ in range(3):
            d.append(loop.time(default, base_threads))
            t.append(loop.time(best_b, best_t))
        default_s, final_s = statistics.median(d), statistics.median(t)
        plan = loop.model.ops.resolutions()
    record = {"model": model, "layers": weights.cfg.n_layers, "quant": quant, "device": device,
              "context": context, "default_ms_per_token": 1e3 * default_s,
              "tuned_ms_per_token": 1e3 * final_s, "speedup": default_s / final_s,
              "threads": best_t, "default_threads": base_threads,
              "impls": {f: _impl_of(loop, f) for f in DECODE_FIELDS}, "configs": dict(best_b.configs),
              "resolved": plan, "history": history, "written": False, "full_layers": full.n_layers,
              "others_cpu_share": others.share}
    # A thread count chosen while other processes held a share of the CPUs answers for that moment: on 2 cores
    # under a neighbour one thread wins, and cached it would halve every later decode of a quiet machine. The
    # impls and configs were compared paired and alternating at the same load, so they are kept.
    record["threads_cached"] = (others.share or 0.0) <= measure.CONTENDED
    if cache:
        _write(loop, best_b, best_t if record["threads_cached"] else None, record)
        record["written"] = True
    return record


def registry_op(field_name: str) -> str:
    from qlab.engine.ops import FIELD_OPS

    return FIELD_OPS[field_name]


def _impl_of(loop: _Loop, field_name: str) -> str | None:
    names = [rec.name for (f, _), (rec, *_rest) in loop.model.ops.plan.items() if f == field_name]
    return max(set(names), key=names.count) if names else None


def _write(loop: _Loop, backend, threads: int | None, record: dict) -> None:
    """Per decode shape: the impl chosen (a choice entry) and its config (the per-impl entry the op tuner also
    writes); and the thread count, unless `threads` is None."""
    from qlab.kernels import registry
    from qlab.tune.cache import TuneCache, make_key

    store = TuneCache()
    dev = backend.device
    for (field_name, _), (rec, config, _source, shape) in loop.model.ops.plan.items():
        if field_name not in DECODE_FIELDS:
            continue
        spec = registry.op_spec(rec.op)
        full = spec.full_shape(shape, dev)
        common = {"strategy": "decode", "default_time_s": record["default_ms_per_token"] / 1e3,
                  "time_s": record["tuned_ms_per_token"] / 1e3, "speedup": record["speedup"]}
        fields = registry.choice_fields(spec, full, dev)
        store.put(make_key(fields), {"impl": rec.name, "key_fields": fields, **common})
        if rec.tunables:
            fields = registry.cache_fields(spec, rec.name, full, dev)
            store.put(make_key(fields), {"op": rec.op, "impl": rec.name, "config": dict(config),
                                         "default_config": rec.defaults(), "bucket": fields["bucket"],
                                         "key_fields": fields, **common})
    if threads is not None:
        fields = threads_fields(dev)
        store.put(make_key(fields), {"threads": threads, "key_fields": fields})
