"""The decode benchmark: prefill tok/s, decode tok/s at a given depth, time per token by op kind, achieved
GB/s, peak RSS, and a slice's numbers scaled to the whole model. `run_decode_bench` returns one JSON-able
record (fields in README.md); `qlab bench decode` prints it.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from qlab import measure
from qlab.engine import memory
from qlab.engine.config import ModelConfig, get_config
from qlab.engine.model import DecodeState, Qwen35, decode_one_token, prefill
from qlab.engine.ops import OP_KINDS, OpTimer, default_backend
from qlab.engine.weights import Weights, synthetic_nbytes, synthetic_weights
from qlab.errors import QlabError

GB = 1e9
PROFILE_TOKENS = 4   # tokens decoded again with the per-op timer on (it synchronises around every op)


_LAST: dict = {}   # the last weights loaded, kept for the next call with the same arguments (one entry only)


def forget_loaded() -> None:
    """Drop the weights kept for the next call, and free them (before asking how much memory is available)."""
    import gc

    _LAST.clear()
    gc.collect()


def load_weights(model: str, layers: int | None, quant: str, gguf: str | None, width_scale: float = 1.0,
                 vocab: int | None = None, extra_bytes: int = 0, seed: int = 0) -> Weights:
    """Weights from a GGUF file (its own types; `layers` slices it) or synthetic ones at the preset's shapes.
    The profile runner asks for the same weights at several depths in a row: the last set is reused (drawing a
    full-width slice takes minutes), and dropped before a different one is made."""
    key = (model, layers, quant.upper(), gguf, width_scale, vocab, seed)
    if key in _LAST:
        return _LAST[key]
    _LAST.clear()
    import gc

    gc.collect()
    w = _load_weights(model, layers, quant, gguf, width_scale, vocab, extra_bytes, seed)
    _LAST[key] = w
    return w


def _load_weights(model, layers, quant, gguf, width_scale, vocab, extra_bytes, seed) -> Weights:
    full = get_config(model)
    if gguf:
        from qlab.engine.gguf_io import read_gguf

        w = read_gguf(gguf, layers)
        w.cfg = replace(w.cfg, full_layers=full.n_layers, name=model)
        return w
    cfg = full.width_scaled(width_scale, vocab) if (width_scale != 1.0 or vocab) else full
    cfg = cfg.sliced(layers)
    return synthetic_weights(cfg, quant, seed, extra_bytes=extra_bytes)


def streamed_bytes_per_token(w: Weights, context: int, cache_bytes_per_value: int) -> dict[str, int]:
    """Bytes one decode step must read or write: every matrix once (the embedding table only one row),
    the KV cache up to `context`, and the DeltaNet states read and written once."""
    c = w.cfg
    emb = w["token_embd.weight"]
    head = w.nbytes("output") + emb.nbytes // emb.shape[0]      # output.weight, output_norm, one embedding row
    weights = w.nbytes("blk.") + head
    kv = c.kv_cache_bytes(context, cache_bytes_per_value)
    state = 2 * c.state_bytes()
    return {"weights": weights, "head_weights": head, "kv_cache": kv, "state": state,
            "total": weights + kv + state}


def full_layer_weight_bytes(w: Weights) -> int:
    """Weight bytes of all `full_layers` layers of the model this slice was cut from. A slice is the first
    layers, and a K-quant mix gives those more bits than the average layer (Q4_K_M: Q6_K attn_v/ffn_down on the
    first eighth of the layers, a third of the middle ones): per layer, the first 8 of 64 stream ~7 % more than
    the average. From the GGUF's own tensor table (every layer of the file, averaged per layer), else from the
    synthetic quant mix of the full-depth config."""
    import re

    c = w.cfg
    reader = next((k for k in w.keepalive if hasattr(k, "tensors")), None)
    if reader is not None:
        per: dict[int, int] = {}
        for t in reader.tensors:
            m = re.match(r"blk\.(\d+)\.", t.name)
            if m and ".nextn." not in t.name:
                per[int(m.group(1))] = per.get(int(m.group(1)), 0) + int(t.n_bytes)
        if per:
            return round(sum(per.values()) / len(per) * c.full_layers)
    if c.n_layers == c.full_layers:
        return w.nbytes("blk.")
    if not w.source.startswith("synthetic:"):
        return round(w.nbytes("blk.") / c.n_layers * c.full_layers)
    import math

    from qlab.engine.tensors import format_for, model_specs
    from qlab.formats import get_format

    full, quant = replace(c, n_layers=c.full_layers), w.source.split(":", 1)[1]
    return sum(4 * math.prod(s.shape) if s.kind == "small" else s.shape[0] * get_format(
        format_for(full, quant, s.name)).nbytes(s.shape[1]) for s in model_specs(full) if s.name.startswith("blk."))


def fill_synthetic(st: DecodeState, depth: int, seed: int = 0) -> None:
    """Put `depth` tokens' worth of values in the caches and states without running the model: unit-normal
    keys and values (what RMS-normed, roped keys look like) and small random recurrent states. The time of a
    decode step does not depend on these values, only on how many tokens there are."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for cache in list(st.k_cache.values()) + list(st.v_cache.values()):
        for s0 in range(0, depth, 8192):   # a slab at a time: no full-size fp32 temporary
            s1 = min(depth, s0 + 8192)
            cache[:, :, s0:s1] = torch.randn(cache[:, :, s0:s1].shape, generator=gen).to(cache.dtype)
    for s in st.rec.values():
        s.copy_(0.05 * torch.randn(s.shape, generator=gen))
    for s in st.conv.values():
        s.copy_(torch.randn(s.shape, generator=gen))
    st.pos = depth


