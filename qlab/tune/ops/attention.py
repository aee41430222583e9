"""The attention ops (`qlab.kernels.attention.decode` / `prefill`) as the tuner sees them.
decode: q [B, HQ, D], K/V cache [B, HKV, S, D], every row at length S; prefill: q [B, T, HQ, D], k/v
[B, T, HKV, D], causal. Qwen3.6-27B: HQ=24, HKV=4, D=256. S (decode) and T (prefill) are bucketed."""

from __future__ import annotations

from qlab.kernels.attention import cost as attn_cost
from qlab.kernels.cost import OpCost
from qlab.tune.ops.base import TunableOp, torch_dtype

_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _rand(shape, gen, dtype, device):
    import torch

    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


class _Attention(TunableOp):
    package = "qlab.kernels.attention"

    def valid_shape(self, shape):
        b = _DTYPE_BYTES.get(shape.get("dtype", "fp32"), 2)
        return dict(shape, kv_bytes=b, io_bytes=b)

    def run(self, inputs, config):
        return self._call(inputs, self.impl, self.kernel_config(config))

    def reference(self, inputs):
        from qlab.kernels import registry

        return self._call(inputs, registry.reference(self.op).name, None)


class AttentionDecodeOp(_Attention):
    op = "attention_decode"
    dims = {"B": 1, "HQ": 24, "HKV": 4, "D": 256, "S": 4096}
    seq_dims = ("S",)
    presets = {"qwen3.6-27b": [{"S": 4096}, {"S": 32768}]}
    tile_dims = {"BLOCK_N": "S"}
    grid_params = ()              # BLOCK_N steps through a split's keys; num_splits makes programs
    parallel_dims = ("B", "HKV")   # one program per KV head's query group (and split)
    entry = "qlab.kernels.attention:decode"

    def cost(self, shape, config=None) -> OpCost:
        b = _DTYPE_BYTES.get(shape.get("dtype", "fp32"), 2)
        return attn_cost.decode(shape["B"], shape["HQ"], shape["HKV"], shape["D"], shape["S"], kv_bytes=b,
                                io_bytes=b)

    def make_inputs(self, shape, device="cpu"):
        import torch

        gen = torch.Generator(device="cpu").manual_seed(42)
        B, HQ, HKV, D, S = (shape[k] for k in ("B", "HQ", "HKV", "D", "S"))
        dt = torch_dtype(shape.get("dtype", "fp32"))
        return {"q": _rand((B, HQ, D), gen, dt, device), "k": _rand((B, HKV, S, D), gen, dt, device),
                "v": _rand((B, HKV, S, D), gen, dt, device),
                "lengths": torch.full((B,), S, dtype=torch.int32, device=device)}

    def _call(self, i, impl, config):
        from qlab.kernels.attention import decode

        kw = {} if config is None else {"config": config}
        return decode(i["q"], i["k"], i["v"], i["lengths"], impl=impl, **kw)


class AttentionPrefillOp(_Attention):
    op = "attention_prefill"
    dims = {"B": 1, "T": 512, "HQ": 24, "HKV": 4, "D": 256}
    seq_dims = ("T",)
    presets = {"qwen3.6-27b": [{"T": 512}]}
    tile_dims = {"BLOCK_M": "T", "BLOCK_N": "T"}
    grid_params = ("BLOCK_M",)
    parallel_dims = ("B", "HQ")
    entry = "qlab.kernels.attention:prefill"

    def cost(self, shape, config=None) -> OpCost:
        b = _DTYPE_BYTES.get(shape.get("dtype", "fp32"), 2)
        return attn_cost.prefill(shape["B"], shape["T"], shape["HQ"], shape["HKV"], shape["D"], io_bytes=b)

    def make_inputs(self, shape, device="cpu"):
        import torch

        gen = torch.Generator(device="cpu").manual_seed(42)
        B, T, HQ, HKV, D = (shape[k] for k in ("B", "T", "HQ", "HKV", "D"))
        dt = torch_dtype(shape.get("dtype", "fp32"))
        return {"q": _rand((B, T, HQ, D), gen, dt, device), "k": _rand((B, T, HKV, D), gen, dt, device),
                "v": _rand((B, T, HKV, D), gen, dt, device)}

    def _call(self, i, impl, config):
        from qlab.kernels.attention import prefill

        kw = {} if config is None else {"config": config}
        return prefill(i["q"], i["k"], i["v"], causal=True, impl=impl, **kw)
