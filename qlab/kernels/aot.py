"""Ahead-of-time compilation of the Triton and CuPy kernels for real GPUs, with no GPU attached.

Triton: `triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))` runs the whole Triton pipeline down
to PTX and a cubin; `ptxas -v` on that PTX (the very ptxas Triton uses for the architecture) then reports
registers, spill stores/loads and static shared memory, and Triton's metadata the dynamic shared memory.
CuPy: the CUDA C a package loads through cupy.RawModule is compiled by `nvcc -cubin -arch=sm_XX -Xptxas -v`
(the CUDA toolkit's nvcc; NVRTC, which CuPy uses at run time, shares its ptxas), one row per kernel function.
Each kernel package lists the Triton configurations the tuner may pick in `aot_specs.py` (`aot_specs()`), and
its CUDA C files there too (`cupy_specs()`, optional).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ARCHS = (80, 86, 89, 90, 120)
# compute capabilities both compilers here target (Triton's bundled ptxas and CUDA 13's nvcc, each checked): Turing
# to Blackwell; an unknown one is refused before any compile starts
KNOWN_ARCHS = (75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121)
BACKENDS = ("triton", "cupy")
CUPY_PREFIX = "cupy_"  # CuPy rows are named cupy_<kernel function>
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


def _aot_module(op: str):
    try:
        return importlib.import_module(f"qlab.kernels.{op}.aot_specs")
    except ModuleNotFoundError:
        return None


def op_specs(op: str) -> list[dict]:
    """The AOT specs an op package declares (empty when the package has none yet)."""
    module = _aot_module(op)
    return [] if module is None else list(module.aot_specs())


def op_cuda_sources(op: str) -> list[dict]:
    """The CUDA C files an op package loads through CuPy: [{"path": Path, "options": [...]}] (may be empty)."""
    module = _aot_module(op)
    return list(module.cupy_specs()) if module is not None and hasattr(module, "cupy_specs") else []


def check_archs(archs) -> tuple[int, ...]:
    """archs as ints, or ValueError naming the first one neither compiler here can target."""
    out = []
    for a in archs:
        cc = int(a)
        if cc not in KNOWN_ARCHS:
            raise ValueError(f"compute capability {a}: not a GPU architecture the compilers here target; "
                             f"known: {', '.join(map(str, KNOWN_ARCHS))}")
        out.append(cc)
    return tuple(out)


def nvcc_path() -> str | None:
    """The CUDA toolkit's nvcc (PATH, then CUDA_HOME/bin, then /usr/local/cuda/bin), or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return None


_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)' for 'sm_\d+a?'")


def parse_nvcc_verbose(text: str) -> dict[str, dict[str, int]]:
    """`nvcc -Xptxas -v` output -> {kernel function: {regs, stack, spill_stores, spill_loads, smem}}."""
    parts = _ENTRY_RE.split(text)  # [preamble, name1, body1, name2, body2, ...]
    return {parts[i]: parse_ptxas_verbose(parts[i + 1]) for i in range(1, len(parts) - 1, 2)}


def compile_cuda(source: dict, cc: int, op: str = "", nvcc: str | None = None) -> list[CompileResult]:
    """Compile one CUDA C file for `cc` with nvcc; one CompileResult per kernel function (or one error row)."""
    path = Path(source["path"])
    nvcc = nvcc or nvcc_path()
    base = dict(op=op, cc=cc, num_warps=source.get("num_warps", 0), num_stages=0)
    err = ""
    if nvcc is None:
        err = "nvcc not found (install the CUDA toolkit)"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run([nvcc, "-cubin", f"-arch=sm_{cc}", "-Xptxas", "-v", *source.get("options", ()),
                                  str(path), "-o", os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
        if run.returncode == 0:
            rows = parse_nvcc_verbose(run.stdout + run.stderr)
            return [CompileResult(**base, name=CUPY_PREFIX + fn, regs=r["regs"], spill_stores=r["spill_stores"],
                                  spill_loads=r["spill_loads"], stack_bytes=r["stack"], shared_bytes=r["smem"])
                    for fn, r in sorted(rows.items())]
        lines = (run.stderr or run.stdout).strip().splitlines()
        err = (lines[-1] if lines else f"nvcc exit {run.returncode}")[:300]
    return [CompileResult(**base, name=CUPY_PREFIX + path.stem, regs=0, spill_stores=0, spill_loads=0,
                          stack_bytes=0, shared_bytes=0, error=err)]


def _compile_indexed(op: str, index: int, cc: int) -> CompileResult:
    """Worker entry: specs hold jit functions, which do not pickle, so a worker looks its spec up by index."""
    return compile_spec(op_specs(op)[index], cc, op)


def cupy_report(ops: tuple[str, ...] = OPS, archs: tuple[int, ...] = ARCHS) -> list[CompileResult]:
    """Every (op, CUDA C file, arch) compiled by nvcc: one row per kernel function."""
    nvcc = nvcc_path()
    return [r for op in ops for src in op_cuda_sources(op) for cc in archs for r in compile_cuda(src, cc, op, nvcc)]


def compile_report(ops: tuple[str, ...] = OPS, archs: tuple[int, ...] = ARCHS, workers: int | None = None,
                   backends: tuple[str, ...] | None = None) -> list[CompileResult]:
    """Every (op, spec, arch), Triton's compiled in parallel processes (its front end is Python: one core each),
    then the CuPy kernels with nvcc. `backends` default: Triton, and CuPy where nvcc is installed."""
    archs = check_archs(archs)  # a bad arch fails here, not as a compiler abort inside a worker
    if backends is None:
        backends = BACKENDS if nvcc_path() else ("triton",)
    rows = []
    if "triton" in backends:
        rows += _triton_report(ops, archs, workers)
    if "cupy" in backends:
        rows += cupy_report(ops, archs)
    return rows


def _triton_report(ops, archs, workers) -> list[CompileResult]:
    jobs = [(op, i, cc) for op in ops for i in range(len(op_specs(op))) for cc in archs]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [_compile_indexed(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_compile_indexed, *zip(*jobs), chunksize=4))
