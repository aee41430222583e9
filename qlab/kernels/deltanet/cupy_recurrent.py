"""The decode step as CUDA C through CuPy: `cupy_recurrent.cu` compiled by NVRTC (cupy.RawModule), one
template instance per (io dtype, K, BV, KSPLIT), launched on torch's current stream with zero-copy DLPack
views of the torch tensors. Needs an NVIDIA GPU and cupy-cuda12x; `available()` says why not."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from qlab.kernels.deltanet.tunables import DEFAULTS

SOURCE = Path(__file__).with_name("cupy_recurrent.cu")
_FLAGS = {"initial_state": 1, "final_state": 2, "l2norm": 4, "gate": 8, "dt_bias": 16}


def available() -> tuple[bool, str]:
    """(True, "") when CuPy imports and sees a CUDA device, else (False, why)."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        return False, f"cupy does not import ({type(e).__name__}: {e})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return False, f"cupy sees no CUDA device ({type(e).__name__})"
    return (n > 0, "" if n > 0 else "cupy sees no CUDA device")


def kernel_name(io_dtype: torch.dtype, K: int, BV: int, KSPLIT: int) -> str:
    io = {torch.float32: "float", torch.bfloat16: "bf16_t"}[io_dtype]
    return f"gdn_recurrent<{io}, {K}, {BV}, {KSPLIT}>"


@functools.lru_cache(maxsize=None)
def _kernel(name: str):
    import cupy

    module = cupy.RawModule(code=SOURCE.read_text(), options=("--std=c++14",), name_expressions=[name])
    return module.get_function(name)


def cupy_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                                    use_qk_l2norm=False, A_log=None, dt_bias=None, state_out=None, config=None):
    """Same contract as triton_recurrent_gated_delta_rule; q, k, v fp32 or bf16, CUDA, contiguous.
    `config`: {"BV", "KSPLIT"} (tunables.py)."""
    import cupy

    cfg = {**DEFAULTS["cupy_recurrent"], **(config or {})}
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    BV, KS = int(cfg["BV"]), int(cfg["KSPLIT"])
    if K % KS:
        raise ValueError(f"cupy_recurrent: K={K} must be a multiple of KSPLIT={KS}")
    scale = K ** -0.5 if scale is None else scale
    g, beta = g.float().contiguous(), beta.float().contiguous()
    o = torch.empty_like(v)
    ht = None
    if output_final_state:
        ht = state_out if state_out is not None else torch.empty(B, HV, K, V, dtype=torch.float32, device=q.device)
    used = {"initial_state": initial_state is not None, "final_state": ht is not None, "l2norm": use_qk_l2norm,
            "gate": A_log is not None, "dt_bias": dt_bias is not None}
    flags = sum(bit for name, bit in _FLAGS.items() if used[name])
    A_log = A_log.float().contiguous() if A_log is not None else g
    dt_bias = dt_bias.float().contiguous() if dt_bias is not None else g

    def dl(t):  # zero-copy view; cupy has no bfloat16 dtype, and the kernel reads bf16 as raw 16-bit words
        return cupy.from_dlpack(t.view(torch.int16) if t.dtype == torch.bfloat16 else t)

    args = (dl(q), dl(k), dl(v), dl(g), dl(beta), dl(A_log), dl(dt_bias), dl(o),
            dl(initial_state if initial_state is not None else g), dl(ht if ht is not None else o),
            cupy.float32(scale), cupy.int32(T), cupy.int32(H), cupy.int32(HV), cupy.int32(V), cupy.int32(flags))
    kernel = _kernel(kernel_name(v.dtype, K, BV, KS))
    with cupy.cuda.ExternalStream(torch.cuda.current_stream(q.device).cuda_stream):
        kernel(((V + BV - 1) // BV, B * HV), (BV, KS), args)
    return o, ht
