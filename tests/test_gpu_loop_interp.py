"""The whole GPU decode loop under TRITON_INTERPRET=1: the engine with the CUDA backend's kernel choices
(ops.default_backend("cuda"): Triton GEMV, DeltaNet, attention; a bf16 KV cache) on a width-scaled 4-layer slice,
prefill then decode, against the CPU path's logits at the llama.cpp cross-check's tolerances.

Every tensor the engine puts on "cuda" lands on the CPU only at the lowest level: a torch function mode rewrites
the device of factory calls and `.to`/`.cuda` (counting each), and torch.cuda.synchronize/is_available answer as
on a GPU machine. So the engine's own device branches run unchanged — the model's small tensors uploaded, the KV
cache and states allocated on the device, token ids copied to the host for the embedding gather, the per-op
timer's device synchronisation, the device queries of the tune-cache lookup (torch.cuda.get_device_properties
answers with a made-up sm_86, events time on the host clock) — and the test asserts each of them ran.
The engine uses no CUDA streams; a stream it starts to use must be added to the shim, or this test fails loudly.

Triton decides at decoration time whether a kernel is interpreted, so the checks run in a fresh process with
TRITON_INTERPRET=1 (test_gpu_loop_under_interpreter); in a process without it they skip.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager

import pytest

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="the launcher; the checks below run in its subprocess")
def test_gpu_loop_under_interpreter():
    pytest.importorskip("triton")
    from qlab.testing import run_file_in_interpreter

    run_file_in_interpreter(__file__, timeout=600)


def _is_cuda(dev) -> bool:
    import torch

    return (isinstance(dev, str) and dev.startswith("cuda")) or (isinstance(dev, torch.device) and dev.type == "cuda")


@contextmanager
def cuda_on_cpu():
    """Run code written for a CUDA device on CPU tensors; yields a Counter of what was mapped."""
    import torch
    from torch.overrides import TorchFunctionMode

    seen = Counter()

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            name = getattr(func, "__name__", str(func))
            if func is torch.Tensor.cuda:
                seen["Tensor.cuda"] += 1
                return args[0]
            if func is torch.Tensor.cpu:
                seen["Tensor.cpu"] += 1
            if _is_cuda(kwargs.get("device")):
                seen[f"{name}(device=cuda)"] += 1
                kwargs["device"] = "cpu"
            if func is torch.Tensor.to and any(_is_cuda(a) for a in args[1:]):
                seen["Tensor.to(cuda)"] += 1
                args = tuple("cpu" if _is_cuda(a) else a for a in args)
            return func(*args, **kwargs)

    patched = {
        "synchronize": lambda device=None: seen.update(["cuda.synchronize"]),
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: 0,
        "get_device_properties": lambda device=None: _FakeProps(),
        "get_device_name": lambda device=None: _FakeProps.name,
        "get_device_capability": lambda device=None: (_FakeProps.major, _FakeProps.minor),
        "Event": lambda **kw: _FakeEvent(seen),
    }
    real = {name: getattr(torch.cuda, name) for name in patched}
    for name, fn in patched.items():
        setattr(torch.cuda, name, fn)
    try:
        with Mode():
            yield seen
    finally:
        for name, fn in real.items():
            setattr(torch.cuda, name, fn)


class _FakeProps:
    """What torch.cuda.get_device_properties reports, for a GPU that is the CPU under the interpreter."""
    name = "interpreted GPU (CPU tensors, TRITON_INTERPRET=1)"
    major, minor = 8, 6
    multi_processor_count = 4
    total_memory = 8 << 30
    L2_cache_size = 4 << 20


class _FakeEvent:
    """torch.cuda.Event(enable_timing=True) on the host clock."""

    def __init__(self, seen):
        self.t, self.seen = None, seen

    def record(self, stream=None):
        import time

        self.seen["cuda.Event.record"] += 1
        self.t = time.perf_counter()

    def synchronize(self):
        self.seen["cuda.Event.synchronize"] += 1

    def elapsed_time(self, end) -> float:
        return (end.t - self.t) * 1e3


# hidden 256, FFN 512, 6 query / 1 KV heads, 2 key / 6 value DeltaNet heads (head dims as the full model): the
# interpreter costs ~0.05-0.2 s per Triton program, so the slice is as narrow as width_scaled allows
CFG_ARGS = dict(width=32, vocab=512, layers=4)
PROMPT = [5, 17, 300, 2]
DECODE = 2
# The interpreter's cost is per program, so the GEMV runs with wider tiles here (BLOCK_N 16 -> 128: 5x faster
# measured); every tile config is checked on its own in tests/kernels/test_dequant_triton_interp.py.
INTERPRETER_GEMV = {"BLOCK_N": 128}
# the llama.cpp cross-check's tolerances (tests/test_llamacpp_crosscheck.py)
TOL = {"Q8_0": 1e-2, "Q4_K_M": 2e-2}


if INTERPRETED:
    import torch

    from qlab.engine.config import QWEN36_27B
    from qlab.engine.model import Qwen35, decode_one_token, prefill
    from qlab.engine.ops import OpTimer, default_backend
    from qlab.engine.weights import synthetic_weights
    from qlab.testing import fix_interpreter_bf16_dot, rel_rms_error

    from qlab.kernels.dequant_matmul import tunables

    fix_interpreter_bf16_dot()
    tunables.DEFAULTS["triton"] = tunables.DEFAULTS["triton"] | INTERPRETER_GEMV


def _logits(model, timed_steps: int = 0) -> torch.Tensor:
    """Prefill PROMPT (every position's logits), then DECODE greedy steps; the last timed_steps with the per-op
    timer on (it synchronises the device around each op)."""
    st = model.new_state(32)
    toks = torch.tensor([PROMPT], device=model.device)
    outs = [prefill(model, toks, st, all_logits=True)[0]]
    token = outs[0][-1].argmax(-1).reshape(1)
    for step in range(DECODE):
        if step == DECODE - timed_steps:
            model.set_timer(OpTimer(model.backend.device))
        logits = decode_one_token(model, token, st)
        outs.append(logits)
        token = logits.argmax(-1)
    assert st.pos == len(PROMPT) + DECODE
    return torch.cat(outs).float().cpu()


@pytest.mark.skipif(not INTERPRETED, reason="run by test_gpu_loop_under_interpreter with TRITON_INTERPRET=1")
@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_cuda_backend_loop_matches_cpu_path(quant):
    cfg = QWEN36_27B.width_scaled(CFG_ARGS["width"], vocab=CFG_ARGS["vocab"]).sliced(CFG_ARGS["layers"])
    w = synthetic_weights(cfg, quant, seed=42)
    want = _logits(Qwen35(w, default_backend("cpu")))
    backend = default_backend("cuda")
    with cuda_on_cpu() as seen:
        model = Qwen35(w, backend)
        got = _logits(model, timed_steps=1)
    err = rel_rms_error(want, got)
    assert err <= TOL[quant], f"{quant}: CUDA-backend logits vs the CPU path: rel RMS {err:.4f} > {TOL[quant]}"
    assert (want.argmax(-1) == got.argmax(-1)).float().mean() >= 0.9
    assert model.ops.fallbacks == {}, f"{quant}: matmuls fell back to the host: {model.ops.fallbacks}"
    # the device-specific branches ran (each count is a call the engine made for "cuda")
    assert seen["Tensor.to(cuda)"] > 0, seen           # small weights uploaded, token ids to the device
    assert seen["zeros(device=cuda)"] >= 2 + 2 * 3, seen  # KV caches (1 attention layer), conv/recurrent states (3)
    assert seen["Tensor.cpu"] >= 1 + DECODE, seen       # token ids to the host for the embedding gather
    assert seen["cuda.synchronize"] > 0, seen           # the per-op timer's device sync
