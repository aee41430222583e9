"""The decode loop's calls into the kernel packages, with the impl and config of each op resolved by the kernel
registry (qlab.kernels.registry.resolve: the tune cache's choice for this device and shape, else the defaults),
and an optional per-op-kind timer.

The model never calls torch for heavy work itself: matmuls go to `qlab.kernels.dequant_matmul`, the DeltaNet
scan and its conv to `qlab.kernels.deltanet`, attention to `qlab.kernels.attention`, so the same loop profiles
every backend (CPU paths here, Triton/CuPy on GPUs). Op kinds: "matmul", "deltanet" (conv + scan),
"attention" (the softmax over the cache); everything else (norms, RoPE, gates, residuals) is "other".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from qlab import measure

OP_KINDS = ("deltanet", "attention", "matmul", "other")


# the registry's op behind each Backend field (deltanet serves decode and prefill: its impls say which shapes fit)
FIELD_OPS = {"matmul": "dequant_matmul", "deltanet_decode": "deltanet", "deltanet_prefill": "deltanet",
             "attn_decode": "attention_decode", "attn_prefill": "attention_prefill"}


@dataclass(frozen=True)
class Backend:
    """Which impl each op uses: None (the default) lets the kernel registry resolve it per shape — the tune
    cache's choice for this device, else the highest-ranked impl that runs here and reads the weight's format;
    a name forces that impl (the `naive` ones are the fp32 references)."""
    device: str = "cpu"
    matmul: str | None = None
    deltanet_decode: str | None = None
    deltanet_prefill: str | None = None
    attn_decode: str | None = None
    attn_prefill: str | None = None
    cache_dtype: torch.dtype = torch.bfloat16
    act_dtype: torch.dtype = torch.float32
    tuned: bool = True   # read the tune cache (False: every op on its impl's defaults)
    configs: dict = field(default_factory=dict)   # Backend field -> config for every shape of it (the decode
    #                                               tuner's candidates); parameters outside the impl's space ignored

    def as_dict(self) -> dict:
        return {k: (str(v).replace("torch.", "") if isinstance(v, torch.dtype) else v)
                for k, v in self.__dict__.items()}


def default_backend(device: str = "cpu", **overrides) -> Backend:
    """Every op resolved by the registry on `device`; fp16 caches on MPS, bf16 elsewhere. `overrides` name
    impls (matmul="cpu_fp32") or set other fields (tuned=False)."""
    if device not in ("cpu", "cuda", "mps"):
        from qlab.errors import unknown

        raise unknown("device", device, ["cpu", "cuda", "mps"])
    b = Backend(device, cache_dtype=torch.float16 if device == "mps" else torch.bfloat16)
    return replace(b, **overrides)


def reference_backend(device: str = "cpu") -> Backend:
    """Every op on its fp32 reference impl, fp32 cache: what the engine's fast paths are checked against."""
    from qlab.kernels import registry

    refs = {f: registry.reference(op).name for f, op in FIELD_OPS.items()}
    return Backend(device, cache_dtype=torch.float32, **refs)


# ---- per-op timing --------------------------------------------------------------------------------------
@dataclass
class OpTimer:
    """Seconds per op kind. Synchronises the device around each op, so it is only switched on for the
    profiling pass; the tok/s pass runs without it and nothing waits inside the loop."""
    device: str = "cpu"
    seconds: dict = field(default_factory=lambda: {k: 0.0 for k in OP_KINDS})
    calls: dict = field(default_factory=lambda: {k: 0 for k in OP_KINDS})
    sections: dict = field(default_factory=dict)   # wall time of named stretches, e.g. "head"

    def sync(self):
        measure.sync(self.device)

    @contextmanager
    def _timed(self, store: dict, key: str):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            store[key] = store.get(key, 0.0) + time.perf_counter() - t0

    @contextmanager
    def __call__(self, kind: str):
        """Time one op of kind `kind`."""
        self.calls[kind] += 1
        with self._timed(self.seconds, kind):
            yield

    def section(self, name: str):
        """Wall time of a stretch of the forward pass (ops inside are still counted by kind)."""
        return self._timed(self.sections, name)


@contextmanager
def _nothing(kind: str):
    yield


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


# ---- weight formats (qlab.kernels.dequant_matmul) ---------------------------------------------------------
def _dm():
    import qlab.kernels.dequant_matmul as dm

    return dm


def quantize(w: torch.Tensor, fmt: str):
    return _dm().quantize(w, fmt)


def dequantize(qw) -> torch.Tensor:
    """fp32 [N, K] torch tensor of a (small) QuantizedWeight: only used on a few rows at a time."""
    return torch.from_numpy(np.ascontiguousarray(_dm().dequantize(qw)))


