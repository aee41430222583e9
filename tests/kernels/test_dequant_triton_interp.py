"""The Triton dequantizing matmul under TRITON_INTERPRET=1 on CPU tensors at small shapes, every format the
kernel reads, on the fp32 path and the bf16 one (bf16 activations: the tl.dot on bf16 tiles a GPU runs).

Triton decides at decoration time whether a kernel is interpreted, so this module runs in its own process:
test_dequant_triton.py starts it with TRITON_INTERPRET=1 (it skips itself in a process without it).
"""

from __future__ import annotations

import importlib
import os

import pytest

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run by test_dequant_triton.py in a subprocess with TRITON_INTERPRET=1", allow_module_level=True)
pytest.importorskip("triton")

import torch  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from qlab.kernels.dequant_matmul import matmul, quantize, triton_gemv  # noqa: E402
from qlab.kernels.dequant_matmul.weight import block_format  # noqa: E402
from qlab.testing import assert_close, fix_interpreter_bf16_dot  # noqa: E402

if not isinstance(triton_gemv.dequant_matmul_kernel, InterpretedFunction):  # imported before the env was set
    importlib.reload(triton_gemv)
fix_interpreter_bf16_dot()  # the interpreter's own bf16 tl.dot multiplies bit patterns (qlab.testing)

FORMATS = list(triton_gemv.FMT_CODE)
CASES = [  # (M, config): GEMV, split-K with a split shorter than the rest, small batch, tl.dot
    (1, {}),
    (3, {"BLOCK_M": 4, "BLOCK_K": 128, "SPLIT_K": 3}),
    (16, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 64}),
    (40, {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 64, "SPLIT_K": 2}),
]


def _weight_and_x(fmt: str, M: int, dtype=torch.float32):
    # K = 384 is not a multiple of BLOCK_K = 256 (32-blocks); the 256-weight super-blocks need 512
    K = 512 if block_format(fmt).block_size == 256 else 384
    g = torch.Generator().manual_seed(42)
    qw = quantize(torch.randn(20, K, generator=g), fmt)  # N = 20: a partial BLOCK_N tile
    return qw, torch.randn(M, K, generator=g).to(dtype)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("M,config", CASES, ids=[f"M{m}" for m, _ in CASES])
def test_triton_matches_naive(fmt, M, config):
    qw, x = _weight_and_x(fmt, M)
    assert_close(f"triton {fmt} M={M}", matmul(x, qw), matmul(x, qw, impl="triton", config=config), 1e-5)


BF16_CASES = [(1, {}), (16, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 64})]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("M,config", BF16_CASES, ids=["gemv", "dot"])
def test_triton_bf16_activations(fmt, M, config):
    """bf16 x: the GEMV widens it to fp32 (exact products); tl.dot also rounds the decoded weights to bf16,
    ~2^-9 relative per product, ~3e-3 relative RMS over K = 384-512 (tolerance 1e-2)."""
    qw, x = _weight_and_x(fmt, M, torch.bfloat16)
    tol = 1e-5 if M == 1 else 1e-2
    assert_close(f"triton bf16 {fmt} M={M}", matmul(x.float(), qw), matmul(x, qw, impl="triton", config=config), tol)


def test_triton_rejects_bad_block_k():
    qw = quantize(torch.randn(4, 256), "Q8_0")
    with pytest.raises(ValueError, match="BLOCK_K=48"):
        matmul(torch.randn(1, 256), qw, impl="triton", config={"BLOCK_K": 48})


def test_triton_rejects_fp8_k_not_multiple_of_32():
    qw = quantize(torch.randn(4, 40), "FP8")
    with pytest.raises(ValueError, match="K=40"):
        matmul(torch.randn(1, 40), qw, impl="triton")
