"""Gated DeltaNet decode step in CUDA C (cupy_recurrent.cu): compiles with nvcc for sm_80/86/89/90 with no
register spills (no GPU needed); runs against naive where cupy sees a GPU."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

from qlab.kernels.deltanet import available_impls, gated_delta_rule
from qlab.kernels.deltanet.cupy_recurrent import SOURCE
from qlab.kernels.deltanet.inputs import make_inputs
from qlab.testing import assert_close

NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed (CUDA toolkit missing)")
@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
def test_cuda_source_compiles_without_spills(arch, tmp_path):
    run = subprocess.run([NVCC, "-cubin", f"-arch={arch}", "-std=c++14", "-DQLAB_INSTANTIATE", "-Xptxas", "-v",
                          "-o", str(tmp_path / "gdn.cubin"), str(SOURCE)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = run.stdout + run.stderr
    kernels = re.findall(r"Compiling entry function '(\w+)'", report)
    assert len(kernels) == 12, report[-2000:]                     # every instantiated (dtype, BV, KSPLIT)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report)]
    assert spills and not any(spills), report[-2000:]
    assert (tmp_path / "gdn.cubin").stat().st_size > 0


@pytest.mark.skipif("cupy_recurrent" not in available_impls(), reason="cupy sees no CUDA GPU here")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("config", [{"BV": 32, "KSPLIT": 8}, {"BV": 16, "KSPLIT": 4}], ids=["bv32", "bv16"])
def test_cupy_matches_naive_on_gpu(dtype, config):
    x = make_inputs(2, 37, 2, 6, 64, 64, dtype=dtype)
    o_ref, h_ref = gated_delta_rule(**x, use_qk_l2norm=True, impl="naive")
    gpu = {n: (t.cuda() if t is not None else None) for n, t in x.items()}
    o, h = gated_delta_rule(**gpu, use_qk_l2norm=True, impl="cupy_recurrent", config=config)
    tol = 2e-3 if dtype == torch.float32 else 1e-2
    assert_close("o", o_ref.float(), o.float().cpu(), tol)
    assert_close("state", h_ref, h.cpu(), tol)
