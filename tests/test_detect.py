"""Device detection on recorded NVML / sysctl / system_profiler / cpuinfo outputs (tests/data/detect/)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from qlab.errors import QlabError
from qlab.hwdb import detect
from qlab.hwdb.detect import apple_detection, cpu_detection, detect_device, nvml_detection, with_measurements

DATA = Path(__file__).parent / "data" / "detect"


def nvml(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def apple(folder: str) -> dict:
    d = DATA / folder
    raw = {"brand": (d / "sysctl_machdep.cpu.brand_string.txt").read_text(),
           "memsize": (d / "sysctl_hw.memsize.txt").read_text(),
           "displays": (d / "system_profiler_SPDisplaysDataType.txt").read_text()}
    limit = d / "sysctl_iogpu.wired_limit_mb.txt"
    if limit.exists():
        raw["wired_limit_mb"] = limit.read_text()
    return raw


def cpu(cpuinfo: str, meminfo: str, machine: str = "x86_64") -> dict:
    return {"cpuinfo": (DATA / cpuinfo).read_text(), "meminfo": (DATA / meminfo).read_text(), "machine": machine}


# ------------------------------------------------------------------ NVML
def test_nvml_known_gpu_maps_to_hwdb():
    d = nvml_detection(nvml("nvml_rtx3090.json"))
    assert (d.source, d.known, d.device.id) == ("nvml", True, "rtx-3090")
    assert d.details["compute_capability"] == "8.6"
    assert d.details["driver_version"] == "550.54.14" and d.details["gpu_count"] == 2
    assert d.details["nvml_bandwidth_gbs"] == pytest.approx(936, rel=0.01)  # 384/8 x 9751 MHz x 2


def test_nvml_unknown_gpu_is_built_from_nvml_and_says_so():
    d = nvml_detection(nvml("nvml_unknown_rtx_pro_4000_blackwell.json"))
    assert d.known is False and d.source == "nvml"
    dev = d.device
    assert dev.id == "rtx-pro-4000-blackwell" and dev.vendor == "nvidia"
    assert dev.mem_bandwidth_gbs == pytest.approx(192 / 8 * 14001 * 2 / 1000, rel=1e-3)  # 672 GB/s
    assert dev.fp32_tflops == pytest.approx(8960 * 2 * 2617 / 1e6, rel=1e-3)
    assert dev.compute_capability == "12.0"
    assert "bus width" in d.details["basis"] and "data-rate" in d.details["basis"]
    assert dev.estimates["mem_bandwidth_gbs"] == "derived" and "NVML" in dev.sources["mem_bandwidth_gbs"]


def test_nvml_name_match_with_other_bus_is_another_sku():
    d = nvml_detection(nvml("nvml_rtx3060_8gb.json"))  # RTX 3060 8 GB: 128-bit, 240 GB/s, not the 12 GB row
    assert d.known is False
    assert d.device.mem_bandwidth_gbs == pytest.approx(240, rel=0.01)
    assert "rtx-3060-12gb" in d.details["mismatch"]


def test_nvml_memory_option_chosen_from_reported_memory():
    d = nvml_detection(nvml("nvml_rtx4060ti_8gb.json"))
    assert d.known and d.device.id == "rtx-4060-ti-16gb" and d.device.memory_gb == 8


def _fake_pynvml(raw: dict, fail_init: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init():
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    m.NVMLError = NVMLError
    m.NVML_CLOCK_MEM, m.NVML_CLOCK_SM = 2, 1
    m.nvmlInit, m.nvmlShutdown = init, lambda: None
    m.nvmlDeviceGetCount = lambda: raw["gpu_count"]
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetName = lambda h: raw["name"].encode()  # old bindings return bytes
    m.nvmlSystemGetDriverVersion = lambda: raw["driver_version"]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=raw["memory_total_bytes"])
    m.nvmlDeviceGetMemoryBusWidth = lambda h: raw["bus_width_bits"]
    m.nvmlDeviceGetMaxClockInfo = lambda h, c: raw["max_mem_clock_mhz"] if c == 2 else raw["max_sm_clock_mhz"]
    m.nvmlDeviceGetCudaComputeCapability = lambda h: tuple(raw["compute_capability"])

    def no_cores(h):
        raise NVMLError("Not Supported")

    m.nvmlDeviceGetNumGpuCores = no_cores
    return m


def test_detect_device_through_mocked_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(nvml("nvml_rtx3090.json")))
    d = detect_device()
    assert (d.source, d.device.id, d.known) == ("nvml", "rtx-3090", True)
    assert detect_device(prefer="cuda").device.id == "rtx-3090"  # qlab profile --gpu cuda
    assert d.details["max_mem_clock_mhz"] == 9751


def test_detect_device_falls_back_to_cpu_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(nvml("nvml_rtx3090.json"), fail_init=True))
    monkeypatch.setattr(detect, "query_apple", lambda: None)
    d = detect_device()
    assert d.source == "cpu" and d.device.id == "cpu-host"
    with pytest.raises(QlabError, match="no NVIDIA GPU"):
        detect_device(prefer="nvml")
    with pytest.raises(QlabError, match="unknown source"):
        detect_device(prefer="tpu")


# ------------------------------------------------------------------ Apple
def test_apple_m4_max_40c():
    d = apple_detection(apple("apple_m4_max_40c"))
    assert (d.source, d.known, d.device.id) == ("apple", True, "m4-max-40c")
    assert d.device.memory_gb == 128 and d.device.mem_bandwidth_gbs == 546
    assert d.device.usable_memory_gb == pytest.approx(96)  # macOS default: 3/4 above 36 GB


def test_apple_m1_16gb():
    d = apple_detection(apple("apple_m1"))
    assert d.device.id == "m1" and d.known and d.device.memory_gb == 16
    assert d.device.gpu_memory_fraction == pytest.approx(2 / 3)


def test_apple_variant_by_core_count_and_wired_limit():
    raw = apple("apple_m4_max_40c")
    raw["displays"] = raw["displays"].replace("Total Number of Cores: 40", "Total Number of Cores: 32")
    raw["memsize"] = str(36 * 2**30)
    raw["wired_limit_mb"] = str(32 * 1024)  # `sudo sysctl iogpu.wired_limit_mb=32768`
    d = apple_detection(raw)
    assert d.device.id == "m4-max-32c" and d.device.mem_bandwidth_gbs == 410
    assert d.device.usable_memory_gb == pytest.approx(36 * 32 / 36)
    assert d.device.sources["gpu_memory_fraction"] == "sysctl iogpu.wired_limit_mb"


def test_apple_unknown_chip_uses_nearest_tier():
    raw = apple("apple_m4_max_40c")
    raw["brand"] = "Apple M9 Max"
    d = apple_detection(raw)
    assert d.known is False and d.device.id.startswith("m5-max")
    assert "not in the hwdb" in d.details["basis"]


# ------------------------------------------------------------------ CPU
def test_cpu_xeon_avx512_amx():
    d = cpu_detection(cpu("cpuinfo_xeon_8480_avx512_amx.txt", "meminfo_xeon.txt"))
    dev = d.device
    assert (d.source, dev.id, dev.vendor, dev.kind) == ("cpu", "cpu-host", "cpu", "cpu")
    assert dev.name == "Intel(R) Xeon(R) Platinum 8480+"
    assert d.details["cores"] == 2 and d.details["threads"] == 4
    assert {"AVX-512", "AMX-BF16", "AVX2"} <= set(d.details["isa"])
    assert dev.fp32_tflops == pytest.approx(2 * 2.0e9 * 64 / 1e12)
    assert dev.bf16_tflops == pytest.approx(2 * 2.0e9 * 1024 / 1e12)
    assert dev.memory_gb == pytest.approx(32614480 * 1024 / 1e9, rel=1e-3)
    assert dev.estimates["mem_bandwidth_gbs"] == "est" and "profile" in dev.sources["mem_bandwidth_gbs"]


def test_cpu_this_machine_recording_zen4():
    d = cpu_detection(cpu("cpuinfo_this_machine_epyc_zen4.txt", "meminfo_this_machine.txt"))
    assert d.details["fp32_flops_per_cycle"] == 32  # Zen 4 runs AVX-512 on 256-bit datapaths
    assert "AVX-512" in d.details["isa"] and d.device.compute_units == d.details["cores"]


def test_cpu_arm_neon_sve():
    d = cpu_detection(cpu("cpuinfo_arm_neoverse_v2.txt", "meminfo_xeon.txt", machine="aarch64"))
    assert {"NEON", "SVE", "SVE2"} <= set(d.details["isa"])
    assert d.details["cores"] == 4 and d.device.fp32_tflops > 0


def test_cpu_measured_values_replace_estimates():
    d = cpu_detection(cpu("cpuinfo_xeon_8480_avx512_amx.txt", "meminfo_xeon.txt"),
                      measured={"mem_bandwidth_gbs": 61.5, "fp32_tflops": 0.2})
    assert d.device.mem_bandwidth_gbs == 61.5 and d.device.fp32_tflops == 0.2
    assert "mem_bandwidth_gbs" not in d.device.estimates and d.device.sources["fp32_tflops"].startswith("measured")
    with pytest.raises(QlabError, match="unknown field"):
        with_measurements(d.device, {"tflops": 1.0})


def test_detect_here_reports_cpu_host():
    d = detect_device()  # the build machines have no GPU and are not Macs
    assert d.source == "cpu" and d.device.id == "cpu-host" and d.device.memory_gb > 0
