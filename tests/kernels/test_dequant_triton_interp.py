"""The Triton dequantizing matmul under TRITON_INTERPRET=1 on CPU tensors at small shapes.

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
from qlab.testing import assert_close  # noqa: E402

if not isinstance(triton_gemv.dequant_matmul_kernel, InterpretedFunction):  # imported before the env was set
    importlib.reload(triton_gemv)

CASES = [  # (M, config): GEMV, split-K with a split shorter than the rest, small batch, tl.dot
    (1, {}),
    (3, {"BLOCK_M": 4, "BLOCK_K": 128, "SPLIT_K": 3}),
    (16, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 64}),
    (100, {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 64, "SPLIT_K": 2}),
]


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_0", "Q4_K", "INT4-G128"])
@pytest.mark.parametrize("M,config", CASES, ids=[f"M{m}" for m, _ in CASES])
def test_triton_matches_naive(fmt, M, config):
    # K = 384 is not a multiple of BLOCK_K = 256 (Q8_0/Q4_0/INT4-G128); Q4_K needs whole super-blocks: 512
    K = 512 if fmt == "Q4_K" else 384
    g = torch.Generator().manual_seed(42)
    qw = quantize(torch.randn(20, K, generator=g), fmt)  # N = 20: a partial BLOCK_N tile
    x = torch.randn(M, K, generator=g)
    assert_close(f"triton {fmt} M={M}", matmul(x, qw), matmul(x, qw, impl="triton", config=config), 1e-3)


def test_triton_rejects_bad_block_k():
    qw = quantize(torch.randn(4, 256), "Q8_0")
    with pytest.raises(ValueError, match="BLOCK_K=48"):
        matmul(torch.randn(1, 256), qw, impl="triton", config={"BLOCK_K": 48})


