"""Which devices and which measured profiles a report covers; every bad selection is a QlabError that says
what was given and what would have been accepted."""

from __future__ import annotations

import os

from qlab.errors import QlabError

# Shown when no selection is given: the cards and machines people weigh against each other for a ~27B model.
# The M3 Ultra at 96 GB: the configuration with a sourced price (its 512 GB top option has none).
DEFAULT_DEVICES = [
    "rtx-3090", "rtx-4090", "rtx-5090", "rtx-4060-ti-16gb", "rtx-a6000", "rtx-pro-6000-blackwell",
    "rx-7900-xtx", "m4-max-40c", "m3-ultra@96", "dgx-spark", "h100-sxm", "mi300x",
]


def select_devices(hw_ids: list[str] | None, vendor: str | None, all_devices: bool) -> list:
    """The Device records for `--hw`, `--vendor` or `--all` (at most one); the default set if none is given."""
    from qlab import hwdb

    chosen = [name for name, given in (("--hw", hw_ids is not None), ("--vendor", vendor is not None),
                                       ("--all", all_devices)) if given]
    if len(chosen) > 1:
        raise QlabError(f"choose devices with one of --hw, --vendor or --all, not {' and '.join(chosen)}")
    if hw_ids is not None:
        ids = [h.strip() for h in hw_ids if h and h.strip()]
        if not ids:
            raise QlabError("empty device selection: --hw needs at least one device id (see `qlab hw list`)")
        devices = [_with_option(hwdb.get_device(h), h) for h in ids]  # QlabError names the closest ids
    elif vendor is not None:
        everything = hwdb.all_devices()
        vendors = sorted({d.vendor for d in everything})
        devices = [d for d in everything if d.vendor == vendor.strip().lower()]
        if not devices:
            raise QlabError(f"no devices for vendor {vendor!r}; vendors: {', '.join(vendors)}")
    elif all_devices:
        devices = list(hwdb.all_devices())
        if not devices:
            raise QlabError("the hardware database is empty: no devices to report on")
    else:
        known = {d.id for d in hwdb.all_devices()}
        devices = [_with_option(hwdb.get_device(h), h) for h in DEFAULT_DEVICES if h.split("@")[0] in known]
        if not devices:
            raise QlabError("empty device selection: none of the default devices is in the hardware database; "
                            "use --hw IDS, --vendor V or --all")
    seen, unique = set(), []
    for d in devices:  # `--hw rtx-3090,"NVIDIA GeForce RTX 3090"` names one device
        if d.id not in seen:
            seen.add(d.id)
            unique.append(d)
    return unique


def _with_option(device, asked: str):
    """`m4-max-40c@64` keeps the hwdb id; the report needs one id per row, and one the predictor resolves to
    the same memory option, so the option goes into the id (and the name)."""
    if "@" not in asked:
        return device
    from dataclasses import replace

    return replace(device, id=f"{device.id}@{device.memory_gb:g}", name=f"{device.name}, {device.memory_gb:g} GB")


def load_profiles_dir(directory: str | os.PathLike, check_machine: bool = False) -> list[dict]:
    """Every `*.json` profile in `directory`, validated by the profile package (errors name file and field);
    a missing or unreadable directory is an error; with `check_machine`, so is another machine's profile."""
    from qlab.profile.schema import load_profiles_dir as load

    return load(directory, check_machine=check_machine)


def default_profile_dirs() -> list:
    """Where `qlab report --all` looks for profiles: the checkout's profiles/ and $QLAB_HOME/profiles."""
    from pathlib import Path

    from qlab.paths import qlab_home

    return [Path("profiles"), qlab_home() / "profiles"]


def default_profiles() -> tuple[list[dict], list[str]]:
    """The profiles in the default directories that were measured on this machine, each once (same device and
    creation time); and the files left out because another machine (or an older qlab) measured them, as
    `--profiles` would refuse those (qlab/profile/machine.py)."""
    from qlab.errors import QlabError
    from qlab.profile.machine import require_this_machine
    from qlab.profile.schema import load_profile

    seen, out, foreign = set(), [], []
    for d in default_profile_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.json")):
            doc = load_profile(f)
            try:
                require_this_machine(doc, f"profile {f}")
            except QlabError:
                foreign.append(str(f))
                continue
            key = ((doc.get("device") or {}).get("id"), doc.get("created"))
            if key not in seen:
                seen.add(key)
                out.append(doc)
    return out, foreign
