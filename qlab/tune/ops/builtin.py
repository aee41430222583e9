"""`blocked_matmul`: the tuner's own self-test op, always present (no kernel package needed).

y[M, N] = x[M, K] · W[N, K]ᵀ computed one block of `block_n` output columns at a time. Small blocks pay a
Python-level call per block, large ones lose nothing on this CPU, and the thread count matters: a real,
measurable surface with a known reference (one torch matmul in fp64). Its default (16 columns, torch's thread
count) is deliberately poor, so that a test can check the tuner's reported speedup against a re-measurement.
"""

from __future__ import annotations

from qlab.kernels.cost import OpCost
from qlab.tune.ops.base import TunableOp

SPACES = {"torch_blocked": {"block_n": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]}}
DEFAULTS = {"torch_blocked": {"block_n": 16}}


def valid(impl: str, config: dict, shape: dict) -> bool:
    return config.get("block_n", 1) <= 2 * shape.get("N", 1 << 30)


class BlockedMatmulOp(TunableOp):
    op = "blocked_matmul"
    dims = {"M": 8, "N": 4096, "K": 1024}
    seq_dims = ("M",)
    presets = {"qwen3.6-27b": [{"M": 1, "N": 5120, "K": 1024}]}
    tile_dims = {"block_n": "N"}
    entry = ""
    package = "qlab.tune.ops"
    rms_tol = {"fp32": 1e-5, "bf16": 1e-2, "fp16": 1e-2}

    def cost(self, shape, config=None) -> OpCost:
        M, N, K = shape["M"], shape["N"], shape["K"]
        return OpCost(4 * (M * K + N * K + M * N), 2 * M * N * K)

    def make_inputs(self, shape, device="cpu"):
        import torch

        from qlab.tune.ops.base import torch_dtype

        gen = torch.Generator(device="cpu").manual_seed(42)
        dt = torch_dtype(shape.get("dtype", "fp32"))
        x = torch.randn(shape["M"], shape["K"], generator=gen).to(device=device, dtype=dt)
        w = torch.randn(shape["N"], shape["K"], generator=gen).to(device=device, dtype=dt)
        out = torch.empty(shape["M"], shape["N"], device=device, dtype=dt)
        return x, w, out

    def run(self, inputs, config):
        import torch

        x, w, out = inputs
        bn = config["block_n"]
        for n0 in range(0, w.shape[0], bn):
            torch.matmul(x, w[n0:n0 + bn].T, out=out[:, n0:n0 + bn])
        return out

    def reference(self, inputs):
        x, w, _ = inputs
        return (x.double() @ w.double().T).to(x.dtype)
