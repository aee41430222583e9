"""The hardware database: sourced device specs (one TOML per device) and detection of the host's device.

    get_device("rtx-3090"), get_device("NVIDIA GeForce RTX 3090"), get_device("Apple M4 Max")
    get_device("m4-max-40c@64")        # a memory option: 64 GB instead of the largest
    get_device("cpu-host")             # this machine's CPU (detected; a user file may override it)
    all_devices(), device_ids()

Importing this package reads no files and imports no torch; the first lookup parses every file once.
"""

from __future__ import annotations

import dataclasses

from qlab.errors import QlabError, unknown
from qlab.hwdb.device import Device
from qlab.hwdb.loader import load_all, normalize, with_memory

__all__ = ["Device", "get_device", "all_devices", "device_ids", "device_to_dict", "CPU_HOST_ID"]

CPU_HOST_ID = "cpu-host"


def _split_option(value: str) -> tuple[str, float | None]:
    if "@" not in value:
        return value, None
    name, _, gb = value.rpartition("@")
    try:
        size = float(gb.strip().lower().removesuffix("gb"))
    except ValueError:
        raise QlabError(f"device {value!r}: expected ID@GB with GB a number, e.g. 'm4-max-40c@64'") from None
    return name, size


def get_device(id_or_alias: str) -> Device:
    """The device with this id or alias (case-insensitive); `ID@GB` picks one of its memory options.
    Unknown names raise QlabError naming the closest ids."""
    if not isinstance(id_or_alias, str) or not id_or_alias.strip():
        raise QlabError(f"device: expected an id or name such as 'rtx-3090', got {id_or_alias!r}")
    name, size = _split_option(id_or_alias.strip())
    devices, lookup = load_all()
    dev_id = lookup.get(normalize(name))
    if dev_id is not None:
        dev = devices[dev_id]
    elif normalize(name) == CPU_HOST_ID:
        from qlab.hwdb.detect import detect_cpu  # reads /proc only when asked for

        dev = detect_cpu().device
    else:
        raise unknown("device", id_or_alias, [*devices, CPU_HOST_ID])
    return with_memory(dev, size) if size is not None else dev


def all_devices() -> list[Device]:
    """Every device in the database (packaged and user files), sorted by id; `cpu-host` only if a user file
    defines it (detection builds it otherwise)."""
    devices, _ = load_all()
    return [devices[k] for k in sorted(devices)]


def device_ids() -> list[str]:
    return sorted(load_all()[0])


def device_to_dict(dev: Device) -> dict:
    """Every field (tuples as lists) plus the derived `usable_memory_gb` and `peak_tflops`, for JSON."""
    d = dataclasses.asdict(dev)
    d["memory_options_gb"] = list(dev.memory_options_gb)
    d["aliases"] = list(dev.aliases)
    d["usable_memory_gb"] = round(dev.usable_memory_gb, 3)
    d["peak_tflops"] = dev.peak_tflops
    return d
