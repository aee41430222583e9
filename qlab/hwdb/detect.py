"""Which device is this machine? NVIDIA through NVML, Apple Silicon through sysctl/system_profiler, else the CPU.

Each path has two halves: a `query_*` function that talks to the system and returns raw values (the text or
numbers a recording in tests/data/detect/ holds), and a pure `*_detection(raw)` function that maps them to a
hwdb device. Tests feed recordings to the pure half; nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qlab.errors import QlabError
from qlab.hwdb.device import Device
from qlab.hwdb.loader import APPLE_FRACTION_SOURCE, apple_gpu_memory_fraction, load_all, normalize, with_memory

CPU_HOST_ID = "cpu-host"
# NVML reports the memory clock at half the transfer rate for GDDR6/6X/7 and HBM alike
# (RTX 3090: 9751 MHz x 2 x 384 bit / 8 = 936 GB/s; A100 80GB SXM: 1593 MHz x 2 x 5120 / 8 = 2039 GB/s).
NVML_DATA_RATE = 2
BANDWIDTH_TOLERANCE = 0.15  # a name match whose bus disagrees by more than this is another SKU (RTX 3060 8 GB)


@dataclass
class Detection:
    device: Device
    source: str                      # "nvml" | "apple" | "cpu"
    known: bool                      # True when the device is a hwdb entry, False when built from what was read
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.device.id, "source": self.source, "known": self.known, "details": self.details}


# ---------------------------------------------------------------- NVIDIA (NVML)
def query_nvml(index: int = 0) -> dict | None:
    """Raw NVML values for GPU `index`, or None when there is no NVIDIA driver or GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(h)
        driver = pynvml.nvmlSystemGetDriverVersion()

        def optional(fn, *args):  # older drivers or GPUs lack some queries
            try:
                return fn(*args)
            except (pynvml.NVMLError, AttributeError, TypeError):  # TypeError: fn is None (not in this pynvml)
                return None

        return {
            "name": name.decode() if isinstance(name, bytes) else name,
            "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
            "bus_width_bits": optional(pynvml.nvmlDeviceGetMemoryBusWidth, h),
            "max_mem_clock_mhz": optional(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": optional(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM),
            "cuda_cores": optional(pynvml.nvmlDeviceGetNumGpuCores, h),
            "compute_capability": list(optional(pynvml.nvmlDeviceGetCudaComputeCapability, h) or []),
            "driver_version": driver.decode() if isinstance(driver, bytes) else driver,
            # looked up by name: a mocked or older pynvml may lack them
            "uuid": _text(optional(getattr(pynvml, "nvmlDeviceGetUUID", None), h)),
            "power_limit_w": _milli(optional(getattr(pynvml, "nvmlDeviceGetEnforcedPowerLimit", None), h)),
            "app_sm_clock_mhz": optional(getattr(pynvml, "nvmlDeviceGetApplicationsClock", None), h,
                                         getattr(pynvml, "NVML_CLOCK_SM", 0)),
            "gpu_count": int(count),
            "index": index,
        }
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(v) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


def _milli(v) -> float | None:
    return round(v / 1000, 1) if isinstance(v, (int, float)) else None


def gpu_fingerprint(raw: dict) -> dict:
    """What tells one NVIDIA GPU (and its setup) from another: a profile is valid for this card only. The
    clocks and the power limit are part of it because a capped card is slower than its hwdb entry."""
    return {"kind": "gpu", "name": raw["name"], "uuid": raw.get("uuid"), "driver": raw.get("driver_version"),
            "memory_gib": round(raw["memory_total_bytes"] / 2**30, 1),
            "max_sm_clock_mhz": raw.get("max_sm_clock_mhz"), "max_mem_clock_mhz": raw.get("max_mem_clock_mhz"),
            "app_sm_clock_mhz": raw.get("app_sm_clock_mhz"), "power_limit_w": raw.get("power_limit_w")}


def _slug(name: str) -> str:
    name = re.sub(r"^(nvidia|geforce)\s+", "", name.strip(), flags=re.I)
    name = re.sub(r"^(geforce)\s+", "", name, flags=re.I)
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "gpu"


def _closest_option(dev: Device, memory_gib: float) -> Device:
    """GPUs report GiB (24 GB card: 24 GiB total, a bit less after ECC/reserve); pick the option nearest it."""
    best = min(dev.memory_options_gb, key=lambda o: abs(o - memory_gib))
    return with_memory(dev, best) if best != dev.memory_gb else dev


def nvml_detection(raw: dict) -> Detection:
    name = raw["name"]
    memory_gib = raw["memory_total_bytes"] / 2**30
    bus, mclk = raw.get("bus_width_bits"), raw.get("max_mem_clock_mhz")
    nvml_bw = bus * mclk * NVML_DATA_RATE / 8 / 1000 if bus and mclk else None  # GB/s
    cc = ".".join(str(x) for x in raw.get("compute_capability") or []) or None
    details = {"name": name, "memory_gib": round(memory_gib, 2), "bus_width_bits": bus,
               "max_mem_clock_mhz": mclk, "compute_capability": cc, "driver_version": raw.get("driver_version"),
               "gpu_count": raw.get("gpu_count", 1), "index": raw.get("index", 0),
               "fingerprint": gpu_fingerprint(raw)}
    if nvml_bw:
        details["nvml_bandwidth_gbs"] = round(nvml_bw, 1)
    devices, lookup = load_all()
    dev_id = lookup.get(normalize(name))
    if dev_id:
        dev = _closest_option(devices[dev_id], memory_gib)
        off = abs(nvml_bw - dev.mem_bandwidth_gbs) / dev.mem_bandwidth_gbs if nvml_bw else 0.0
        if off <= BANDWIDTH_TOLERANCE:
            details["matched"] = f"NVML name {name!r} -> hwdb {dev.id}"
            return Detection(dev, "nvml", True, details)
        details["mismatch"] = (f"name matches hwdb {dev.id} ({dev.mem_bandwidth_gbs:g} GB/s) but NVML's bus gives "
                               f"{nvml_bw:.0f} GB/s: another SKU; using NVML's values")
    return Detection(_device_from_nvml(raw, nvml_bw, cc, memory_gib, details), "nvml", False, details)


def _device_from_nvml(raw: dict, nvml_bw: float | None, cc: str | None, memory_gib: float, details: dict) -> Device:
    if not nvml_bw:
        raise QlabError(f"GPU {raw['name']!r} is not in the hwdb and NVML reports no memory bus width/clock; "
                        "add it as a user device file (see qlab/hwdb/README.md)")
    formula = (f"bus width {raw['bus_width_bits']} bit / 8 x max memory clock {raw['max_mem_clock_mhz']} MHz "
               f"x {NVML_DATA_RATE} (data-rate multiplier)")
    details["basis"] = f"not in the hwdb: built from NVML; bandwidth = {formula}"
    sources = {"name": "NVML nvmlDeviceGetName", "memory_gb": "NVML nvmlDeviceGetMemoryInfo (total, 10^9 bytes)",
               "mem_bandwidth_gbs": f"NVML: {formula}"}
    estimates = {"mem_bandwidth_gbs": "derived"}
    fp32 = None
    cores, sclk = raw.get("cuda_cores"), raw.get("max_sm_clock_mhz")
    if cores and sclk:
        fp32 = round(cores * 2 * sclk / 1e6, 2)
        sources["fp32_tflops"] = f"NVML: {cores} CUDA cores x 2 FLOP x max SM clock {sclk} MHz"
        estimates["fp32_tflops"] = "derived"
        details["basis"] += "; FP32 = CUDA cores x 2 x max SM clock (tensor rates unknown)"
    if cc:
        sources["compute_capability"] = "NVML nvmlDeviceGetCudaComputeCapability"
    memory_gb = round(raw["memory_total_bytes"] / 1e9, 2)
    return Device(
        id=_slug(raw["name"]), name=raw["name"], vendor="nvidia", kind="gpu",
        architecture=f"CUDA sm_{cc.replace('.', '')}" if cc else "unknown",
        memory_gb=memory_gb, memory_options_gb=(memory_gb,), mem_bandwidth_gbs=round(nvml_bw, 1),
        compute_capability=cc, boost_clock_mhz=float(sclk) if sclk else None, fp32_tflops=fp32,
        compute_unit_kind="CUDA core" if cores else "", compute_units=cores or None,
        sources=sources, estimates=estimates, confidence="low", origin="nvml",
        notes="Built from NVML because the hwdb has no entry with this name; add one for tensor rates.",
    )


# ---------------------------------------------------------------- Apple Silicon
def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout


def query_apple() -> dict | None:
    """Raw sysctl / system_profiler output on an Apple Silicon Mac, else None."""
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return None
    try:
        raw = {"brand": _run(["sysctl", "-n", "machdep.cpu.brand_string"]),
               "memsize": _run(["sysctl", "-n", "hw.memsize"]),
               "displays": _run(["system_profiler", "SPDisplaysDataType"])}
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        raw["wired_limit_mb"] = _run(["sysctl", "-n", "iogpu.wired_limit_mb"])
    except (OSError, subprocess.SubprocessError):
        pass
    return raw


def parse_apple(raw: dict) -> dict:
    chip = " ".join(raw["brand"].split())
    cores = re.search(r"Total Number of Cores:\s*(\d+)", raw.get("displays", ""))
    limit = (raw.get("wired_limit_mb") or "").strip()
    return {"chip": chip, "memory_bytes": int(raw["memsize"].strip()),
            "gpu_cores": int(cores.group(1)) if cores else None,
            "wired_limit_mb": int(limit) if limit.isdigit() else 0}


def apple_detection(raw: dict) -> Detection:
    p = parse_apple(raw)
    chip, cores = p["chip"], p["gpu_cores"]
    memory_gb = p["memory_bytes"] / 2**30  # Apple sells "128 GB" = 128 GiB
    details = {"chip": chip, "gpu_cores": cores, "memory_gb": round(memory_gb, 1)}
    devices, lookup = load_all()
    dev_id = (lookup.get(normalize(f"{chip} ({cores}-core GPU)")) if cores else None) or lookup.get(normalize(chip))
    known = dev_id is not None
    if dev_id is None:
        dev_id = _nearest_apple(chip, devices)
        details["basis"] = f"{chip!r} is not in the hwdb: using the specs of {dev_id} (same tier, newest known)"
    dev = devices[dev_id]
    if cores and dev.compute_units and cores != dev.compute_units:
        details["note"] = f"hwdb {dev.id} lists {dev.compute_units} GPU cores, this chip has {cores}"
    size = min(dev.memory_options_gb, key=lambda o: abs(o - memory_gb))
    if abs(size - memory_gb) < 0.5:
        dev = with_memory(dev, size)
    else:  # a capacity the hwdb does not list: keep the device, take this machine's size
        opts = tuple(sorted({*dev.memory_options_gb, round(memory_gb)}))
        dev = dataclasses.replace(dev, memory_options_gb=opts, memory_gb=float(round(memory_gb)),
                                  gpu_memory_fraction=apple_gpu_memory_fraction(round(memory_gb)))
    if p["wired_limit_mb"]:  # the user raised (or lowered) the GPU's wired-memory cap
        fraction = min(1.0, p["wired_limit_mb"] * 2**20 / p["memory_bytes"])
        dev = dataclasses.replace(dev, gpu_memory_fraction=fraction,
                                  sources={**dev.sources, "gpu_memory_fraction": "sysctl iogpu.wired_limit_mb"})
        details["wired_limit_mb"] = p["wired_limit_mb"]
    elif dev.sources.get("gpu_memory_fraction") == APPLE_FRACTION_SOURCE:
        details["gpu_memory_fraction"] = "macOS default (iogpu.wired_limit_mb = 0)"
    details["matched"] = f"{chip}" + (f" {cores}-core GPU" if cores else "") + f" -> hwdb {dev.id}"
    return Detection(dev, "apple", known, details)


def _nearest_apple(chip: str, devices: dict[str, Device]) -> str:
    tier = next((t for t in ("ultra", "max", "pro") if t in chip.lower()), "")
    pattern = re.compile(rf"^m\d+{'-' + tier if tier else ''}(-\d+c)?$")
    candidates = [d for d in devices.values() if d.vendor == "apple" and pattern.match(d.id)]
    if not candidates:
        raise QlabError(f"Apple chip {chip!r} is not in the hwdb; add a user device file (qlab/hwdb/README.md)")
    return max(candidates, key=lambda d: (d.launch_date or "", d.mem_bandwidth_gbs)).id


# ---------------------------------------------------------------- the host CPU
# FP32 FLOPs per cycle per core by widest vector FMA (2 FMA pipes x lanes x 2 FLOP). AMD Zen 4 runs AVX-512
# on 256-bit datapaths, so it gets the AVX2 figure; Zen 5 (family 26) has full-width units.
FLOPS_PER_CYCLE = {"avx512": 64, "avx512-zen4": 32, "avx2": 32, "avx": 16, "neon": 16, "sse": 8}
CPU_BW_PER_CORE_GBS = 10.0   # rough sustained DRAM bandwidth one core can pull; qlab profile measures the truth
CPU_BW_FLOOR_GBS = 20.0      # at least one DDR4 channel
MEASURED = "measured by qlab profile"


def query_cpu() -> dict:
    raw: dict = {"cpuinfo": "", "meminfo": "", "machine": platform.machine(), "cpu_count": os.cpu_count()}
    for key, path in (("cpuinfo", "/proc/cpuinfo"), ("meminfo", "/proc/meminfo"),
                      ("max_freq_khz", "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")):
        try:
            raw[key] = Path(path).read_text()
        except OSError:
            pass
    sizes = []
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            sizes.append(((idx / "level").read_text().strip(), (idx / "size").read_text().strip()))
        except OSError:
            pass
    raw["cache_sizes"] = sizes
    if not raw["cpuinfo"] and sys.platform == "darwin":  # an Intel Mac or a Mac asked for its CPU
        try:
            raw["cpuinfo"] = "model name\t: " + _run(["sysctl", "-n", "machdep.cpu.brand_string"])
            raw["meminfo"] = f"MemTotal: {int(_run(['sysctl', '-n', 'hw.memsize'])) // 1024} kB"
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return raw


def parse_cpuinfo(text: str) -> dict:
    """Model, vendor, logical and physical core counts, clock and flags from /proc/cpuinfo text."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    entries = []
    for b in blocks:
        kv = {}
        for line in b.splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                kv[k.strip().lower()] = v.strip()
        entries.append(kv)
    procs = [e for e in entries if "processor" in e] or entries
    first = procs[0] if procs else {}
    cores = {(e.get("physical id", "0"), e.get("core id", e.get("processor"))) for e in procs}
    flags = set((first.get("flags") or first.get("features") or "").split())
    model = first.get("model name") or first.get("cpu model") or ""
    if not model and "cpu part" in first:
        model = f"ARM CPU implementer {first.get('cpu implementer', '?')} part {first['cpu part']}"
    mhz = first.get("cpu mhz")
    at_ghz = re.search(r"@\s*([\d.]+)\s*GHz", model)
    return {
        "model": model or "unknown CPU",
        "vendor_id": first.get("vendor_id", ""),
        "cpu_family": first.get("cpu family", ""),
        "threads": len(procs) or 1,
        "cores": len(cores) if "core id" in first else len(procs) or 1,
        "clock_mhz": float(mhz) if mhz else (float(at_ghz.group(1)) * 1000 if at_ghz else None),
        "flags": flags,
    }


# Flags that decide which instructions (and so which kernels and matmul dtypes) run; the rest of /proc/cpuinfo's
# flags vary with the kernel and hypervisor without changing speed, so they are not part of a fingerprint.
FINGERPRINT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd",
                     "asimdhp", "fphp", "sve", "sve2", "bf16", "i8mm")


# Half-precision dtypes a CPU computes natively, by the flags that give it; without one of them torch converts
# element by element (an AVX2 EPYC's bf16 GEMM measured 0.0007 TFLOPS): used as a compute peak by `qlab profile`
# only when native, and chosen for the CPU attention kernels only when native.
NATIVE_DTYPE_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16", "bf16"),   # x86 AVX-512 BF16 / AMX, ARM BF16
                      "float16": ("avx512_fp16", "amx_fp16", "fphp", "asimdhp")}


def cpu_computes_natively(dtype: str, flags: set[str] | frozenset | None = None) -> bool:
    """Whether this CPU (or one with `flags`) has instructions for `dtype` ("bfloat16", "float16"; "float32" always)."""
    if dtype == "float32":
        return True
    if flags is None:
        flags = _here_flags()
    return any(f in flags for f in NATIVE_DTYPE_FLAGS.get(dtype, ()))


_FLAGS_HERE: list[frozenset] = []


def _here_flags() -> frozenset:
    if not _FLAGS_HERE:   # /proc/cpuinfo read once per process
        _FLAGS_HERE.append(frozenset(parse_cpuinfo(query_cpu().get("cpuinfo", "")).get("flags", ())))
    return _FLAGS_HERE[0]


def cpu_fingerprint(raw: dict) -> dict:
    """What tells one host from another: CPU model, the ISA flags that matter, cores, threads and memory size
    (the measured bandwidth is added by `qlab profile`). `cpu-host` is not one device: this is its identity."""
    p = parse_cpuinfo(raw.get("cpuinfo", ""))
    if not raw.get("cpuinfo"):
        p["cores"] = p["threads"] = raw.get("cpu_count") or 1
    return {"kind": "cpu", "model": p["model"], "flags": sorted(f for f in FINGERPRINT_FLAGS if f in p["flags"]),
            "cores": p["cores"], "threads": p["threads"],
            "memory_gb": round(parse_meminfo(raw.get("meminfo", "")) or 0.0, 1)}


def cpu_fingerprint_here() -> dict:
    return cpu_fingerprint(query_cpu())


def parse_meminfo(text: str) -> float | None:
    m = re.search(r"MemTotal:\s*(\d+)\s*kB", text)
    return int(m.group(1)) * 1024 / 1e9 if m else None


def isa_features(flags: set[str]) -> list[str]:
    named = [("AVX-512", "avx512f"), ("AVX-512 BF16", "avx512_bf16"), ("AVX-512 VNNI", "avx512_vnni"),
             ("AMX-BF16", "amx_bf16"), ("AMX-INT8", "amx_int8"), ("AVX2", "avx2"), ("FMA", "fma"), ("AVX", "avx"),
             ("NEON", "asimd"), ("SVE", "sve"), ("SVE2", "sve2"), ("ARM BF16", "bf16"), ("ARM I8MM", "i8mm")]
    return [label for label, flag in named if flag in flags]


def _vector_class(p: dict, machine: str) -> str:
    f = p["flags"]
    if "avx512f" in f:
        zen4 = p["vendor_id"] == "AuthenticAMD" and p["cpu_family"] == "25"
        return "avx512-zen4" if zen4 else "avx512"
    if "avx2" in f and "fma" in f:
        return "avx2"
    if "avx" in f:
        return "avx"
    if "asimd" in f or machine in ("aarch64", "arm64"):
        return "neon"
    return "sse"


def cpu_detection(raw: dict, measured: dict | None = None) -> Detection:
    """The host CPU as device `cpu-host`. Peak FP32 and bandwidth are estimates until `measured` (from a qlab
    profile: {"mem_bandwidth_gbs": .., "fp32_tflops": .., "bf16_tflops": ..}) replaces them."""
    p = parse_cpuinfo(raw.get("cpuinfo", ""))
    machine = raw.get("machine", "")
    if not raw.get("cpuinfo"):
        p["cores"] = p["threads"] = raw.get("cpu_count") or 1
    clock = p["clock_mhz"]
    if raw.get("max_freq_khz", "").strip().isdigit():
        clock = int(raw["max_freq_khz"].strip()) / 1000
    vec = _vector_class(p, machine)
    fpc = FLOPS_PER_CYCLE[vec]
    memory_gb = parse_meminfo(raw.get("meminfo", "")) or 0.0
    fp32 = p["cores"] * (clock or 2000) * 1e6 * fpc / 1e12
    bf16 = None
    if "amx_bf16" in p["flags"]:
        bf16 = p["cores"] * (clock or 2000) * 1e6 * 1024 / 1e12  # AMX: 1024 BF16 FLOP/cycle/core
    elif "avx512_bf16" in p["flags"]:
        bf16 = 2 * fp32  # VDPBF16PS: two BF16 products per FP32 lane
    bandwidth = max(CPU_BW_FLOOR_GBS, p["cores"] * CPU_BW_PER_CORE_GBS)
    llc = None
    for level, size in raw.get("cache_sizes", []):
        m = re.match(r"(\d+)([KM])", size)
        if m and level in ("2", "3"):
            llc = int(m.group(1)) / (1024 if m.group(2) == "K" else 1)
    isa = isa_features(p["flags"])
    flops_basis = (f"{p['cores']} cores x {clock or 2000:.0f} MHz x {fpc} FP32 FLOP/cycle ({vec})"
                   + ("" if clock else "; clock unknown, 2 GHz assumed"))
    sources = {
        "name": "/proc/cpuinfo model name", "compute_units": "/proc/cpuinfo (physical id, core id) pairs",
        "boost_clock_mhz": "/sys/.../cpufreq/cpuinfo_max_freq or /proc/cpuinfo cpu MHz",
        "memory_gb": "/proc/meminfo MemTotal",
        "fp32_tflops": f"estimate: {flops_basis}",
        "mem_bandwidth_gbs": (f"estimate: {CPU_BW_PER_CORE_GBS:g} GB/s per core, at least {CPU_BW_FLOOR_GBS:g}; "
                              "qlab profile measures it"),
    }
    estimates = {"fp32_tflops": "est", "mem_bandwidth_gbs": "est"}
    if bf16:
        sources["bf16_tflops"] = "estimate: " + ("AMX 1024 BF16 FLOP/cycle/core" if "amx_bf16" in p["flags"]
                                                 else "AVX-512 BF16 = 2 x FP32 rate")
        estimates["bf16_tflops"] = "est"
    if llc:
        sources["l2_cache_mb"] = "/sys/devices/system/cpu/cpu0/cache (last level)"
    dev = Device(
        id=CPU_HOST_ID, name=p["model"], vendor="cpu", kind="cpu",
        architecture=f"{machine or 'cpu'} ({', '.join(isa[:3]) or 'scalar'})",
        memory_gb=round(memory_gb, 2), memory_options_gb=(round(memory_gb, 2),),
        mem_bandwidth_gbs=round(bandwidth, 1), memory_type="system DRAM",
        compute_units=p["cores"], compute_unit_kind="CPU core", boost_clock_mhz=clock, l2_cache_mb=llc,
        fp32_tflops=round(fp32, 4), bf16_tflops=round(bf16, 4) if bf16 else None,
        sources=sources, estimates=estimates, confidence="low", origin="detect",
        notes="Detected host CPU; peak FLOPs and bandwidth are estimates until `qlab profile` measures them.",
    )
    if measured:
        dev = with_measurements(dev, measured)
    details = {"model": p["model"], "vendor_id": p["vendor_id"], "cores": p["cores"], "threads": p["threads"],
               "clock_mhz": clock, "isa": isa, "fp32_flops_per_cycle": fpc, "memory_gb": round(memory_gb, 2),
               "estimated": sorted(dev.estimates), "fingerprint": cpu_fingerprint(raw),
               "basis": "peak and bandwidth estimated from the ISA, cores and clock; `qlab profile` measures them"}
    return Detection(dev, "cpu", True, details)


def with_measurements(dev: Device, measured: dict, source: str = MEASURED) -> Device:
    """Replace estimated values with measured ones (a profile's bandwidth and GEMM peak)."""
    allowed = {"mem_bandwidth_gbs", "fp32_tflops", "bf16_tflops", "fp16_tflops"}
    bad = set(measured) - allowed
    if bad:
        raise QlabError(f"measured values: unknown field(s) {sorted(bad)}; expected some of {sorted(allowed)}")
    vals = {k: float(v) for k, v in measured.items() if v is not None}
    if any(v <= 0 for v in vals.values()):
        raise QlabError(f"measured values must be positive, got {vals}")
    sources = {**dev.sources, **{k: source for k in vals}}
    estimates = {k: v for k, v in dev.estimates.items() if k not in vals}
    return dataclasses.replace(dev, **vals, sources=sources, estimates=estimates)


def detect_cpu(measured: dict | None = None) -> Detection:
    return cpu_detection(query_cpu(), measured)


# ---------------------------------------------------------------- entry point
PREFER = ("auto", "nvml", "apple", "cpu")
SYNONYMS = {"cuda": "nvml", "nvidia": "nvml", "mps": "apple", "metal": "apple"}


def detect_device(prefer: str = "auto", index: int = 0) -> Detection:
    """The device qlab should profile here: the first NVIDIA GPU (or `index`), else Apple Silicon's GPU, else
    the CPU. `prefer` forces one path ("nvml"/"cuda", "apple"/"mps", "cpu"); a forced path that finds nothing is
    an error."""
    prefer = SYNONYMS.get(prefer, prefer)
    if prefer not in PREFER:
        raise QlabError(f"detect: unknown source {prefer!r}; expected one of {', '.join(PREFER)} "
                        f"(or {', '.join(SYNONYMS)})")
    if prefer in ("auto", "nvml"):
        raw = query_nvml(index)
        if raw:
            return nvml_detection(raw)
        if prefer == "nvml":
            raise QlabError("detect: no NVIDIA GPU found through NVML (driver or nvidia-ml-py missing?)")
    if prefer in ("auto", "apple"):
        raw = query_apple()
        if raw:
            return apple_detection(raw)
        if prefer == "apple":
            raise QlabError("detect: not an Apple Silicon Mac")
    return detect_cpu()
