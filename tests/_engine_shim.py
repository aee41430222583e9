"""Until the kernel packages export their public entry points, fill in the missing names from the modules
they already hold (never replacing a name the package defines), so the engine tests run against the same
code the packages will export. Imported by the engine tests only."""

from __future__ import annotations

import importlib


def install() -> None:
    dm = importlib.import_module("qlab.kernels.dequant_matmul")
    if not hasattr(dm, "matmul"):
        w = importlib.import_module("qlab.kernels.dequant_matmul.weight")
        import numpy as np
        import torch

        def matmul(x, qw, *, impl="naive", config=None):
            return x.float() @ torch.from_numpy(np.ascontiguousarray(w.dequantize(qw))).T

        for name in ("QuantizedWeight", "quantize", "dequantize"):
            setattr(dm, name, getattr(w, name))
        dm.matmul = matmul
        dm.from_gguf_tensor = importlib.import_module("qlab.kernels.dequant_matmul.gguf_io").from_gguf_tensor
    dn = importlib.import_module("qlab.kernels.deltanet")
    if not hasattr(dn, "gated_delta_rule"):
        conv = importlib.import_module("qlab.kernels.deltanet.conv1d")
        dn.causal_conv1d, dn.causal_conv1d_update = conv.causal_conv1d, conv.causal_conv1d_update

        def gated_delta_rule(q, k, v, g, beta, *, scale=None, initial_state=None, output_final_state=True,
                             use_qk_l2norm=False, impl="naive", config=None):
            fn = {"naive": ("naive", "naive_recurrent_gated_delta_rule"),
                  "recurrent_torch": ("recurrent_torch", "recurrent_torch_gated_delta_rule"),
                  "chunk_torch": ("chunk_torch", "chunk_torch_gated_delta_rule")}[impl]
            f = getattr(importlib.import_module(f"qlab.kernels.deltanet.{fn[0]}"), fn[1])
            return f(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                     output_final_state=output_final_state, use_qk_l2norm=use_qk_l2norm)

        dn.gated_delta_rule = gated_delta_rule
