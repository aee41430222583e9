"""The decode loop's calls into the kernel packages, with the impl of each op chosen per device, and an
optional per-op-kind timer.

The model never calls torch for heavy work itself: matmuls go to `qlab.kernels.dequant_matmul`, the DeltaNet
scan and its conv to `qlab.kernels.deltanet`, attention to `qlab.kernels.attention`, so the same loop profiles
every backend (CPU paths here, Triton/CuPy on GPUs). Op kinds: "matmul", "deltanet" (conv + scan),
"attention" (the softmax over the cache); everything else (norms, RoPE, gates, residuals) is "other".
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

OP_KINDS = ("deltanet", "attention", "matmul", "other")


@dataclass(frozen=True)
class Backend:
    """Which impl each op uses. `naive` paths are the fp32 references; the defaults are the fastest that run.
    The CPU matmul default, cpu_int8, rounds activations to int8 per block as llama.cpp does (torch_cpu keeps
    them fp32 and is ~1.3-2x slower at decode)."""
    device: str = "cpu"
    matmul: str = "cpu_int8"
    deltanet_decode: str = "recurrent_torch"
    deltanet_prefill: str = "chunk_torch"
    attn_decode: str = "sdpa"
    attn_prefill: str = "sdpa"
    cache_dtype: torch.dtype = torch.bfloat16
    act_dtype: torch.dtype = torch.float32

    def as_dict(self) -> dict:
        return {k: (str(v).replace("torch.", "") if isinstance(v, torch.dtype) else v)
                for k, v in self.__dict__.items()}


def default_backend(device: str = "cpu", **overrides) -> Backend:
    """CPU: torch paths. CUDA: Triton kernels (CuPy where asked). MPS: torch paths on the GPU."""
    if device == "cuda":
        b = Backend("cuda", matmul="triton", deltanet_decode="triton_recurrent", deltanet_prefill="triton_chunk",
                    attn_decode="triton_decode", attn_prefill="triton_prefill", cache_dtype=torch.bfloat16)
    elif device == "mps":
        b = Backend("mps", matmul="naive", cache_dtype=torch.float16)
    elif device == "cpu":
        from qlab.kernels.deltanet import why_unavailable

        # the fused C step where qlab's C kernels build (a C compiler), else the torch one
        b = Backend(deltanet_decode="recurrent_cpu" if not why_unavailable("recurrent_cpu") else "recurrent_torch")
    else:
        from qlab.errors import unknown

        raise unknown("device", device, ["cpu", "cuda", "mps"])
    return replace(b, **overrides)


def reference_backend(device: str = "cpu") -> Backend:
    """Every op on its fp32 reference impl, fp32 cache: what the engine's fast paths are checked against."""
    return Backend(device, matmul="naive", deltanet_decode="naive", deltanet_prefill="naive",
                   attn_decode="naive", attn_prefill="naive", cache_dtype=torch.float32)


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
        if self.device == "cuda":
            torch.cuda.synchronize()
        elif self.device == "mps":
            torch.mps.synchronize()

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
        self.t = timer if timer is not None else _nothing
        self.section = timer.section if timer is not None else _nothing

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
                impl = self.matmul_impl(w.fmt)
                xin = x2.to(self.b.act_dtype)
                if impl == self.b.matmul:
                    y = _dm().matmul(xin, w, impl=impl)
                else:   # the reference on the host: slow, but the loop still runs (see matmul_impl)
                    y = _dm().matmul(xin.cpu(), w, impl=impl).to(x2.device)
                y = y.to(self.b.act_dtype)
        if self.mm_threads:
            torch.set_num_threads(1)
        return y.reshape(*lead, y.shape[-1])

    def linears(self, x: torch.Tensor, ws: list) -> list[torch.Tensor]:
        """[self.linear(x, w) for w in ws], as one call into the matmul package where the backend can batch
        them (cpu_int8: one quantization of x, one parallel region; dequant_matmul.matmul_many)."""
        if self.b.matmul != "cpu_int8" or any(isinstance(w, torch.Tensor) or self.matmul_impl(w.fmt) != "cpu_int8"
                                              for w in ws):
            return [self.linear(x, w) for w in ws]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).to(self.b.act_dtype)
        if self.mm_threads:
            torch.set_num_threads(self.mm_threads)
        with self.t("matmul"):
            ys = _dm().matmul_many(x2, ws, impl=self.b.matmul)
        if self.mm_threads:
            torch.set_num_threads(1)
        return [y.to(self.b.act_dtype).reshape(*lead, y.shape[-1]) for y in ys]

    def matmul_impl(self, fmt: str) -> str:
        """The backend's matmul impl if it reads `fmt`, else `naive` (e.g. the Triton GEMV has no Q6_K, which
        Q4_K_M files use for attn_v, ffn_down and the head). Fallbacks are recorded in `self.fallbacks`."""
        spec = _dm().IMPLS.get(self.b.matmul)
        if spec is None or spec.formats is None or fmt in spec.formats:
            return self.b.matmul
        self.fallbacks[fmt] = "naive"
        return "naive"

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

    def fused_deltanet_step(self, *tensors: torch.Tensor) -> bool:
        """Whether a DeltaNet layer's decode step (after its projections) runs as one C call: on the CPU with
        the C recurrent impl, every input and state an fp32 tensor (deltanet/layer_step_cpu.py)."""
        if self.b.device != "cpu" or self.b.deltanet_decode != "recurrent_cpu":
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

    def delta_rule(self, q, k, v, g, beta, state: torch.Tensor, scale: float) -> torch.Tensor:
        """q, k [B, T, H, K]; v [B, T, HV, V]; g, beta [B, T, HV]; state [B, HV, K, V] fp32, updated in place."""
        from qlab.kernels import deltanet

        impl = self.b.deltanet_decode if q.shape[1] == 1 else self.b.deltanet_prefill
        if not impl.endswith("torch") and impl != "naive":   # GPU kernels want contiguous inputs
            q, k, v, g, beta = (t.contiguous() for t in (q, k, v, g, beta))
        with self.t("deltanet"):
            o, _ = deltanet.gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=state,
                                             output_final_state=False, use_qk_l2norm=True, impl=impl,
                                             inplace_state=True)
        return o

    def attn_decode(self, q, k_cache, v_cache, lengths, scale: float) -> torch.Tensor:
        from qlab.kernels import attention

        with self.t("attention"):
            return attention.decode(q, k_cache, v_cache, lengths, scale=scale, impl=self.b.attn_decode)

    def attn_prefill(self, q, k, v, scale: float) -> torch.Tensor:
        from qlab.kernels import attention

        with self.t("attention"):
            return attention.prefill(q, k, v, scale=scale, causal=True, impl=self.b.attn_prefill)

    def other(self):
        return self.t("other")
