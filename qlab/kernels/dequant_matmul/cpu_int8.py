"""`cpu_int8`: the CPU path with llama.cpp's numerics — int8 activations, integer dot products.

For Q8_0, Q4_K, Q5_K and Q6_K, at every M (decode and prefill alike, as llama.cpp's CPU backend quantizes
the activations of every matmul against these weights), the activations are quantized per block to int8
(`quantize_activations` is the torch reference of exactly what `cpu_int8_kernels.c` does: Q8_K-like blocks of
256 for the K-quants, Q8_0-like blocks of 32 for Q8_0), and the C kernels take integer dot products against
the stored blocks. F16 and BF16 weights take activations rounded to their own type (as llama.cpp's
vec_dot_f16 / vec_dot_bf16 do), then `torch_cpu`'s fp32 matmul of those values. Q4_K and Q6_K weights with
N % 8 == 0 are read from a row-interleaved copy made on first use (`cpu_x8.py`), at any M up to x8_max_m
(in passes of 4 activation rows); other shapes read the ggml blocks in place, each task's weight rows reused
from cache over all M. Every other format (and K not a multiple
of the activation block) goes to `torch_cpu`, unchanged; gemv_max_m is handed on to it.

Accuracy: `reference(x, qw)` (fp32 matmul of the dequantized weight with the dequantized int8 activations)
is what the kernels compute, up to summation order; against the fp32 `naive` result the activation rounding
adds a relative error of about 0.5%, as in llama.cpp. Prefill through fp32 activations instead would leave
0.42 % (Q8_0) / 0.55 % (Q4_K_M) rel. RMS between qlab's and llama.cpp's logits in the cross-check
(tests/test_llamacpp_crosscheck.py), against 0.30 % / 0.44 % this way.
"""

from __future__ import annotations

from .tunables import resolve
from .weight import QuantizedWeight

# format -> (C entry point, activation block size)
INT8_FORMATS = {"Q8_0": ("qlab_q8_0_gemm_int8", 32), "Q4_K": ("qlab_q4_k_gemm_int8", 256),
                "Q5_K": ("qlab_q5_k_gemm_int8", 256), "Q6_K": ("qlab_q6_k_gemm_int8", 256)}
# half-precision weights: llama.cpp rounds the activations to the weight's type before the dot (an F16 file's
# logits differ from fp32 activations' by ~2e-4 of their RMS, more than everything else at F16 together)
HALF_FORMATS = {"F16": "float16", "BF16": "bfloat16"}
FORMATS = tuple(INT8_FORMATS) + tuple(HALF_FORMATS)   # what the registry hands this impl


