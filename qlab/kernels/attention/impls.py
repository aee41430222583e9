"""The attention impls (decode: one query per sequence against its KV cache; prefill: a whole prompt), as
records of the kernel registry (qlab/kernels/registry.py)."""

from __future__ import annotations

from qlab.kernels.registry import Impl, OpSpec

OPS = (OpSpec("attention_decode", {"B": 1, "HQ": 24, "HKV": 4, "D": 256, "S": 4096}, ("S",),
              "qlab.kernels.attention"),
       OpSpec("attention_prefill", {"B": 1, "T": 512, "HQ": 24, "HKV": 4, "D": 256}, ("T",),
              "qlab.kernels.attention"))

_ALL = ("cpu", "cuda", "mps")
IMPLS = (
    Impl("attention_decode", "naive", "torch", "naive:decode", _ALL,
         "softmax over the cache in fp32 torch, one sequence at a time (the reference)", reference=True),
    Impl("attention_decode", "sdpa", "torch", "sdpa:decode", _ALL,
         "torch's scaled_dot_product_attention per sequence (or one masked call)", rank=10, tunables="tunables"),
    Impl("attention_decode", "triton_decode", "triton", "triton_decode:decode", ("cuda",),
         "split-K flash decoding in Triton, the query group of a KV head per program", rank=30,
         tunables="tunables"),
    Impl("attention_decode", "cupy_decode", "cupy", "cupy_decode:decode", ("cuda",),
         "split-K flash decoding in CUDA C (cupy.RawModule)", rank=20, tunables="tunables"),
    Impl("attention_prefill", "naive", "torch", "naive:prefill", _ALL,
         "causal softmax attention in fp32 torch (the reference)", reference=True),
    Impl("attention_prefill", "sdpa", "torch", "sdpa:prefill", _ALL,
         "torch's scaled_dot_product_attention, causal", rank=10, tunables="tunables"),
    Impl("attention_prefill", "triton_prefill", "triton", "triton_prefill:prefill", ("cuda",),
         "flash attention forward in Triton, causal", rank=30, tunables="tunables"),
)
