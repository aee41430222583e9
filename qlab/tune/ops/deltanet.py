"""The Gated DeltaNet op (`qlab.kernels.deltanet.gated_delta_rule`) as the tuner sees it.
Shapes: q, k [B, T, H, K]; v [B, T, HV, V]; g, beta [B, T, HV]; state [B, HV, K, V] fp32 (Qwen3.6-27B:
H=16, HV=48, K=V=128). T is bucketed: one tuning serves every length up to the next power of two."""

from __future__ import annotations

from qlab.kernels.cost import OpCost
from qlab.kernels.deltanet import cost as dn_cost
from qlab.tune.ops.base import TunableOp, torch_dtype

_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


class DeltaNetOp(TunableOp):
    op = "deltanet"
    dims = {"B": 1, "T": 512, "H": 16, "HV": 48, "K": 128, "V": 128}
    seq_dims = ("T",)
    presets = {"qwen3.6-27b": [{"T": 1}, {"T": 512}]}
    tile_dims = {"chunk_size": "T", "BT": "T", "BK": "K", "BV": "V", "BLOCK_K": "K", "BLOCK_V": "V",
                 "BLOCK_T": "T"}
    grid_params = ("BV", "BK", "BLOCK_K", "BLOCK_V")
    parallel_dims = ("B", "HV")
    entry = "qlab.kernels.deltanet:gated_delta_rule"
    package = "qlab.kernels.deltanet"

    def cost(self, shape, config=None) -> OpCost:
        s = {k: shape[k] for k in ("B", "T", "H", "HV", "K", "V")}
        io = _DTYPE_BYTES.get(shape.get("dtype", "fp32"), 2)
        chunk = (config or {}).get("chunk_size") or (config or {}).get("BT")
        if not chunk:   # the recurrent impls have no chunk size: one pass over the tokens
            return dn_cost.recurrent(**s, io_bytes=io)
        return dn_cost.chunk(**s, chunk_size=int(chunk), io_bytes=io)

    def make_inputs(self, shape, device="cpu"):
        import torch

        gen = torch.Generator(device="cpu").manual_seed(42)
        B, T, H, HV, K, V = (shape[k] for k in ("B", "T", "H", "HV", "K", "V"))
        dt = torch_dtype(shape.get("dtype", "fp32"))

        def rnd(*s):
            return torch.randn(*s, generator=gen)

        q, k, v = rnd(B, T, H, K), rnd(B, T, H, K), rnd(B, T, HV, V)
        g = -torch.nn.functional.softplus(rnd(B, T, HV)) * 0.3          # log decay <= 0, weak to strong
        beta = torch.sigmoid(rnd(B, T, HV))
        state = rnd(B, HV, K, V) * 0.1
        to = dict(device=device)
        return {"q": q.to(dtype=dt, **to), "k": k.to(dtype=dt, **to), "v": v.to(dtype=dt, **to),
                "g": g.to(dtype=dt, **to), "beta": beta.to(dtype=dt, **to), "initial_state": state.to(**to)}

    def _call(self, inputs, impl, config):
        from qlab.kernels.deltanet import gated_delta_rule

        i = inputs
        kw = {} if config is None else {"config": config}
        return gated_delta_rule(i["q"], i["k"], i["v"], i["g"], i["beta"], initial_state=i["initial_state"],
                                output_final_state=True, use_qk_l2norm=True, impl=impl, **kw)

    def run(self, inputs, config):
        return self._call(inputs, self.impl, self.kernel_config(config))

    def reference(self, inputs):
        from qlab.kernels import registry

        return self._call(inputs, registry.reference(self.op).name, None)