def quantize_activations(x, fmt: str):
    """x [M, K] fp32 -> the fp32 values the kernel's int8 activations stand for (d · q per block); for F16/BF16
    weights, x rounded to that type (round to nearest even).

    K-quants: per 256, d = max / -127 where max is the signed value of largest magnitude, q = round(x / d)
    clamped to <= 127 (llama.cpp's quantize_row_q8_K). Q8_0: per 32, d = amax / 127 rounded through fp16,
    q = round(x · 127 / amax) (llama.cpp's quantize_row_q8_0). Rounding is half to even in both."""
    import torch

    if fmt in HALF_FORMATS:
        return x.detach().to(getattr(torch, HALF_FORMATS[fmt])).to(torch.float32)
    bs = INT8_FORMATS[fmt][1]
    M, K = x.shape
    xb = x.detach().to(torch.float32).reshape(M, K // bs, bs)
    if bs == 256:
        idx = xb.abs().argmax(dim=-1, keepdim=True)
        mx = torch.gather(xb, -1, idx)
        iscale = torch.where(mx == 0, torch.zeros_like(mx), torch.tensor(-127.0) / mx)
        q = torch.round(iscale * xb).clamp(max=127)
        d = torch.where(mx == 0, torch.zeros_like(mx), 1.0 / iscale)
    else:
        amax = xb.abs().amax(dim=-1, keepdim=True)
        iscale = torch.where(amax == 0, torch.zeros_like(amax), torch.tensor(127.0) / amax)
        q = torch.round(xb * iscale)
        d = (amax / 127.0).to(torch.float16).to(torch.float32)
    return (q * d).reshape(M, K)


def reference(x, qw: QuantizedWeight):
    """What cpu_int8 computes, in plain torch: quantized activations times the dequantized weight (float64)."""
    import torch

    from .weight import dequantize

    xq = quantize_activations(x, qw.fmt).to(torch.float64)
    return (xq @ torch.as_tensor(dequantize(qw)).to(torch.float64).t()).to(torch.float32)


def runs_int8(qw: QuantizedWeight, M: int, K: int, config: dict | None = None) -> bool:
    """Whether matmul(x [M, K], qw) takes the integer path (else it is torch_cpu's): at every M for the formats
    with an integer kernel, as llama.cpp rounds the activations of every matmul against them."""
    entry = INT8_FORMATS.get(qw.fmt)
    return entry is not None and M >= 1 and K % entry[1] == 0


def runs_x8(qw: QuantizedWeight, M: int, config: dict | None = None) -> bool:
    """Whether the integer path reads qw's row-interleaved copy (cpu_x8.py): Q4_K / Q6_K with N % 8 == 0, up
    to x8_max_m activation rows (0 turns it off)."""
    from . import cpu_x8

    return cpu_x8.packable(qw) and M <= resolve("cpu_int8", config)["x8_max_m"]


def matmul(x, qw: QuantizedWeight, config: dict | None = None):
    """y [M, N] fp32 ≈ x [M, K] · dequantize(qw)ᵀ, activations rounded to int8 per block (see module doc)."""
    import torch

    from . import torch_cpu

    cfg = resolve("cpu_int8", config)
    M, K = x.shape
    lib = torch_cpu._lib() if runs_int8(qw, M, K, config) else None
    if lib is None:
        if qw.fmt in HALF_FORMATS:
            x = quantize_activations(x, qw.fmt)
        return torch_cpu.matmul(x, qw, {k: v for k, v in cfg.items() if k != "x8_max_m"})
    x = x.detach().to(torch.float32).contiguous()
    y = torch.empty((M, qw.shape[0]), dtype=torch.float32)
    threads = 1 if qw.raw.nbytes * M < cfg["single_thread_bytes"] else torch.get_num_threads()
    if runs_x8(qw, M, config):
        from . import cpu_x8

        return cpu_x8.matmul(x, qw, lib, threads, out=y)
    raw = torch_cpu.prepare(qw)["raw"]
    getattr(lib, INT8_FORMATS[qw.fmt][0])(x.data_ptr(), M, K, raw.data_ptr(), qw.shape[0], y.data_ptr(), threads)
    return y


def matmul_many(x, qws: list[QuantizedWeight], config: dict | None = None) -> list:
    """[matmul(x, qw) for qw in qws], as one C call when every weight reads from its x8 copy at this M (the
    decode step's projections that share an input; cpu_x8.matmul_many), else one matmul each."""
    import torch

    from . import cpu_x8, torch_cpu

    M, K = x.shape
    lib = torch_cpu._lib()
    if lib is None or not 0 < len(qws) <= cpu_x8.MAX_MULTI or \
            not all(qw.shape[1] == K and runs_x8(qw, M, config) for qw in qws):   # runs_x8 implies runs_int8
        return [matmul(x, qw, config) for qw in qws]
    x = x.detach().to(torch.float32).contiguous()
    nbytes = sum(qw.raw.nbytes for qw in qws) * M
    threads = 1 if nbytes < resolve("cpu_int8", config)["single_thread_bytes"] else torch.get_num_threads()
    return cpu_x8.matmul_many(x, qws, lib, threads)
