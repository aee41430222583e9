"""The dequantizing matmul (`qlab.kernels.dequant_matmul.matmul`) as the tuner sees it: y [M, N] = x [M, K] · Wᵀ
with W quantized to `fmt` (Qwen3.6-27B's FFN up/gate projection 5120 -> 17408 by default, Q4_K). M is bucketed."""

from __future__ import annotations

from qlab.kernels.cost import OpCost
from qlab.kernels.dequant_matmul import cost as dq_cost
from qlab.tune.ops.base import TunableOp, torch_dtype


QUANT_ROWS = 256


class _MNKF(dict):
    """The shape for the package's valid(), which unpacks it as (M, N, K, fmt); still a dict for lookups."""

    def __iter__(self):
        return iter((self["M"], self["N"], self["K"], self["fmt"]))


class DequantMatmulOp(TunableOp):
    op = "dequant_matmul"
    dims = {"M": 1, "N": 17408, "K": 5120, "fmt": "Q4_K"}
    seq_dims = ("M",)
    presets = {"qwen3.6-27b": [{"M": 1}, {"M": 8}]}
    tile_dims = {"BLOCK_M": "M", "BLOCK_N": "N", "BLOCK_K": "K"}
    grid_params = ("BLOCK_M", "BLOCK_N")
    parallel_dims = ()
    entry = "qlab.kernels.dequant_matmul:matmul"
    package = "qlab.kernels.dequant_matmul"
    rms_tol = {"fp32": 1e-3, "bf16": 1e-2, "fp16": 1e-2}

    def valid_shape(self, shape):
        return _MNKF(M=shape["M"], N=shape["N"], K=shape["K"], fmt=str(shape["fmt"]).upper())

    def cost(self, shape, config=None) -> OpCost:
        io = 4 if shape.get("dtype", "fp32") == "fp32" else 2
        return dq_cost.matmul(shape["M"], shape["N"], shape["K"], str(shape["fmt"]).upper(), io_bytes=io)

    def make_inputs(self, shape, device="cpu"):
        """Random weights quantized by the package; only QUANT_ROWS distinct rows, repeated down to N, because
        quantizing 17408 x 5120 with a scale search takes ~30 s here and the timing does not depend on the
        values (every byte is still read: the matrix is far larger than any cache)."""
        import numpy as np
        import torch

        from qlab.kernels.dequant_matmul import QuantizedWeight, quantize

        N, K, fmt = shape["N"], shape["K"], str(shape["fmt"]).upper()
        gen = torch.Generator(device="cpu").manual_seed(42)
        rows = min(N, QUANT_ROWS)
        small = quantize(torch.randn(rows, K, generator=gen), fmt)
        reps = -(-N // rows)
        raw = np.ascontiguousarray(np.tile(small.raw, (reps, 1))[:N])
        scale = None if small.scale is None else np.ascontiguousarray(np.tile(small.scale, reps)[:N])
        x = torch.randn(shape["M"], K, generator=gen)
        return {"x": x.to(device=device, dtype=torch_dtype(shape.get("dtype", "fp32"))),
                "qw": QuantizedWeight(fmt, (N, K), raw, scale)}

    def tolerance(self, shape) -> float:
        # an impl with int8 activations (cpu_int8) rounds them as llama.cpp does (~0.5% against fp32): held to
        # that bound here; its exactness against its own reference is tested in test_dequant_cpu_int8.py
        from qlab.kernels import registry

        int8 = "int8_activations" in registry.get(self.op, self.impl).features
        return max(super().tolerance(shape), 1.5e-2) if int8 else super().tolerance(shape)

    def run(self, inputs, config):
        from qlab.kernels.dequant_matmul import matmul

        return matmul(inputs["x"], inputs["qw"], impl=self.impl, config=self.kernel_config(config))

    def reference(self, inputs):
        from qlab.kernels.dequant_matmul import matmul

        from qlab.kernels import registry

        return matmul(inputs["x"], inputs["qw"], impl=registry.reference(self.op).name)