_sync = measure.sync


def _repacks(backend) -> bool:
    """Whether the decode matmul of a Q4_K weight keeps a repacked copy of it (registry feature "x8_repack")."""
    from qlab.engine.ops import Ops
    from qlab.kernels import registry

    return "x8_repack" in registry.get("dequant_matmul", Ops(backend).matmul_impl("Q4_K")).features


def run_decode_bench(model: str = "qwen3.6-27b", layers: int | None = 4, quant: str = "Q8_0", context: int = 4096,
                     tokens: int = 16, device: str = "cpu", threads: int | None = None, gguf: str | None = None,
                     *, width_scale: float = 1.0, vocab: int | None = None, prefill_tokens: int | None = None,
                     fill: str = "auto", seed: int = 0, backend_overrides: dict | None = None,
                     side_slice: int | None = None) -> dict:
    """Measure the decode loop; returns the JSON-able record documented in qlab/engine/README.md.

    fill: "prefill" runs the model over `context` tokens to fill caches and states; "synthetic" writes
    random values of the right shape directly (fast at any depth; decode time does not depend on the values);
    "auto" prefills up to 512 tokens of depth and fills synthetically beyond.
    side_slice: with `layers` None, also time the first `side_slice` layers of the same loaded weights, one
    slice step after each whole-model step (`side_by_side` in the record): the slice's extrapolation and the
    whole model measured under the same load, in the same memory."""
    rss0 = memory.current_rss_bytes()
    if tokens < 1 or context < 0:
        raise QlabError(f"--tokens {tokens} / --context {context}: expected tokens >= 1 and context >= 0")
    backend = default_backend(device, **(backend_overrides or {}))
    if not threads and backend.tuned:   # the count `qlab tune --op decode` chose here, if it ran
        from qlab.tune.cache import tuned_threads

        threads = tuned_threads(device)
    if threads:
        measure.set_threads(int(threads))
    if device == "cuda" and not torch.cuda.is_available():
        raise QlabError("--device cuda: torch sees no CUDA GPU here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise QlabError("--device mps: torch sees no Apple GPU here")

    full = get_config(model)
    probe = (full.width_scaled(width_scale, vocab) if (width_scale != 1.0 or vocab) else full).sliced(layers)
    max_ctx = context + tokens + PROFILE_TOKENS + SETTLE_MAX_STEPS + 1
    if max_ctx > full.max_context:
        raise QlabError(f"--context {context} + {tokens} tokens exceeds the model's context of {full.max_context}")
    cache_bpv = torch.tensor([], dtype=backend.cache_dtype).element_size()
    extra = probe.kv_cache_bytes(max_ctx, cache_bpv) + probe.state_bytes()
    if (model, layers, quant.upper(), gguf, width_scale, vocab, seed) not in _LAST:
        _LAST.clear()   # what the last call kept must not count against this one
    if gguf is None and not _LAST:
        memory.check_fits(f"the {probe.n_layers}-layer slice at {quant} with a {max_ctx}-token cache",
                          synthetic_nbytes(probe, quant, x8_copies=_repacks(backend)) + extra)
    t0 = time.perf_counter()
    w = load_weights(model, layers, quant, gguf, width_scale, vocab, extra_bytes=extra, seed=seed)
    load_s = time.perf_counter() - t0
    cfg: ModelConfig = w.cfg
    if gguf:
        memory.check_fits(f"the cache of {max_ctx} tokens", cfg.kv_cache_bytes(max_ctx, cache_bpv) + cfg.state_bytes())
    m = Qwen35(w, backend)
    gen = torch.Generator().manual_seed(seed)

    def rand_tokens(n: int) -> torch.Tensor:
        return torch.randint(0, cfg.vocab, (1, n), generator=gen).to(m.device)

    # warm-up: lets the matmul impls build their packed layouts, outside every timing
    warm = m.new_state(16)
    prefill(m, rand_tokens(8), warm)
    decode_one_token(m, rand_tokens(1)[0], warm)
    del warm

    # prefill throughput (from an empty state), then the caches and states filled to `context`
    n_pre = prefill_tokens or max(1, min(context, 128) if context else 32)
    how = fill if fill != "auto" else ("prefill" if context <= 512 else "synthetic")
    grow = how == "prefill" and context >= n_pre        # the measured prompt is the start of the fill
    st = m.new_state(max(max_ctx, n_pre) if grow else n_pre)
    prompt = rand_tokens(n_pre)
    _sync(device)
    t0 = time.perf_counter()
    logits = prefill(m, prompt, st)
    _sync(device)
    prefill_s = time.perf_counter() - t0
    if grow:
        if context > n_pre:
            logits = prefill(m, rand_tokens(context - n_pre), st)   # continue the prompt up to the depth
    else:
        del st                                                      # never two caches at once
        st = m.new_state(max_ctx)
        if context and how == "prefill":
            logits = prefill(m, prompt[:, :context], st)
        elif context:
            fill_synthetic(st, context, seed)
    token = logits.argmax(-1) if context else rand_tokens(1)[0]

    tok = [token]
    step = lambda: _timed_step(m, st, device, tok)   # noqa: E731
    settle = settle_steps(step)
    side = _SideSlice(m, side_slice, max_ctx, context, seed, device) if side_slice and layers is None else None

    # decode, no instrumentation: the tok/s figure
    samples, side_samples = [], []
    with measure.OthersCpu() as others:
        for _ in range(tokens):
            samples.append(step())
            if side is not None:
                side_samples.append(side.step())
    decode_s = float(np.median(samples))

    # decode again with the per-op timer: where the time goes
    ops_ms, prof_total, head_abs = profiled_pass(m, st, device, tok)
    # The head's time per uninstrumented step. On a GPU the timer synchronises around every op, which inflates
    # the layers' many small ops but not the head's few large ones: there the head's own measured seconds are
    # used (a share of the inflated total understates it). On a CPU synchronising costs nothing and the share,
    # taken within one pass, is the figure that survives a machine whose load changes between the passes.
    head_s = _head_s(decode_s, head_abs, prof_total, device)
    streamed = streamed_bytes_per_token(w, context, cache_bpv)
    state_nb = st.nbytes()
    rec = {
        "model": model, "source": w.source, "layers": cfg.n_layers, "full_layers": cfg.full_layers,
        "quant": quant.upper() if not gguf else "+".join(sorted(w.formats())), "formats": w.formats(),
        "width_scale": width_scale, "hidden": cfg.hidden, "vocab": cfg.vocab,
        "device": device, "threads": torch.get_num_threads(), "backend": backend.as_dict(),
        "matmul_fallbacks": dict(m.ops.fallbacks),
        "resolved": m.ops.resolutions(),   # each op's impl and config per shape, and whether the tune cache gave it
        "context": context, "tokens": tokens, "fill": how if context else "none",
        "load_s": round(load_s, 3),
        "prefill_tokens": n_pre, "prefill_tok_s": n_pre / prefill_s,
        "decode_tok_s": 1.0 / decode_s, "decode_ms_per_token": 1e3 * decode_s,
        "decode_ms_samples": [round(1e3 * s, 3) for s in samples],
        "ops_ms_per_token": ops_ms, "profiled_ms_per_token": 1e3 * prof_total,
        "head_ms_per_token": 1e3 * head_s,
        "head_share_of_profiled": head_abs / prof_total,
        "bytes_per_token": streamed, "achieved_gb_s": streamed["total"] / decode_s / GB,
        "weights_gb": w.nbytes() / GB, "kv_cache_gb": state_nb["kv_cache"] / GB, "state_gb": state_nb["state"] / GB,
        "peak_rss_gb": memory.peak_rss_bytes() / GB, "rss_before_load_gb": rss0 / GB,
        "rss_expected_gb": (w.nbytes() + state_nb["kv_cache"] + state_nb["state"]) / GB,
    }
    rec["settle_ms_samples"] = [round(1e3 * x, 3) for x in settle]
    rec["others_cpu_share"] = others.share   # of the machine, while the tok/s samples ran
    full_w = full_layer_weight_bytes(w)
    rec["full_layer_weight_bytes"] = full_w
    rec["full_model"] = scale_to_full(rec, cfg, streamed, full_w)
    if side is not None:
        rec["side_by_side"] = side.record(samples, side_samples, cache_bpv, full_w)
    # aliases the profile runner reads
    rec["scaled_decode_tok_s"] = rec["full_model"]["decode_tok_s"]
    rec["breakdown_s_per_token"] = {k: v / 1e3 for k, v in ops_ms.items()}
    return rec


# Warm-up steps before timing, until two steps in a row come within SETTLED of the fastest so far: after a
# whole model is loaded, the kernel reclaims the file's page cache and compacts memory for seconds, and the
# first steps ran 4x slower (64 layers, 2-core EPYC) than the ones after.
SETTLED = 1.25
SETTLE_MAX_STEPS = 12
SETTLE_BUDGET_S = 60.0


def _timed_step(m: Qwen35, st: DecodeState, device: str, tok: list) -> float:
    """Seconds of one decode step; tok[0] (the token fed in) becomes the greedy next token."""
    _sync(device)
    t0 = time.perf_counter()
    tok[0] = decode_one_token(m, tok[0], st).argmax(-1)
    _sync(device)
    return time.perf_counter() - t0


def settle_steps(step, max_steps: int = SETTLE_MAX_STEPS, budget_s: float = SETTLE_BUDGET_S) -> list[float]:
    """Run untimed steps until two in a row are within SETTLED x the fastest (or the step/time cap); their times."""
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < max_steps:
        times.append(step())
        if len(times) >= 2 and max(times[-2:]) <= SETTLED * min(times) or time.perf_counter() > end:
            break
    return times


def profiled_pass(m: Qwen35, st: DecodeState, device: str, tok: list) -> tuple[dict, float, float]:
    """PROFILE_TOKENS steps with the per-op timer on: (ms per op kind, seconds per step, head seconds per step)."""
    timer = OpTimer(device)
    m.set_timer(timer)
    t0 = time.perf_counter()
    for _ in range(PROFILE_TOKENS):
        tok[0] = decode_one_token(m, tok[0], st).argmax(-1)
    prof_total = (time.perf_counter() - t0) / PROFILE_TOKENS
    m.set_timer(None)
    ops_ms = {k: 1e3 * timer.seconds[k] / PROFILE_TOKENS for k in OP_KINDS}
    ops_ms["other"] = max(0.0, 1e3 * prof_total - sum(ops_ms[k] for k in OP_KINDS if k != "other"))
    return ops_ms, prof_total, timer.sections.get("head", 0.0) / PROFILE_TOKENS


def _head_s(decode_s: float, head_abs: float, prof_total: float, device: str) -> float:
    return min(decode_s, head_abs if device in ("cuda", "mps") else decode_s * min(1.0, head_abs / prof_total))


class _SideSlice:
    """The first `layers` layers of a loaded whole model as a model of their own: the same tensor objects, so
    the same repacked copies in the same pages, with a cache of their own filled to `context`."""

    def __init__(self, m: Qwen35, layers: int, max_ctx: int, context: int, seed: int, device: str):
        w = m.w
        cfg = replace(w.cfg.sliced(layers), full_layers=w.cfg.full_layers)
        keep = {n: t for n, t in w.tensors.items()
                if not n.startswith("blk.") or int(n.split(".")[1]) < layers}
        self.w = Weights(cfg, keep, w.source, w.keepalive)
        self.m, self.device = Qwen35(self.w, m.backend), device
        self.st = self.m.new_state(max_ctx)
        if context:
            fill_synthetic(self.st, context, seed)
        self.tok = [torch.zeros(1, dtype=torch.long, device=m.device)]
        settle_steps(self.step)   # resolves its impls; the weights are warm already

    def step(self) -> float:
        return _timed_step(self.m, self.st, self.device, self.tok)

    def record(self, whole: list[float], samples: list[float], cache_bpv: int, full_w: int) -> dict:
        """The slice's extrapolation next to the whole model. error_pct is the median over step pairs (each
        slice step scaled, against the whole-model step just before it): load that comes and goes between
        steps cancels in a pair, not across medians taken apart."""
        ops_ms, prof, head_abs = profiled_pass(self.m, self.st, self.device, self.tok)
        cfg, context = self.w.cfg, self.st.pos
        streamed = streamed_bytes_per_token(self.w, context, cache_bpv)

        def scaled(step_s: float) -> dict:
            return scale_to_full({"decode_ms_per_token": 1e3 * step_s, "ops_ms_per_token": ops_ms,
                                  "profiled_ms_per_token": 1e3 * prof, "head_share_of_profiled": head_abs / prof,
                                  "head_ms_per_token": 1e3 * _head_s(step_s, head_abs, prof, self.device)},
                                 cfg, streamed, full_w)

        slice_s = float(np.median(samples))
        full = scaled(slice_s)
        over = float(np.median([1e3 * w / scaled(s)["ms_per_token"] for w, s in zip(whole, samples)]))
        return {"layers": cfg.n_layers, "decode_ms_per_token": 1e3 * slice_s,
                "decode_ms_samples": [round(1e3 * x, 3) for x in samples], "ops_ms_per_token": ops_ms,
                "head_ms_per_token": 1e3 * _head_s(slice_s, head_abs, prof, self.device), "full_model": full,
                "scaled_tok_s": full["decode_tok_s"], "error_pct": 100 * (over - 1),
                "method": "median over interleaved steps of whole-model ms / the slice step scaled to the whole model"}


def scale_to_full(rec: dict, cfg: ModelConfig, streamed: dict, full_layer_weights: int | None = None) -> dict:
    """A slice of L layers (L/4 attention, 3L/4 DeltaNet) costs head + its layers; the whole model costs the
    head once (embedding row, final norm, output matmul) plus all `full_layers` layers. Of the layers' time,
    the attention and DeltaNet ops (their share in the profiled pass) are the same in every layer of a kind
    and scale by layer count; the rest, matmuls streaming the weights, scales by the layers' weight bytes
    (`full_layer_weights`, all layers of the whole model: a slice's first layers carry more bits under a
    K-quant mix). Bytes scale the same way."""
    L, full = cfg.n_layers, cfg.full_layers
    t = rec["decode_ms_per_token"]
    head = rec["head_ms_per_token"]
    slice_w = streamed["weights"] - streamed["head_weights"]
    w_ratio = (full_layer_weights / slice_w) if full_layer_weights and slice_w else full / L
    ops, prof = rec.get("ops_ms_per_token") or {}, rec.get("profiled_ms_per_token") or 0.0
    layers_prof = prof * (1 - min(1.0, rec.get("head_share_of_profiled", 0.0)))
    mixer_share = min(1.0, (ops.get("attention", 0.0) + ops.get("deltanet", 0.0)) / layers_prof) if layers_prof > 0 else 0.0
    mixer = (t - head) * mixer_share
    stream = (t - head) - mixer
    t_full = head + mixer * full / L + stream * w_ratio
    layer_bytes = streamed["total"] - streamed["weights"]           # KV cache and states: by count
    bytes_full = streamed["head_weights"] + slice_w * w_ratio + layer_bytes * full / L
    return {
        "layers": full, "ms_per_token": t_full, "decode_tok_s": 1e3 / t_full, "bytes_per_token": bytes_full,
        "achieved_gb_s": bytes_full / t_full * 1e3 / GB, "weight_bytes_ratio": w_ratio,
        "arithmetic": (f"full = head {head:.2f} ms + attention/DeltaNet {mixer:.2f} ms x {full}/{L} layers + "
                       f"weight streaming {stream:.2f} ms x {w_ratio:.3f} (all layers' weight bytes / the slice's) "
                       f"= {t_full:.2f} ms/token -> {1e3 / t_full:.3f} tok/s"),
    }


def dump_logits(model: str, layers: int | None, quant: str, gguf: str | None, prompt: list[int], path: str, *,
                device: str = "cpu", threads: int | None = None, width_scale: float = 1.0,
                vocab: int | None = None, seed: int = 0) -> str:
    """Logits of every position of `prompt` (one prefill pass) saved as a [T, vocab] float32 .npy file."""
    import io

    from qlab.io import write_atomic

    if threads:
        measure.set_threads(int(threads))
    w = load_weights(model, layers, quant, gguf, width_scale, vocab, seed=seed)
    bad = [t for t in prompt if not 0 <= t < w.cfg.vocab]
    if bad:
        raise QlabError(f"--prompt-tokens: ids {bad[:5]} outside the vocabulary [0, {w.cfg.vocab})")
    m = Qwen35(w, default_backend(device))
    st = m.new_state(len(prompt))
    logits = prefill(m, torch.tensor([prompt], device=m.device), st, all_logits=True)[0]
    buf = io.BytesIO()
    np.save(buf, logits.float().cpu().numpy())
    write_atomic(path, buf.getvalue())
    return path


def format_record(r: dict) -> str:
    """The record for people: a few lines, the slice's numbers and the full-model estimate."""
    ops = r["ops_ms_per_token"]
    prof = r["profiled_ms_per_token"] or 1.0
    f = r["full_model"]
    lines = [
        f"{r['model']} {r['layers']}/{r['full_layers']} layers, {r['quant']} ({r['source']}), hidden {r['hidden']}, "
        f"{r['device']} x{r['threads']} threads",
        f"prefill  {r['prefill_tok_s']:8.1f} tok/s  ({r['prefill_tokens']} tokens)",
        f"decode   {r['decode_tok_s']:8.2f} tok/s  at depth {r['context']} ({r['fill']} fill), "
        f"{r['decode_ms_per_token']:.2f} ms/token (median of {r['tokens']})",
        "per token: " + ", ".join(f"{k} {v:.2f} ms ({100 * v / prof:.0f}%)" for k, v in ops.items())
        + f"  [profiled pass {prof:.2f} ms]",
        f"streamed {r['bytes_per_token']['total'] / 1e6:.1f} MB/token -> {r['achieved_gb_s']:.2f} GB/s",
        f"memory   weights {r['weights_gb']:.3f} GB + KV {r['kv_cache_gb']:.3f} GB + state {r['state_gb']:.3f} GB"
        f" = {r['rss_expected_gb']:.3f} GB; peak RSS {r['peak_rss_gb']:.3f} GB "
        f"(process before loading: {r['rss_before_load_gb']:.3f} GB)",
        f"full model ({f['layers']} layers): {f['decode_tok_s']:.3f} tok/s, {f['bytes_per_token'] / 1e9:.2f} GB/token",
        f"  {f['arithmetic']}",
    ]
    if r.get("resolved"):
        lines.append("kernels  " + _kernels_line(r["resolved"]))
    return "\n".join(lines)


def _kernels_line(resolved: list[dict]) -> str:
    """role: impl per decode/prefill role, with how many of its shapes took their config from the tune cache."""
    roles: dict[str, dict[str, list[bool]]] = {}
    for x in resolved:
        roles.setdefault(x["role"], {}).setdefault(x["impl"], []).append(x["from_cache"])
    return "; ".join(f"{role} " + ", ".join(f"{impl} ({sum(c)}/{len(c)} tuned)" for impl, c in impls.items())
                     for role, impls in roles.items())
