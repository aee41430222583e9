"""Helpers shared by the kernel tests: one way to compare a kernel with its reference."""

from __future__ import annotations


def rel_rms_error(ref, out) -> float:
    """||out - ref||_2 / ||ref||_2 over all elements, in fp64 (NaN if `out` has a NaN)."""
    ref = ref.double()
    out = out.double()
    denom = ref.pow(2).mean().sqrt().item()
    return (out - ref).pow(2).mean().sqrt().item() / max(denom, 1e-30)


def assert_close(name: str, ref, out, rms_tol: float) -> None:
    """Fail unless `out` matches `ref` in shape, has no NaN, and is within `rms_tol` relative RMS error."""
    assert tuple(out.shape) == tuple(ref.shape), f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    assert not out.isnan().any(), f"{name}: output has NaN (unwritten elements?)"
    err = rel_rms_error(ref, out)
    max_abs = (out.double() - ref.double()).abs().max().item()
    assert err <= rms_tol, f"{name}: rel RMS {err:.3e} > {rms_tol:.1e} (max abs {max_abs:.3e})"


def run_file_in_interpreter(path: str, timeout: int = 900) -> None:
    """Rerun the test file `path` in a fresh process with TRITON_INTERPRET=1 and fail with its output if
    it fails. Triton chooses the interpreter when it is first imported, so the Triton-on-CPU tests cannot
    run in a process where the AOT tests imported it for real: each such file has one test that calls this,
    and its other tests skip unless TRITON_INTERPRET=1 is already set."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", path],
                         env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def fix_interpreter_bf16_dot() -> None:
    """Make tl.dot on bf16 operands correct under TRITON_INTERPRET=1 (idempotent).

    The interpreter stores bf16 tensors as their uint16 bit patterns and its create_dot multiplies those
    integers (Triton 3.x); a GPU multiplies the bf16 values. Widening bf16 operands to the fp32 values they
    hold before the product (exact: every bf16 is an fp32) lets the interpreter run a kernel's real bf16 dot
    path. Call it in the interpreted process before the kernels run."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    if getattr(builder.create_dot, "_qlab_bf16", False):
        return
    real = builder.create_dot

    def widen(h):
        if h.dtype.scalar != tl.bfloat16:
            return h
        bits = (h.data.astype(np.uint32) << 16).view(np.float32)
        return interpreter.TensorHandle(bits, tl.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        return real(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    create_dot._qlab_bf16 = True
    builder.create_dot = create_dot
