"""The tuner's persistent cache: one JSON file (`qlab.paths.tune_cache_path()`), entries keyed by everything
that can change the answer — device id, driver/toolkit, torch and triton versions, the kernel package's source
hash, op, impl, dtype and shape bucket.

Writes take an exclusive fcntl lock on a sidecar `<file>.lock`, re-read the file, merge their entries into it
and replace it atomically (qlab.io), so two processes tuning at once both land. A corrupt file, or one from
another schema version, is reported with a warning and ignored (it is replaced on the next write); a cache
that cannot be written warns once and keeps answers in memory for the rest of the process. Never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA = 1


class TuneCacheWarning(UserWarning):
    pass


def make_key(fields: Mapping[str, Any]) -> str:
    """A stable, readable key: sorted `name=value` pairs joined by `|`."""
    return "|".join(f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
                    for k, v in sorted(fields.items()))


@lru_cache(maxsize=None)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=None)
def environment(device: str) -> dict[str, str]:
    """The part of the key that describes the machine and its software."""
    import torch

    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = "none"
    env = {"torch": torch.__version__, "triton": triton_version}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env["device"] = f"{props.name} sm_{props.major}{props.minor} {props.multi_processor_count}SM"
        env["toolkit"] = f"cuda {torch.version.cuda}"
        try:
            import pynvml
            pynvml.nvmlInit()
            driver = pynvml.nvmlSystemGetDriverVersion()
            env["driver"] = driver.decode() if isinstance(driver, bytes) else str(driver)
        except Exception:
            env["driver"] = "unknown"
    else:
        env["device"] = f"cpu {_cpu_name()} x{os.cpu_count()}"
        env["toolkit"] = "none"
        env["driver"] = "none"
    return env


class TuneCache:
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            from qlab.paths import tune_cache_path
            path = tune_cache_path()
        self.path = Path(path)
        self.memory: dict[str, dict] = {}     # this process's entries (and, if unwritable, its only cache)
        self.writable = True
        self._disk: dict[str, dict] | None = None

    # -- reading ---------------------------------------------------------------------------------------------
    def _read_file(self, warn: bool = True) -> dict[str, dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            if warn:
                warnings.warn(f"tune cache {self.path}: cannot read it ({e}); ignoring it", TuneCacheWarning,
                              stacklevel=3)
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
                raise ValueError("no 'entries' object")
        except ValueError as e:
            if warn:
                warnings.warn(f"tune cache {self.path} is corrupt ({e}); ignoring it", TuneCacheWarning,
                              stacklevel=3)
            return {}
        if data.get("schema") != SCHEMA:
            if warn:
                warnings.warn(f"tune cache {self.path} has schema {data.get('schema')!r}, expected {SCHEMA}; "
                              "ignoring it (stale)", TuneCacheWarning, stacklevel=3)
            return {}
        return {k: v for k, v in data["entries"].items() if isinstance(v, dict)}

    def get(self, key: str) -> dict | None:
        if key in self.memory:
            return self.memory[key]
        if self._disk is None:
            self._disk = self._read_file()
        return self._disk.get(key)

    def warn_if_stale(self, fields: Mapping[str, Any], same: tuple[str, ...]) -> None:
        """On a miss: if an entry for the same `same` fields exists under other versions (a kernel edit, a new
        torch or driver), say what changed, so a re-tune is not a surprise. It stays in the file, unused."""
        if self._disk is None:
            self._disk = self._read_file()
        for entry in list(self._disk.values()) + list(self.memory.values()):
            old = entry.get("key_fields")
            if not isinstance(old, dict) or any(old.get(k) != fields.get(k) for k in same):
                continue
            changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in sorted(fields.items()) if old.get(k) != v]
            if changed:
                warnings.warn(f"tune cache: the entry for {fields.get('op')}/{fields.get('impl')} at "
                              f"{fields.get('bucket')} is stale ({'; '.join(changed)}); re-tuning",
                              TuneCacheWarning, stacklevel=3)
                return

    # -- writing ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(self, key: str, entry: dict) -> None:
        entry = dict(entry, written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.memory[key] = entry
        if not self.writable:
            return
        from qlab.io import write_json_atomic

        try:
            with self._locked():
                merged = self._read_file(warn=False)   # what other processes wrote since we last looked
                merged[key] = entry
                write_json_atomic(self.path, {"schema": SCHEMA, "entries": merged})
                self._disk = merged
        except OSError as e:
            self.writable = False
            warnings.warn(f"tune cache {self.path} is not writable ({e}); keeping results in memory for this "
                          "run only", TuneCacheWarning, stacklevel=2)