def make_qweight(fmt: str, shape: tuple[int, int], raw: np.ndarray, name: str = "", scale=None):
    """A QuantizedWeight over existing ggml block bytes `raw` [N, row_bytes] (numpy uint8), no copy."""
    return _dm().QuantizedWeight(fmt, tuple(shape), raw, scale=scale, name=name)


def from_gguf_tensor(tensor):
    """A gguf.ReaderTensor as a QuantizedWeight over the reader's memory map (no copy)."""
    return _dm().from_gguf_tensor(tensor)


def raw_bytes(qw) -> np.ndarray:
    return np.asarray(qw.raw)


# ---- the ops ------------------------------------------------------------------------------------------------
class Ops:
    def __init__(self, backend: Backend, timer: OpTimer | None = None):
        self.b = backend
        self.mm_threads: int | None = None   # set while small ops run single-threaded (see below)
        self.fallbacks: dict[str, str] = {}  # weight format -> matmul impl used instead of the backend's
        self.plan: dict[tuple, tuple] = {}   # (op, shape key) -> (registry record, config, source)
        self.t = timer if timer is not None else _nothing
        self.section = timer.section if timer is not None else _nothing

    # ---- which impl and config each call runs ----------------------------------------------------------------
    def resolved(self, field_name: str, key: tuple, shape: Callable[[], dict]) -> tuple:
        """(record, config, source) for the op behind Backend field `field_name` at a shape, resolved once per
        shape key and kept: the loop's hot path is one dict lookup."""
        hit = self.plan.get((field_name, key))
        if hit is None:
            full = shape()
            hit = (*self._resolve(field_name, full), full)
            self.plan[(field_name, key)] = hit
        return hit[:3]

    def _resolve(self, field_name: str, shape: dict) -> tuple:
        rec, config, source = self._resolve_impl(field_name, shape)
        given = self.b.configs.get(field_name)
        if given:
            space = rec.space()
            picked = {k: v for k, v in given.items() if k in space}
            if picked:
                config, source = {**config, **picked}, "given"
        return rec, config, source

    def _resolve_impl(self, field_name: str, shape: dict) -> tuple:
        from qlab.kernels import registry

        op, forced, dev = FIELD_OPS[field_name], getattr(self.b, field_name), self.b.device
        if forced is not None:   # whether it runs here is the kernel call's to say (with the reason)
            rec = registry.get(op, forced)
            if "fmt" in shape and not rec.reads(shape["fmt"]):
                # a forced impl that does not read this format: the impl it delegates to, else the reference
                # (on the host: slow, but the loop still runs); recorded in `fallbacks`
                rec = registry.get(op, rec.delegates) if rec.delegates else registry.reference(op)
                self.fallbacks[str(shape["fmt"])] = rec.name
            return registry.resolve(op, {k: v for k, v in shape.items() if k != "dtype"}, dev, impl=rec.name,
                                    cache=self.b.tuned)
        try:
            return registry.resolve(op, shape, dev, cache=self.b.tuned)
        except registry.ImplUnavailableError:   # nothing on this device reads the format: the reference
            rec = registry.reference(op)
            self.fallbacks[str(shape.get("fmt"))] = rec.name
            return registry.resolve(op, {k: v for k, v in shape.items() if k != "dtype"}, dev, impl=rec.name,
                                    cache=False)

    def resolutions(self) -> list[dict]:
        """What each op ran, per shape bucket: impl, its config, and whether that came from the tune cache."""
        from qlab.kernels import registry

        out, seen = [], set()
        for (field_name, _), (rec, config, source, shape) in self.plan.items():
            spec = registry.op_spec(rec.op)
            bucket = spec.bucket(spec.full_shape(shape, self.b.device))
            if (field_name, rec.name, str(bucket)) in seen:
                continue
            seen.add((field_name, rec.name, str(bucket)))
            out.append({"op": rec.op, "role": field_name, "shape": bucket, "impl": rec.name,
                        "backend": rec.backend, "config": dict(config), "from_cache": source == "cache"})
        return out

    @contextmanager
    def small_ops_single_threaded(self, on: bool):
        """Run everything but the matmuls on one CPU thread (decode on the CPU). The per-token ops outside the
        matmuls touch a few MB at most: a second thread saves little, and on a busy machine each parallel op
        waits at a barrier for a descheduled sibling (measured: the DeltaNet step 0.7 ms on 1 thread, 48 ms on
        2 with the machine oversubscribed). The matmuls, which stream the weights, keep all threads."""
        if not on or self.b.device != "cpu":
            yield
            return
        n = torch.get_num_threads()
        self.mm_threads = n
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)
            self.mm_threads = None

    def linear(self, x: torch.Tensor, w) -> torch.Tensor:
        """x [..., K] · wᵀ -> [..., N] in the activation dtype; w quantized (never dequantized whole) or dense."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        if self.mm_threads:
            torch.set_num_threads(self.mm_threads)
        with self.t("matmul"):
            if isinstance(w, torch.Tensor):   # F32/F16/BF16 weights: torch's own GEMM in the weight's dtype
                y = F.linear(x2.to(w.dtype), w).to(self.b.act_dtype)
            else:
                rec, config, _ = self.matmul_plan(x2.shape[0], w)
                xin = x2.to(self.b.act_dtype)
                if rec.runs_on(xin.device):
                    y = _dm().matmul(xin, w, impl=rec.name, config=config)
                else:   # the reference on the host: slow, but the loop still runs (see _resolve)
                    y = _dm().matmul(xin.cpu(), w, impl=rec.name, config=config).to(x2.device)
                y = y.to(self.b.act_dtype)
        if self.mm_threads:
            torch.set_num_threads(1)
        return y.reshape(*lead, y.shape[-1])

    def linears(self, x: torch.Tensor, ws: list) -> list[torch.Tensor]:
        """[self.linear(x, w) for w in ws], as one call into the matmul package where every weight resolves to
        the same impl and config and that impl batches (registry `batches`; cpu_int8: one quantization of x,
        one parallel region; dequant_matmul.matmul_many)."""
        M = x.numel() // x.shape[-1]
        plans = [None if isinstance(w, torch.Tensor) else self.matmul_plan(M, w) for w in ws]
        first = plans[0]
        if first is None or not first[0].batches or any(p is None or p[0] is not first[0] or p[1] != first[1]
                                                          for p in plans[1:]):
            return [self.linear(x, w) for w in ws]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).to(self.b.act_dtype)
        if self.mm_threads:
            torch.set_num_threads(self.mm_threads)
        with self.t("matmul"):
            ys = _dm().matmul_many(x2, ws, impl=first[0].name, config=first[1])
        if self.mm_threads:
            torch.set_num_threads(1)
        return [y.to(self.b.act_dtype).reshape(*lead, y.shape[-1]) for y in ys]

    def matmul_plan(self, M: int, w) -> tuple:
        """(record, config, source) of the matmul x [M, K] · wᵀ: resolved once per (M, N, K, format)."""
        N, K = w.shape
        return self.resolved("matmul", (M, N, K, w.fmt), lambda: {"M": M, "N": N, "K": K, "fmt": w.fmt,
                                                                   "dtype": _dtype_name(self.b.act_dtype)})

    def matmul_impl(self, fmt: str, M: int = 1, N: int = 256, K: int = 256) -> str:
        """The impl a matmul of a `fmt` weight runs (at decode, M = 1): the forced one if it reads `fmt`, else
        what the registry resolves (e.g. the Triton GEMV without Q6_K, which Q4_K_M files use for attn_v,
        ffn_down and the head: the reference). Fallbacks are recorded in `self.fallbacks`."""
        return self.resolved("matmul", (M, N, K, fmt), lambda: {"M": M, "N": N, "K": K, "fmt": fmt,
                                                                 "dtype": _dtype_name(self.b.act_dtype)})[0].name

    def embed(self, tokens: torch.Tensor, table) -> torch.Tensor:
        """Rows `tokens` [B, T] of the embedding table -> [B, T, hidden]: only those rows are dequantized."""
        with self.t("other"):
            flat = tokens.reshape(-1)
            if isinstance(table, torch.Tensor):
                rows = table.index_select(0, flat).to(self.b.act_dtype)
            else:  # gather the rows' blocks on the host (a token id per row: tiny), decode only those
                idx = flat.cpu().numpy()
                sub = make_qweight(table.fmt, (idx.size, table.shape[1]), table.raw[idx],
                                   scale=None if table.scale is None else table.scale[idx])
                rows = dequantize(sub).to(device=tokens.device, dtype=self.b.act_dtype)
        return rows.reshape(*tokens.shape, -1)

    # DeltaNet: conv (prefill or one-token update) then the gated delta rule
    def conv(self, x: torch.Tensor, weight: torch.Tensor, conv_state: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> silu(causal conv) [B, T, C]; conv_state [B, C, W-1] is updated in place."""
        from qlab.kernels import deltanet

        with self.t("deltanet"):
            if x.shape[1] == 1:
                return deltanet.causal_conv1d_update(x, conv_state, weight, activation="silu")
            y, final = deltanet.causal_conv1d(x, weight, conv_state=conv_state, activation="silu",
                                              output_final_state=True)
            conv_state.copy_(final)
            return y

    def deltanet_plan(self, B: int, T: int, H: int, HV: int, K: int, V: int, dtype: torch.dtype) -> tuple:
        field_name = "deltanet_decode" if T == 1 else "deltanet_prefill"
        return self.resolved(field_name, (B, T, H, HV, K, V, dtype), lambda: {
            "B": B, "T": T, "H": H, "HV": HV, "K": K, "V": V, "dtype": _dtype_name(dtype)})

    def fused_deltanet_step(self, *tensors: torch.Tensor, heads: tuple[int, int, int, int] | None = None) -> bool:
        """Whether a DeltaNet layer's decode step (after its projections) runs as one call: the resolved decode
        impl has a fused layer step (registry feature "fused_layer_step": recurrent_cpu's C step), and every
        input and state is an fp32 tensor on the CPU (deltanet/layer_step_cpu.py). heads: (H, HV, K, V)."""
        if self.b.device != "cpu":
            return False
        H, HV, K, V = heads or (0, 0, 0, 0)
        rec = self.deltanet_plan(tensors[0].shape[0], 1, H, HV, K, V, torch.float32)[0]
        if "fused_layer_step" not in rec.features:
            return False
        from qlab.kernels.deltanet import layer_step_cpu

        return all(isinstance(t, torch.Tensor) for t in tensors) and layer_step_cpu.applies(*tensors)

    def deltanet_decode_layer(self, qkv, z, b, a, conv_state, conv_w, ssm_a, dt_bias, norm_w, state, H: int,
                              eps: float) -> torch.Tensor:
        """One token's DeltaNet layer between its projections and ssm_out ([B, 1, ·] in, [B, 1, HV·V] out): conv,
        gates, delta rule and gated norm in one C call, the states updated in place. Timed as "deltanet"."""
        from qlab.kernels.deltanet import layer_step_cpu

        B = qkv.shape[0]
        with self.t("deltanet"):
            o = layer_step_cpu.gdn_decode_layer(qkv.reshape(B, -1), z.reshape(B, -1), b.reshape(B, -1),
                                                a.reshape(B, -1), conv_state, conv_w, ssm_a, dt_bias, norm_w,
                                                state, H, eps, threads=self.small_op_threads())
        return o.view(B, 1, -1)

    def small_op_threads(self) -> int:
        """Threads for a fused C step of the decode loop: the matmuls' count. Unlike a torch small op, it is one
        parallel region over ~6 MB of recurrent state (a layer's 48 heads x 64 KiB, read and written), which two
        threads stream faster: a DeltaNet layer step 0.50 -> 0.39 ms in the Q4_K_M slice's loop."""
        return self.mm_threads or torch.get_num_threads()

    def delta_rule(self, q, k, v, g, beta, state: torch.Tensor, scale: float, l2norm: bool = True) -> torch.Tensor:
        """q, k [B, T, H, K]; v [B, T, HV, V]; g, beta [B, T, HV]; state [B, HV, K, V] fp32, updated in place.
        l2norm: the kernel L2-normalises q and k (False: the caller did)."""
        from qlab.kernels import deltanet

        B, T, H, K = q.shape
        rec, config, _ = self.deltanet_plan(B, T, H, v.shape[2], K, v.shape[3], q.dtype)
        if "contiguous_inputs" in rec.features:   # GPU kernels want contiguous inputs
            q, k, v, g, beta = (t.contiguous() for t in (q, k, v, g, beta))
        with self.t("deltanet"):
            o, _ = deltanet.gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=state,
                                             output_final_state=False, use_qk_l2norm=l2norm, impl=rec.name,
                                             inplace_state=True, config=config if rec.tunables else None)
        return o

    def attn_decode(self, q, k_cache, v_cache, lengths, scale: float, length: int | None = None) -> torch.Tensor:
        """length: the longest row's length, known on the host (the config is resolved for its power-of-two
        bucket, as the tuner buckets S); default the cache's size."""
        from qlab.kernels import attention

        B, HQ, D = q.shape
        S = _pow2(length or k_cache.shape[2])
        rec, config, _ = self.resolved("attn_decode", (B, HQ, k_cache.shape[1], D, S, k_cache.dtype), lambda: {
            "B": B, "HQ": HQ, "HKV": k_cache.shape[1], "D": D, "S": S, "dtype": _dtype_name(k_cache.dtype)})
        with self.t("attention"):
            return attention.decode(q, k_cache, v_cache, lengths, scale=scale, impl=rec.name,
                                    config=config if rec.tunables else None)

    def attn_prefill(self, q, k, v, scale: float) -> torch.Tensor:
        from qlab.kernels import attention

        B, T, HQ, D = q.shape
        rec, config, _ = self.resolved("attn_prefill", (B, T, HQ, k.shape[2], D, q.dtype), lambda: {
            "B": B, "T": T, "HQ": HQ, "HKV": k.shape[2], "D": D, "dtype": _dtype_name(q.dtype)})
        with self.t("attention"):
            return attention.prefill(q, k, v, scale=scale, causal=True, impl=rec.name,
                                     config=config if rec.tunables else None)

    def other(self):
        return self.t("other")
