"""Ahead-of-time compilation of the Triton kernels for real GPUs, with no GPU attached.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))` runs the whole Triton pipeline down to
PTX and a cubin; `ptxas -v` on that PTX (the very ptxas Triton uses for the architecture) then reports
registers, spill stores/loads and static shared memory, and Triton's metadata the dynamic shared memory.
Each kernel package lists the configurations the tuner may pick in `aot_specs.py`.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass

ARCHS = (80, 86, 89, 90, 120)
OPS = ("deltanet", "attention", "dequant_matmul")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silence Triton 3.9's warning; keep its default


@dataclass(frozen=True)
class CompileResult:
    op: str
    name: str
    cc: int
    num_warps: int
    num_stages: int
    regs: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    shared_bytes: int   # Triton's dynamic shared memory + ptxas's static shared memory
    error: str = ""

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads

    def to_dict(self) -> dict:
        return asdict(self) | {"spills": self.spills}


_PTXAS_RE = {
    "regs": re.compile(r"Used (\d+) registers"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "smem": re.compile(r"(\d+) bytes smem"),
}


def parse_ptxas_verbose(text: str) -> dict[str, int]:
    """Sum of each figure over the functions `ptxas -v` reports (one kernel per PTX here)."""
    return {key: sum(int(m) for m in rx.findall(text)) for key, rx in _PTXAS_RE.items()}


def _ptxas_report(ptx: str, cc: int) -> dict[str, int]:
    from triton.backends.nvidia.compiler import get_ptxas

    target = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)  # sm_90a, sm_120a, sm_86 ...
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        out = subprocess.run([get_ptxas(cc).path, "-v", f"--gpu-name={target}", path, "-o", os.devnull],
                             capture_output=True, text=True, check=True)
    return parse_ptxas_verbose(out.stdout + out.stderr)


def compile_spec(spec: dict, cc: int, op: str = "") -> CompileResult:
    """Compile one spec (see qlab/kernels/README.md) for compute capability `cc` (80, 86, 89, 90, 120)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    warps, stages = spec.get("num_warps", 4), spec.get("num_stages", 2)
    base = dict(op=op, name=spec["name"], cc=cc, num_warps=warps, num_stages=stages)
    try:
        src = ASTSource(fn=spec["fn"], signature=spec["signature"], constexprs=spec.get("constexprs", {}))
        kernel = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                                options={"num_warps": warps, "num_stages": stages})
        rep = _ptxas_report(kernel.asm["ptx"], cc)
    except Exception as e:  # a config that does not compile is a result too (recorded, not fatal)
        msg = str(e).strip().splitlines()
        return CompileResult(**base, regs=0, spill_stores=0, spill_loads=0, stack_bytes=0, shared_bytes=0,
                             error=(msg[-1] if msg else type(e).__name__)[:300])
    return CompileResult(**base, regs=rep["regs"], spill_stores=rep["spill_stores"], spill_loads=rep["spill_loads"],
                         stack_bytes=rep["stack"], shared_bytes=int(kernel.metadata.shared) + rep["smem"])


def op_specs(op: str) -> list[dict]:
    """The AOT specs an op package declares (empty when the package has none yet)."""
    try:
        module = importlib.import_module(f"qlab.kernels.{op}.aot_specs")
    except ModuleNotFoundError:
        return []
    return list(module.aot_specs())


def _compile_indexed(op: str, index: int, cc: int) -> CompileResult:
    """Worker entry: specs hold jit functions, which do not pickle, so a worker looks its spec up by index."""
    return compile_spec(op_specs(op)[index], cc, op)


def compile_report(ops: tuple[str, ...] = OPS, archs: tuple[int, ...] = ARCHS,
                   workers: int | None = None) -> list[CompileResult]:
    """Every (op, spec, arch), compiled in parallel processes (Triton's front end is Python: one core each)."""
    jobs = [(op, i, cc) for op in ops for i in range(len(op_specs(op))) for cc in archs]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [_compile_indexed(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_compile_indexed, *zip(*jobs), chunksize=4))
