"""cupy_decode.cu: compiles with nvcc for sm_80/86/89/90 at the shapes the tests and Qwen3.6 use, with no
register spills; on a machine with a CUDA GPU and CuPy it also has to match naive."""

import os
import re
import shutil
import subprocess

import pytest
import torch

from qlab.kernels import attention as A
from qlab.kernels.attention.cupy_decode import SOURCE

NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (CUDA toolkit not installed)")
@pytest.mark.parametrize("arch,head_dim,group,warps", [
    (80, 256, 6, 4), (86, 256, 6, 4), (89, 256, 6, 4), (90, 256, 6, 4),            # Qwen3.6, default warps
    pytest.param(80, 256, 8, 8, marks=pytest.mark.slow), pytest.param(90, 256, 8, 8, marks=pytest.mark.slow),
    pytest.param(80, 128, 1, 2, marks=pytest.mark.slow), pytest.param(90, 128, 1, 2, marks=pytest.mark.slow),
])
def test_cupy_decode_cu_compiles_without_spills(tmp_path, arch, head_dim, group, warps):
    out = subprocess.run([NVCC, "-cubin", f"-arch=sm_{arch}", "-O3", "-std=c++17", "-Xptxas", "-v",
                          f"-DHEAD_DIM={head_dim}", f"-DGROUP={group}", f"-DWARPS={warps}", SOURCE,
                          "-o", str(tmp_path / "k.cubin")], capture_output=True, text=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-2000:]
    kernels = re.findall(r"Compiling entry function '(\w+)'", log)
    assert {"decode_split_bf16", "decode_split_f16", "decode_split_fp8", "decode_merge"} <= set(kernels), log
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", log)]
    assert spills and not any(spills), log


def _gpu_cupy():
    if not torch.cuda.is_available():
        return False
    try:
        import cupy  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _gpu_cupy(), reason="needs a CUDA GPU and CuPy")
@pytest.mark.parametrize("HQ,HKV", [(4, 4), (24, 4), (16, 2)])
@pytest.mark.parametrize("kv", ["bf16", "fp8"])
def test_cupy_decode_matches_naive_on_gpu(HQ, HKV, kv):
    from test_attention import FP8_TOL, TOL, make_decode, quantize_fp8

    from qlab.testing import assert_close

    lengths = torch.tensor([1, 17, 1000, 4099])
    q, k, v = make_decode(4, HQ, HKV, 256, 4099, torch.bfloat16)
    kw, tol = {}, TOL[torch.bfloat16]
    if kv == "fp8":
        k, ks = quantize_fp8(k)
        v, vs = quantize_fp8(v)
        kw, tol = {"k_scale": ks, "v_scale": vs}, FP8_TOL
    ref = A.decode(q, k, v, lengths, **kw)
    cuda = {n: t.cuda() for n, t in kw.items()}
    out = A.decode(q.cuda(), k.cuda(), v.cuda(), lengths.cuda(), impl="cupy_decode", **cuda)
    assert_close("cupy_decode", ref.float(), out.float().cpu(), tol)
