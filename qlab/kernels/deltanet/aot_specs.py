"""AOT compile specs of the Gated DeltaNet Triton kernels: one per (kernel, configuration the tuner may
pick at Qwen3.6-27B shapes: H=16, HV=48, K=V=128, bf16 activations, fp32 state), for
`qlab.kernels.aot.compile_spec` and `qlab kernels compile-report`."""

from __future__ import annotations

import itertools

from qlab.kernels.deltanet.tunables import QWEN36_SHAPE, SPACES, valid


def _configs(impl: str, params: tuple[str, ...]) -> list[dict]:
    """The valid configs of `impl`, projected on `params` (kernels that ignore a tunable compile once)."""
    space = SPACES[impl]
    seen, out = set(), []
    for values in itertools.product(*space.values()):
        cfg = dict(zip(space, values))
        key = tuple(cfg[p] for p in params)
        if valid(impl, cfg, QWEN36_SHAPE) and key not in seen:
            seen.add(key)
            out.append({p: cfg[p] for p in params})
    return out


def aot_specs() -> list[dict]:
    # imported here, not at module import: the test suite may reload these modules under the interpreter
    from qlab.kernels.deltanet import triton_chunk, triton_recurrent

    s = QWEN36_SHAPE
    dims = {"H": s["H"], "HV": s["HV"], "K": s["K"], "V": s["V"]}
    specs = []
    for c in _configs("triton_recurrent", ("BV", "num_warps")):
        sig = {n: "*bf16" for n in ("q", "k", "v", "g", "beta", "o")}
        sig.update({n: "*fp32" for n in ("A_log", "dt_bias", "h0", "ht")}, scale="fp32", T="i32")
        const = {**dims, "BK": s["K"], "BV": c["BV"], "USE_INITIAL_STATE": True, "STORE_FINAL_STATE": True,
                 "USE_QK_L2NORM": True, "USE_GATE": True, "HAS_DT_BIAS": True}
        specs.append(_spec(f"gdn_recurrent_fwd BV={c['BV']}", triton_recurrent.gdn_recurrent_fwd_kernel, sig, const,
                           c["num_warps"], 1))
    for c in _configs("triton_chunk", ("chunk_size", "num_warps", "num_stages")):
        sig = {"k": "*bf16", "v": "*bf16", "g": "*fp32", "beta": "*fp32", "gcum": "*fp32", "w": "*fp32",
               "u": "*fp32", "T": "i32"}
        const = {**dims, "BT": c["chunk_size"], "BD": 64, "IEEE": False}
        specs.append(_spec(f"gdn_chunk_prep BT={c['chunk_size']}", triton_chunk.gdn_chunk_prep_kernel, sig, const,
                           c["num_warps"], c["num_stages"]))
    for c in _configs("triton_chunk", ("chunk_size", "BV", "num_warps", "num_stages")):
        sig = {"q": "*bf16", "k": "*bf16", "w": "*fp32", "u": "*fp32", "gcum": "*fp32", "o": "*bf16",
               "h0": "*fp32", "ht": "*fp32", "scale": "fp32", "T": "i32"}
        const = {**dims, "BT": c["chunk_size"], "BK": s["K"], "BV": c["BV"], "USE_INITIAL_STATE": True,
                 "STORE_FINAL_STATE": True, "IEEE": False}
        specs.append(_spec(f"gdn_chunk_fwd BT={c['chunk_size']} BV={c['BV']}", triton_chunk.gdn_chunk_fwd_kernel,
                           sig, const, c["num_warps"], c["num_stages"]))
    return specs


def _spec(name, fn, signature, constexprs, num_warps, num_stages) -> dict:
    return {"name": name, "fn": fn, "signature": {**signature, **{k: "constexpr" for k in constexprs}},
            "constexprs": constexprs, "num_warps": num_warps, "num_stages": num_stages}
