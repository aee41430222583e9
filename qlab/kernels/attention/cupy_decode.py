"""Split-K GQA decode as CUDA C (cupy_decode.cu) through cupy.RawModule: the same algorithm as triton_decode,
written by hand, a peer to check the Triton kernel's bandwidth against. Needs a CUDA GPU and CuPy; torch
tensors are shared with CuPy through DLPack (no copies) and the kernels run on torch's current stream."""

from __future__ import annotations

import functools
import math
import os

import torch

from .tunables import DEFAULTS, choose_num_splits

SOURCE = os.path.join(os.path.dirname(__file__), "cupy_decode.cu")
_KERNEL = {torch.bfloat16: "decode_split_bf16", torch.float16: "decode_split_f16",
           torch.float8_e4m3fn: "decode_split_fp8"}


@functools.lru_cache(maxsize=32)
def _module(head_dim: int, group: int, warps: int):
    import cupy

    with open(SOURCE) as f:
        code = f.read()
    opts = ("--std=c++17", f"-DHEAD_DIM={head_dim}", f"-DGROUP={group}", f"-DWARPS={warps}")
    return cupy.RawModule(code=code, options=opts)


def decode(q, k_cache, v_cache, lengths, scale: float, k_scale=None, v_scale=None, config=None) -> torch.Tensor:
    """q [B, HQ, D], caches [B, HKV, S, D] (bf16/fp16, or float8_e4m3fn with k_scale/v_scale [B, HKV]) on a
    CUDA device, lengths [B] -> o [B, HQ, D] in q's dtype. config: num_splits (0 = heuristic), WARPS."""
    import cupy
    import numpy as np

    cfg = DEFAULTS["cupy_decode"] | (config or {})
    if q.device.type != "cuda":
        raise ValueError("q: cupy_decode needs CUDA tensors")
    if k_cache.dtype not in _KERNEL:
        raise ValueError(f"k_cache: cupy_decode supports bf16, fp16 and float8_e4m3fn caches, not {k_cache.dtype}")
    B, HQ, D = q.shape
    _, HKV, S, _ = k_cache.shape
    G = HQ // HKV
    per_word = 4 if k_cache.dtype == torch.float8_e4m3fn else 2          # lanes read whole 32-bit words
    if D % (32 * per_word) or D > 512 or G > 8:
        raise ValueError(f"q: cupy_decode needs head_dim a multiple of {32 * per_word} (<= 512) and <= 8 query "
                         f"heads per KV head, got D={D}, G={G}")
    if k_cache.stride() != v_cache.stride() or k_cache.stride(-1) != 1 or \
            (k_cache.stride(2) * k_cache.element_size()) % 16 or k_cache.data_ptr() % 16 or v_cache.data_ptr() % 16:
        k_cache, v_cache = k_cache.contiguous(), v_cache.contiguous()   # 16-byte aligned rows for vector loads
    warps = int(cfg["WARPS"])
    max_len = int(lengths.max())
    splits = int(cfg["num_splits"]) or choose_num_splits(
        B, HKV, max_len, torch.cuda.get_device_properties(q.device).multi_processor_count)
    split_len = math.ceil(max_len / max(1, min(splits, max_len)))
    splits = math.ceil(max_len / split_len)

    ones = torch.ones(B, HKV, dtype=torch.float32, device=q.device)
    ks = k_scale if k_scale is not None else ones
    vs = v_scale if v_scale is not None else ones
    qf = q.float().contiguous()
    lens = lengths.to(device=q.device, dtype=torch.int32).contiguous()
    o_part = torch.empty(B, HQ, splits, D, dtype=torch.float32, device=q.device)
    lse = torch.empty(B, HQ, splits, dtype=torch.float32, device=q.device)
    out = torch.empty(B, HQ, D, dtype=torch.float32, device=q.device)
    kc, vc = (k_cache.view(torch.uint8), v_cache.view(torch.uint8)) if k_cache.dtype == torch.float8_e4m3fn \
        else (k_cache, v_cache)                      # DLPack has no e4m3 code: hand the kernel bytes
    dl = cupy.from_dlpack
    mod = _module(D, G, warps)
    sb, sh, ss = (np.int64(x) for x in k_cache.stride()[:3])
    with cupy.cuda.ExternalStream(torch.cuda.current_stream(q.device).cuda_stream):
        mod.get_function(_KERNEL[k_cache.dtype])(
            (splits, HKV, B), (warps * 32,),
            (dl(qf), dl(kc), dl(vc), dl(lens), dl(ks), dl(vs), dl(o_part), dl(lse), np.float32(scale),
             sb, sh, ss, np.int32(split_len), np.int32(splits), np.int32(HKV)))
        mod.get_function("decode_merge")((HQ, B), (D,), (dl(o_part), dl(lse), dl(out), np.int32(splits),
                                                         np.int32(HQ)))
    return out.to(q.dtype)
