"""The Gated DeltaNet impls, as records of the kernel registry (qlab/kernels/registry.py).

resolve() prefers, among what runs on the device, the highest rank whose `fits`
accepts the shape — the recurrent kernels for one token (decode), the chunked ones for a prompt."""

from __future__ import annotations

from qlab.kernels.registry import Impl, OpSpec

OPS = (OpSpec("deltanet", {"B": 1, "T": 512, "H": 16, "HV": 48, "K": 128, "V": 128}, ("T",),
              "qlab.kernels.deltanet"),)

_ALL = ("cpu", "cuda", "mps")
_GPU = frozenset({"contiguous_inputs"})
IMPLS = (
    Impl("deltanet", "naive", "torch", "naive:naive_recurrent_gated_delta_rule", _ALL,
         "token-by-token recurrence in fp32 torch (the reference)", reference=True),
    Impl("deltanet", "recurrent_torch", "torch", "recurrent_torch:recurrent_torch_gated_delta_rule", _ALL,
         "token-by-token recurrence, batched over heads in torch", rank=10),
    Impl("deltanet", "recurrent_cpu", "c", "recurrent_cpu:recurrent_cpu_gated_delta_rule", ("cpu",),
         "token-by-token recurrence in C (OpenMP over heads); the decode step's whole layer as one C call "
         "(layer_step_cpu.py)", dtypes=("fp32",), rank=20, fits=lambda s: s.get("T", 1) == 1,
         features=frozenset({"fused_layer_step"})),
    Impl("deltanet", "chunk_torch", "torch", "chunk_torch:chunk_torch_gated_delta_rule", _ALL,
         "chunked (WY) form in torch: matmuls over chunks of the prompt", rank=15,
         fits=lambda s: s.get("T", 1) > 1, tunables="tunables"),
    Impl("deltanet", "triton_recurrent", "triton", "triton_recurrent:triton_recurrent_gated_delta_rule",
         ("cuda",), "token-by-token recurrence in Triton, the gate fused", rank=30,
         fits=lambda s: s.get("T", 1) == 1, tunables="tunables", features=_GPU | {"fused_gate"}),
    Impl("deltanet", "triton_chunk", "triton", "triton_chunk:triton_chunk_gated_delta_rule", ("cuda",),
         "chunked (WY) form in Triton", rank=30, fits=lambda s: s.get("T", 1) > 1, tunables="tunables",
         features=_GPU),
    Impl("deltanet", "cupy_recurrent", "cupy", "cupy_recurrent:cupy_recurrent_gated_delta_rule", ("cuda",),
         "token-by-token recurrence in CUDA C (cupy.RawModule), the gate fused", dtypes=("fp32", "bf16"),
         rank=25, fits=lambda s: s.get("T", 1) == 1, tunables="tunables", features=_GPU | {"fused_gate"}),
)
