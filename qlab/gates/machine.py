"""The machine class a baseline belongs to: the CPU's architecture and widest vector ISA, from its flags.

Absolute times from an AVX-512 EPYC are noise on an AVX2-only one (a third of the bandwidth, half the vector
width), so every stored baseline and peer ratio is keyed by this class, and a run is only held to the numbers
of its own class. The class names only what changes which code the kernels and llama.cpp run (`-march=native`
builds pick their paths from these flags), not the model name or the core count.
"""

from __future__ import annotations

import platform
from pathlib import Path

# Widest first: the first whose flags are all present names the class.
X86_CLASSES = (
    ("x86_64-avx512", {"avx512f", "avx512bw", "avx512vl"}),
    ("x86_64-avx2", {"avx2", "fma"}),
    ("x86_64-sse", set()),
)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; py-cpuinfo elsewhere; empty if neither answers)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        import cpuinfo

        return set(cpuinfo.get_cpu_info().get("flags", []))
    except Exception:   # py-cpuinfo missing or failing: the class falls back to the bare architecture
        return set()


def cpu_model() -> str:
    """The CPU's vendor, family and model numbers (e.g. "AuthenticAMD family 25 model 17"), "" where unknown.
    The timing gate binds only on the model its baseline was measured on: two microarchitectures with the same
    flags (a Zen 4 and a Zen 5 EPYC) run GEMMs and integer GEMVs at different ratios to each other."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break
    except OSError:
        return ""
    if len(fields) < 3:
        return ""
    return f"{fields['vendor_id']} family {fields['cpu family']} model {fields['model']}"


def machine_class(flags: set[str] | None = None, arch: str | None = None) -> str:
    """e.g. "x86_64-avx512", "x86_64-avx2"; other architectures by name ("aarch64", "arm64")."""
    arch = arch or platform.machine()
    if arch.lower() not in ("x86_64", "amd64"):
        return arch.lower()
    flags = cpu_flags() if flags is None else flags
    return next(name for name, need in X86_CLASSES if need <= flags)
