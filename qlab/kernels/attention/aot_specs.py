"""Ahead-of-time compile specs (qlab/kernels/README.md): one per Triton kernel and configuration the tuner may
pick at Qwen3.6-27B shapes (HQ=24, HKV=4, D=256): every valid() point of tunables.SPACES, with a bf16 cache
and an FP8 one for decode, bf16 for prefill, plus the split-merge kernel and the fused q/k norm + rope."""

from __future__ import annotations

import itertools

from .tunables import SPACES, valid
from .triton_decode import _merge_kernel, _split_kernel
from .triton_norm_rope import _norm_rope_kernel
from .triton_prefill import _prefill_kernel

HQ, HKV, D = 24, 4, 256
G = HQ // HKV


def _decode_spec(kv: str, block_n: int, warps: int, stages: int) -> dict:
    """kv: "bf16", or "u8" for an FP8 cache (the kernel reads e4m3 as bytes)."""
    sig = {"q_ptr": "*bf16", "k_ptr": f"*{kv}", "v_ptr": f"*{kv}", "len_ptr": "*i32", "ks_ptr": "*fp32",
           "vs_ptr": "*fp32", "o_ptr": "*fp32", "lse_ptr": "*fp32", "scale": "fp32"}
    sig |= {n: "i32" for n in ("stride_qb", "stride_qh", "stride_kb", "stride_kh", "stride_ks", "stride_vb",
                                "stride_vh", "stride_vs", "split_len", "num_splits", "HKV")}
    consts = {"G": G, "G_PAD": 16, "D": D, "BLOCK_N": block_n, "FP8": kv == "u8", "DOT_F32": False}
    sig |= {n: "constexpr" for n in consts}
    return {"name": f"decode_split_{kv}_n{block_n}_w{warps}_s{stages}", "fn": _split_kernel, "signature": sig,
            "constexprs": consts, "num_warps": warps, "num_stages": stages}


def _merge_spec(splits_pad: int) -> dict:
    sig = {"o_part_ptr": "*fp32", "lse_ptr": "*fp32", "out_ptr": "*bf16", "stride_ob": "i32", "stride_oh": "i32",
           "num_splits": "i32", "HQ": "i32", "D": "constexpr", "SPLITS_PAD": "constexpr"}
    return {"name": f"decode_merge_p{splits_pad}", "fn": _merge_kernel, "signature": sig,
            "constexprs": {"D": D, "SPLITS_PAD": splits_pad}, "num_warps": 4, "num_stages": 1}


def _prefill_spec(bm: int, bn: int, warps: int, stages: int) -> dict:
    sig = {"q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16", "o_ptr": "*bf16", "scale": "fp32"}
    sig |= {f"stride_{t}{d}": "i32" for t in "qkvo" for d in ("b", "t", "h")}
    sig |= {"T": "i32", "HQ": "i32"}
    consts = {"G": G, "D": D, "BLOCK_M": bm, "BLOCK_N": bn, "CAUSAL": True, "DOT_F32": False}
    sig |= {n: "constexpr" for n in consts}
    return {"name": f"prefill_m{bm}_n{bn}_w{warps}_s{stages}", "fn": _prefill_kernel, "signature": sig,
            "constexprs": consts, "num_warps": warps, "num_stages": stages}


def _norm_rope_spec(dtype: str) -> dict:
    sig = {"x_ptr": f"*{dtype}", "w_ptr": f"*{dtype}", "cos_ptr": "*fp32", "sin_ptr": "*fp32", "y_ptr": f"*{dtype}",
           "stride_xn": "i32", "stride_xh": "i32", "stride_yn": "i32", "stride_yh": "i32", "eps": "fp32",
           "D": "constexpr", "ROT": "constexpr", "UNIT_OFFSET": "constexpr"}
    return {"name": f"norm_rope_{dtype}", "fn": _norm_rope_kernel, "signature": sig,
            "constexprs": {"D": D, "ROT": 64, "UNIT_OFFSET": True}, "num_warps": 2, "num_stages": 1}


def _points(impl: str, shape: dict, skip=()):
    space = {k: v for k, v in SPACES[impl].items() if k not in skip}
    for values in itertools.product(*space.values()):
        cfg = dict(zip(space, values))
        if valid(impl, cfg, shape):
            yield cfg


def aot_specs() -> list[dict]:
    specs = []
    for kv, kv_bytes in (("bf16", 2), ("u8", 1)):
        shape = {"B": 1, "HQ": HQ, "HKV": HKV, "D": D, "S": 32768, "kv_bytes": kv_bytes}
        for c in _points("triton_decode", shape, skip=("num_splits",)):   # num_splits is a runtime argument
            specs.append(_decode_spec(kv, c["BLOCK_N"], c["num_warps"], c["num_stages"]))
    specs += [_merge_spec(p) for p in (1, 2, 4, 8, 16, 32, 64, 128)]
    shape = {"B": 1, "T": 4096, "HQ": HQ, "HKV": HKV, "D": D, "io_bytes": 2}
    for c in _points("triton_prefill", shape):
        specs.append(_prefill_spec(c["BLOCK_M"], c["BLOCK_N"], c["num_warps"], c["num_stages"]))
    return specs + [_norm_rope_spec("bf16")]


def default_specs() -> list[dict]:
    """The specs of the DEFAULTS configurations only (the quick compile test)."""
    from .tunables import DEFAULTS
    d, p = DEFAULTS["triton_decode"], DEFAULTS["triton_prefill"]
    return [_decode_spec("bf16", d["BLOCK_N"], d["num_warps"], d["num_stages"]),
            _decode_spec("u8", d["BLOCK_N"], d["num_warps"], d["num_stages"]), _merge_spec(64),
            _prefill_spec(p["BLOCK_M"], p["BLOCK_N"], p["num_warps"], p["num_stages"]), _norm_rope_spec("bf16")]
