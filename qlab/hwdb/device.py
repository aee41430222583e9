"""The Device record: one device's specs as the rest of qlab reads them. Loaded from TOML by
`qlab.hwdb.loader`, built from NVML/sysctl/cpuinfo by `qlab.hwdb.detect`. Rates are dense (no sparsity),
GB is 10^9 bytes, bandwidth GB/s is 10^9 bytes/s."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Device:
    id: str                                  # stable slug, e.g. "rtx-3090", "m4-max-40c", "cpu-host"
    name: str                                # marketing name, e.g. "NVIDIA GeForce RTX 3090"
    vendor: str                              # "nvidia" | "amd" | "apple" | "intel" | "cpu"
    kind: str                                # "gpu" (discrete memory) | "unified" (Apple, DGX Spark, APUs) | "cpu"
    architecture: str
    memory_gb: float                         # capacity visible to the device
    mem_bandwidth_gbs: float                 # vendor peak
    memory_type: str = ""
    compute_capability: str | None = None    # NVIDIA only, e.g. "8.6"
    compute_units: int | None = None         # SMs, CUs, GPU cores, CPU cores
    compute_unit_kind: str = ""
    boost_clock_mhz: float | None = None
    l2_cache_mb: float | None = None         # L2 (GPU) or last-level cache
    fp16_tflops: float | None = None         # dense tensor FP16/BF16 with FP32 accumulate
    bf16_tflops: float | None = None
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    fp4_tflops: float | None = None
    fp32_tflops: float | None = None         # non-tensor FP32
    tdp_w: float | None = None
    host_interface: str = ""
    host_link_gbs: float | None = None       # PCIe, one direction
    peer_link_gbs: float | None = None       # NVLink/Infinity Fabric between devices, None if absent
    gpu_memory_fraction: float = 1.0         # share of memory_gb a model may use (Apple default working set)
    price_usd: float | None = None
    launch_date: str | None = None
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # field -> source
    notes: str = ""
    # Added by the hwdb loader (all optional, so code that builds a Device by hand keeps working):
    memory_options_gb: tuple[float, ...] = ()  # every capacity sold; memory_gb is the one chosen (default: largest)
    chip: str = ""                             # die / SKU code, e.g. "GA102-300"
    fp16_fp16acc_tflops: float | None = None   # GeForce/RDNA tensor FP16 with FP16 accumulate (not the roof to use)
    npu_tops: float | None = None              # on-package NPU (Apple Neural Engine, XDNA), not used by qlab kernels
    confidence: str = ""                       # "high" | "medium" | "low" (hwdb research tables' grading)
    value_notes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # field -> remark
    estimates: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # field -> recall|est|derived
    origin: str = field(default="", compare=False)  # the file (or detector) this record came from

    @property
    def usable_memory_gb(self) -> float:
        return self.memory_gb * self.gpu_memory_fraction

    @property
    def peak_tflops(self) -> float | None:
        """The dense half-precision matrix rate to predict with (FP16/BF16, FP32 accumulate)."""
        return self.bf16_tflops or self.fp16_tflops or self.fp32_tflops
