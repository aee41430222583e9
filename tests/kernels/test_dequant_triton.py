"""The Triton kernels' AOT compile for real GPUs (no spills), the interpreter suite (in a subprocess with
TRITON_INTERPRET=1), and the CuPy CUDA C compiled with nvcc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qlab.kernels.dequant_matmul import matmul, quantize

ROOT = Path(__file__).parents[2]
pytest.importorskip("triton")


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return env | extra


def test_interpreter_suite():
    """test_dequant_triton_interp.py: every Triton config vs naive, under the interpreter, in its own process."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "kernels" / "test_dequant_triton_interp.py")],
                         capture_output=True, text=True, cwd=ROOT, env=_clean_env(TRITON_INTERPRET="1"))
    assert out.returncode == 0 and " passed" in out.stdout and "skipped" not in out.stdout.splitlines()[-1], \
        out.stdout[-3000:] + out.stderr[-2000:]


_COMPILE = """
import json, sys
from qlab.kernels.aot import compile_spec
from qlab.kernels.dequant_matmul.aot_specs import aot_specs
names, ccs = sys.argv[1].split(","), [int(c) for c in sys.argv[2].split(",")]
rows = [compile_spec(s, cc, "dequant_matmul").to_dict() for s in aot_specs() if s["name"] in names or names == ["all"]
        for cc in ccs]
print(json.dumps(rows))
"""


def _compile(names: str, ccs: str) -> list[dict]:
    """AOT-compile specs in a process without TRITON_INTERPRET (an interpreted kernel cannot be compiled)."""
    try:
        import qlab.kernels.aot  # noqa: F401
    except ImportError:
        pytest.skip("qlab.kernels.aot not available")
    out = subprocess.run([sys.executable, "-c", _COMPILE, names, ccs], capture_output=True, text=True, cwd=ROOT,
                         env=_clean_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_gemv_spec_compiles_without_spills():
    rows = _compile("dequant_matmul_q4_k_m1_n16_k256_s1", "86")
    assert len(rows) == 1
    r = rows[0]
    assert r["error"] == "" and r["spills"] == 0 and 0 < r["regs"] <= 255, r


@pytest.mark.slow
@pytest.mark.parametrize("cc", [80, 90])
def test_all_specs_compile_without_spills(cc):
    rows = _compile("all", str(cc))
    assert len(rows) >= 50   # 10 formats x (4 fp32 configs + the bf16 tl.dot one)
    bad = [(r["name"], r["error"] or f"{r['spills']} B spilled") for r in rows if r["error"] or r["spills"]]
    assert not bad, bad


@pytest.mark.parametrize("arch", [80, 86, 89, 90, 120])
def test_cuda_gemv_compiles_with_nvcc_without_spills(arch):
    """gemv.cu through the compile report's nvcc path: one row per CuPy kernel, every format cupy_gemv reads."""
    from qlab.kernels.aot import compile_cuda, nvcc_path
    from qlab.kernels.dequant_matmul.aot_specs import cupy_specs
    from qlab.kernels.dequant_matmul.cupy_gemv import KERNELS

    if nvcc_path() is None:
        pytest.skip("nvcc not installed (needs the CUDA toolkit)")
    rows = [r for src in cupy_specs() for r in compile_cuda(src, arch, "dequant_matmul")]
    assert {r.name for r in rows} == {f"cupy_{k}" for k in KERNELS.values()}, rows
    assert {"Q8_0", "Q6_K", "Q5_K", "Q4_K"} <= set(KERNELS)
    assert all(r.error == "" and r.spills == 0 and 0 < r.regs <= 255 for r in rows), rows


def test_cupy_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    qw = quantize(torch.randn(4, 256), "Q8_0")
    with pytest.raises(RuntimeError, match="needs (CuPy|an NVIDIA GPU)"):
        matmul(torch.randn(1, 256), qw, impl="cupy")
