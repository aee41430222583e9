"""Load and validate device TOML files into frozen `Device` records (no torch: `qlab hw` must answer fast).

Packaged files live in qlab/hwdb/devices/<id>.toml; a user's files in $QLAB_HOME/devices/*.toml add devices or,
with `override = true`, replace packaged ones with the same id or take over a packaged alias (`extends = "<id>"`
starts from a packaged device and changes only the keys it sets). A malformed packaged file is an error; a
malformed user file is skipped with a warning naming it, so the built-in devices keep working. The file format is
documented in qlab/hwdb/README.md. Everything is parsed once per process.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from qlab import validate
from qlab.errors import QlabError, warn
from qlab.hwdb.device import Device
from qlab.paths import user_devices_dir

PACKAGED_DIR = Path(__file__).resolve().parent / "devices"

VENDORS = ("nvidia", "amd", "apple", "intel", "cpu")
KINDS = ("gpu", "unified", "cpu")
RATES = ("fp16_tflops", "bf16_tflops", "fp8_tflops", "int8_tops", "fp4_tflops", "fp32_tflops")
REQUIRED_STR = ("id", "name", "vendor", "kind", "architecture")
OPTIONAL_STR = ("memory_type", "compute_capability", "compute_unit_kind", "host_interface", "launch_date", "notes",
                "chip", "confidence")
POSITIVE = ("mem_bandwidth_gbs", "memory_gb", "boost_clock_mhz", "l2_cache_mb", *RATES, "fp16_fp16acc_tflops",
            "npu_tops", "tdp_w", "host_link_gbs", "peer_link_gbs", "price_usd")
TABLES = ("sources", "value_notes", "estimates")
OTHER = ("compute_units", "memory_options_gb", "gpu_memory_fraction", "aliases", "extends", "override")
ALLOWED = set(REQUIRED_STR) | set(OPTIONAL_STR) | set(POSITIVE) | set(TABLES) | set(OTHER)
NOT_VALUES = {"id", "aliases", "notes", "extends", "override", *TABLES}  # keys that need no source
# Upper bounds that no real device reaches by orders of magnitude: they catch a unit slip (MB/s for GB/s,
# 1e15 for TFLOPS), not an unusual device. Anything without an entry here is capped at 1e6.
UPPER = {"mem_bandwidth_gbs": 1e5, "memory_gb": 1e5, "boost_clock_mhz": 1e5, "price_usd": 1e8,
         "compute_units": 10**7}
SLUG = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")

# macOS lets the GPU wire only part of unified memory by default (Metal's recommendedMaxWorkingSetSize):
# 2/3 on small machines, 3/4 on large ones. Reported values: 16 GB -> 10922.67 MB, 32 GB -> 21845.34 MB (2/3),
# 64 GB -> ~49 GB (3/4). The 36 GB threshold between the two is an estimate (no machine reported at 36/48 GB).
APPLE_FRACTION_SOURCE = (
    "macOS default GPU wired limit (recommendedMaxWorkingSetSize): github.com/abetlen/llama-cpp-python/issues/687 "
    "(16 GB Mac: 10922.67 MB = 2/3), github.com/ggml-org/llama.cpp/pull/2011 (32 GB M1 Max: 21845.34 MB = 2/3), "
    "github.com/ggml-org/llama.cpp/issues/1870 (64 GB M2 Max: ~49 GB = 3/4); threshold 36 GB (est); "
    "raise it with `sudo sysctl iogpu.wired_limit_mb=N`"
)


def apple_gpu_memory_fraction(memory_gb: float) -> float:
    """The share of unified memory macOS lets Metal use by default for a machine with `memory_gb`."""
    return 2 / 3 if memory_gb <= 36 else 0.75


def _fail(path: Path | str, field: str, expected: str, got: Any = dataclasses.MISSING) -> QlabError:
    tail = "" if got is dataclasses.MISSING else f", got {got!r}"
    return QlabError(f"device file {path}: field {field!r}: expected {expected}{tail}")


def _source(path: Path | str, field: str) -> str:
    return validate.field_source(path, field, "device file")


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise QlabError(f"device file {path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise QlabError(f"device file {path}: not valid TOML: not UTF-8 text (byte {e.start})") from None
    except RecursionError:  # tomllib recurses per nesting level: `a = [[[[...` thousands deep
        raise QlabError(f"device file {path}: not valid TOML: nested too deeply") from None
    except OSError as e:
        raise QlabError(f"device file {path}: cannot read: {e.strerror}") from None


def _check_types(path: Path, raw: dict) -> None:
    for key, v in raw.items():
        if key not in ALLOWED:
            raise _fail(path, key, f"a known field ({', '.join(sorted(ALLOWED - {'extends'}))})", "unknown field")
        if key in REQUIRED_STR or key in OPTIONAL_STR or key == "extends":
            if not isinstance(v, str):
                raise _fail(path, key, "a string", v)
        elif key in POSITIVE:
            validate.number(v, _source(path, key), minimum=0, min_exclusive=True, maximum=UPPER.get(key, 1e6))
        elif key == "compute_units":
            validate.integer(v, _source(path, key), minimum=1, maximum=UPPER[key])
        elif key == "memory_options_gb":
            if not isinstance(v, list) or not v:
                raise _fail(path, key, "a non-empty list of positive numbers (GB)", v)
            for i, x in enumerate(v):
                validate.number(x, _source(path, f"{key}[{i}]"), minimum=0, min_exclusive=True,
                                maximum=UPPER["memory_gb"])
        elif key == "gpu_memory_fraction":
            validate.number(v, _source(path, key), minimum=0, min_exclusive=True, maximum=1)
        elif key == "override":
            if not isinstance(v, bool):
                raise _fail(path, key, "true or false", v)
        elif key == "aliases":
            if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
                raise _fail(path, key, "a list of non-empty strings", v)
        elif key in TABLES:
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise _fail(path, key, "a table of field = \"text\"", v)
            bad = [k for k in v if k != "default" and k not in ALLOWED]
            if bad:
                raise _fail(path, f"{key}.{bad[0]}", "the name of a device field")


def build_device(path: Path | str, raw: dict, *, base_sources: dict[str, str] | None = None,
                 own_keys: set[str] | None = None) -> Device:
    """Validate one parsed file and build the Device. A file that `extends` a packaged device arrives merged with
    it: `own_keys` are the keys the file itself sets, the rest keep `base_sources`."""
    path = Path(path)
    _check_types(path, raw)
    for key in REQUIRED_STR:
        if key not in raw or not raw[key].strip():
            raise _fail(path, key, "a non-empty string", "missing")
    if not SLUG.match(raw["id"]):
        raise _fail(path, "id", "a lowercase slug like 'rtx-3090' (a-z, 0-9, '-', '.')", raw["id"])
    if raw["vendor"] not in VENDORS:
        raise _fail(path, "vendor", f"one of {', '.join(VENDORS)}", raw["vendor"])
    if raw["kind"] not in KINDS:
        raise _fail(path, "kind", f"one of {', '.join(KINDS)}", raw["kind"])
    if "mem_bandwidth_gbs" not in raw:
        raise _fail(path, "mem_bandwidth_gbs", "the peak memory bandwidth in GB/s (a positive number)", "missing")
    options = tuple(sorted(float(x) for x in raw.get("memory_options_gb", [])))
    if "memory_gb" not in raw and not options:
        raise _fail(path, "memory_gb", "the memory capacity in GB (memory_gb or memory_options_gb)", "missing")
    memory_gb = float(raw.get("memory_gb", options[-1] if options else 0))
    if options and all(abs(memory_gb - o) > 1e-6 for o in options):
        raise _fail(path, "memory_gb", f"one of memory_options_gb {list(options)}", memory_gb)
    if not any(r in raw for r in RATES):
        raise _fail(path, "fp32_tflops", f"at least one compute rate ({', '.join(RATES)})", "none given")

    # Every value needs a source: its own line in [sources] or the file's `default` line.
    own = raw.get("sources", {})
    sources: dict[str, str] = {}
    for key in raw:
        if key in NOT_VALUES:
            continue
        if base_sources is not None and own_keys is not None and key not in own_keys:
            src = base_sources.get(key)
        else:
            src = own.get(key) or own.get("default")
        if not src or not src.strip():
            raise _fail(path, f"sources.{key}", "a source for this value ([sources] default = \"...\" or per field)",
                        "missing")
        sources[key] = src
    if options:
        sources.setdefault("memory_gb", sources["memory_options_gb"])

    fraction = raw.get("gpu_memory_fraction")
    if fraction is None and raw["vendor"] == "apple":
        fraction = apple_gpu_memory_fraction(memory_gb)
        sources["gpu_memory_fraction"] = APPLE_FRACTION_SOURCE

    kwargs = {k: raw[k] for k in raw if k in {f.name for f in dataclasses.fields(Device)} and k not in TABLES}
    for k in ("memory_options_gb", "memory_gb", "gpu_memory_fraction", "aliases"):
        kwargs.pop(k, None)
    for k in POSITIVE:
        if k in kwargs:
            kwargs[k] = float(kwargs[k])
    return Device(
        **kwargs,
        memory_gb=memory_gb,
        memory_options_gb=options or (memory_gb,),
        gpu_memory_fraction=float(fraction if fraction is not None else 1.0),
        aliases=tuple(raw.get("aliases", ())),
        sources=sources,
        value_notes=dict(raw.get("value_notes", {})),
        estimates=dict(raw.get("estimates", {})),
        origin=str(path),
    )


def with_memory(dev: Device, gb: float) -> Device:
    """The same device with another of its memory options chosen (Apple's GPU share follows the size)."""
    match = [o for o in dev.memory_options_gb if abs(o - gb) < 1e-6]
    if not match:
        opts = ", ".join(f"{o:g}" for o in dev.memory_options_gb)
        raise QlabError(f"device {dev.id!r} has no {gb:g} GB option; options: {opts}")
    fraction = dev.gpu_memory_fraction
    if dev.sources.get("gpu_memory_fraction") == APPLE_FRACTION_SOURCE:
        fraction = apple_gpu_memory_fraction(match[0])
    return dataclasses.replace(dev, memory_gb=match[0], gpu_memory_fraction=fraction)


@lru_cache(maxsize=1)
def _packaged() -> tuple[tuple[Path, dict], ...]:
    files = sorted(PACKAGED_DIR.glob("*.toml"))
    return tuple((p, read_toml(p)) for p in files)


@lru_cache(maxsize=8)
def _load(user_dir: str, _signature: tuple) -> tuple[dict[str, Device], dict[str, str]]:
    """All devices by id and the lookup table (lowercased id/alias -> id). `_signature` (names and mtimes of the
    user files) makes a changed user directory load again."""
    devices: dict[str, Device] = {}
    raw_by_id: dict[str, dict] = {}
    lookup: dict[str, str] = {}

    for path, raw in _packaged():
        dev = build_device(path, raw)
        if dev.id != path.stem:
            raise _fail(path, "id", f"the file name without .toml ({path.stem!r})", dev.id)
        if dev.id in devices:
            raise QlabError(f"device file {path}: id {dev.id!r} is already defined in {devices[dev.id].origin}")
        for key in (dev.id, *dev.aliases):
            prev = lookup.get(normalize(key))
            if prev is not None and prev != dev.id:
                raise QlabError(f"device file {path}: alias {key!r} is already used by {prev!r} "
                                f"({devices[prev].origin})")
            lookup[normalize(key)] = dev.id
        devices[dev.id], raw_by_id[dev.id] = dev, raw

    packaged_names = dict(lookup)  # what a user file may take over only with `override = true`
    user_ids: dict[str, Path] = {}
    udir = Path(user_dir)
    for path in sorted(udir.glob("*.toml")) if udir.is_dir() else ():
        try:
            dev, override = _user_device(path, raw_by_id, devices)
        except QlabError as e:  # one bad file must not break every command: skip it, say so
            warn(f"{e} (file skipped)")
            continue
        if dev.id in user_ids:
            warn(f"device file {path}: id {dev.id!r} is already defined in {user_ids[dev.id]} (file skipped)")
            continue
        if packaged_names.get(normalize(dev.id)) and not override:
            what = "the id" if dev.id in raw_by_id else "a name"
            warn(f"device file {path}: {dev.id!r} is {what} of built-in device "
                 f"{packaged_names[normalize(dev.id)]!r}; add `override = true` to replace it (file skipped)")
            continue
        kept = []
        for alias in dev.aliases:
            owner = packaged_names.get(normalize(alias))
            if owner and owner != dev.id and not override:
                warn(f"device file {path}: alias {alias!r} is a name of built-in device {owner!r}; "
                     "add `override = true` to take it over (alias ignored)")
            else:
                kept.append(alias)
        dev = dataclasses.replace(dev, aliases=tuple(kept))
        for key in [k for k, v in lookup.items() if v == dev.id]:  # a replaced device drops its old aliases
            del lookup[key]
        devices[dev.id] = dev
        user_ids[dev.id] = path
        for key in (dev.id, *dev.aliases):
            lookup[normalize(key)] = dev.id
    return devices, lookup


def _user_device(path: Path, raw_by_id: dict[str, dict], devices: dict[str, Device]) -> tuple[Device, bool]:
    """Read and build one user file (merged with its base when it `extends` a packaged device); also whether it
    says `override = true`."""
    raw = read_toml(path)
    base_sources, own_keys = None, None
    if "extends" in raw:
        own_keys = set(raw)
        base_id = raw["extends"]
        if not isinstance(base_id, str) or base_id not in raw_by_id:
            raise _fail(path, "extends", "the id of a packaged device", base_id)
        merged = {k: v for k, v in raw_by_id[base_id].items()}
        for k, v in raw.items():
            merged[k] = {**merged.get(k, {}), **v} if k in TABLES and k != "sources" and isinstance(v, dict) else v
        merged["sources"] = dict(raw.get("sources", {})) if isinstance(raw.get("sources", {}), dict) else raw["sources"]
        if raw.get("id", base_id) != base_id and "aliases" not in raw:
            merged["aliases"] = []  # a new device keeps none of its base's names
        base_sources = devices[base_id].sources
        merged.setdefault("id", base_id)
        raw = merged
    dev = build_device(path, raw, base_sources=base_sources, own_keys=own_keys)
    return dev, raw.get("override", False) is True


def normalize(name: str) -> str:
    return " ".join(name.lower().split())


def load_all() -> tuple[dict[str, Device], dict[str, str]]:
    udir = user_devices_dir()
    files = sorted(udir.glob("*.toml")) if udir.is_dir() else []
    return _load(str(udir), tuple(_stamp(p) for p in files))


def _stamp(path: Path) -> tuple:
    """What makes a changed user file load again; a dangling link or unreadable entry gets a stamp too (its
    read fails later with a warning naming it)."""
    try:
        st = path.stat()
    except OSError as e:
        return (path.name, e.errno)
    return (path.name, st.st_mtime_ns, st.st_size)
