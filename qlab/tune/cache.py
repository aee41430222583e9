"""The tuner's persistent cache: one JSON file (`qlab.paths.tune_cache_path()`), entries keyed by everything
that can change the answer — device id, driver/toolkit, torch and triton versions, the kernel package's source
hash, op, impl, dtype and shape bucket.

Writes take an exclusive fcntl lock on a sidecar `<file>.lock`, re-read the file, merge their entries into it
and replace it atomically (qlab.io), so two processes tuning at once both land. Never fatal:
- a corrupt file is reported with a warning and ignored (it is replaced on the next write);
- a file of an older schema is ignored and copied to `<file>.schema<N>.bak` before the first write replaces it;
- a file of a newer schema (a newer qlab wrote it) is never overwritten: it is read-only for this process,
  whose results stay in memory;
- an entry that is not an object, or whose config is not a flat object of numbers/strings, is skipped with a
  warning naming its key (the tuner also drops a cached config outside the impl's space, and re-tunes);
- a cache that cannot be written warns once and keeps answers in memory for the rest of the process.
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


@lru_cache(maxsize=None)
def source_hash_of(package: str) -> str:
    """sha256 of a kernel package's source files (.py, .cu, .cuh), so an edited kernel is re-tuned ("none" for
    a package that is not there). Once per process: a kernel edited while a process runs is not seen by it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return "none"
    return source_hash(list(spec.submodule_search_locations)[0])


def source_hash(package_dir: str | os.PathLike) -> str:
    """sha256 of a kernel package's source files (.py, .cu, .cuh), so an edited kernel is re-tuned."""
    import hashlib

    h = hashlib.sha256()
    root = Path(package_dir)
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".cu", ".cuh") and "__pycache__" not in p.parts and p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


_SCALAR = (int, float, str, bool)


def entry_problem(entry: Any) -> str:
    """"" for a well-formed entry, else what is wrong with it (one phrase)."""
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object"
    cfg = entry.get("config")
    if cfg is not None and (not isinstance(cfg, dict) or not all(isinstance(v, _SCALAR) for v in cfg.values())):
        return f"has config {cfg!r}, not a flat object of numbers and strings"
    impl = entry.get("impl")
    if impl is not None and not isinstance(impl, str):
        return f"has impl {impl!r}, not a string"
    return ""


def threads_fields(device: str) -> dict:
    """Key fields of the decode loop's thread count chosen by `qlab tune --op decode` on this machine."""
    return {**environment(str(device).split(":")[0]), "op": "decode", "choice": "threads"}


def tuned_threads(device: str = "cpu") -> int | None:
    """The thread count `qlab tune --op decode` chose on this machine, or None."""
    hit = default_cache().get(make_key(threads_fields(device)))
    n = hit.get("threads") if isinstance(hit, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None


_DEFAULT: dict[str, tuple] = {}   # path -> (TuneCache, the file's (mtime, size) when it was last read)


def default_cache() -> "TuneCache":
    """The process's cache at qlab.paths.tune_cache_path(), re-read when the file changes (another process, or
    another TuneCache in this one, wrote to it): what the kernel registry's resolve() reads."""
    from qlab.paths import tune_cache_path

    path = str(tune_cache_path())
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    cache, seen = _DEFAULT.get(path, (None, None))
    if cache is None or seen != stamp:
        cache = TuneCache(path)
        _DEFAULT[path] = (cache, stamp)
    return cache


class TuneCache:
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            from qlab.paths import tune_cache_path
            path = tune_cache_path()
        self.path = Path(path)
        self.memory: dict[str, dict] = {}     # this process's entries (and, if unwritable, its only cache)
        self.writable = True
        self._disk: dict[str, dict] | None = None
        self._backed_up = False

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
        except (ValueError, RecursionError) as e:
            if warn:
                warnings.warn(f"tune cache {self.path} is corrupt ({e}); ignoring it", TuneCacheWarning,
                              stacklevel=3)
            return {}
        schema = data.get("schema")
        if schema != SCHEMA:
            newer = isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA
            if newer:   # a newer qlab's file: never overwritten by this one
                self.writable = False
            if warn:
                what = ("a newer qlab wrote it: it is kept as it is, and this run's results stay in memory" if newer
                        else "ignoring it (stale; it is backed up before being replaced)")
                warnings.warn(f"tune cache {self.path} has schema {schema!r}, expected {SCHEMA}; {what}",
                              TuneCacheWarning, stacklevel=3)
            return {}
        out = {}
        for k, v in data["entries"].items():
            why = entry_problem(v)
            if why:
                if warn:
                    warnings.warn(f"tune cache {self.path}: skipping entry {k!r}: it {why}", TuneCacheWarning,
                                  stacklevel=3)
                continue
            out[k] = v
        return out

    def _schema_of_file(self):
        try:
            return json.loads(self.path.read_text()).get("schema", "missing")
        except (OSError, ValueError, AttributeError, RecursionError):
            return None

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
                if not self.writable:   # the file turned out to be a newer schema's: left alone
                    warnings.warn(f"tune cache {self.path} was written by a newer qlab (schema "
                                  f"{self._schema_of_file()!r}); not overwriting it: results stay in memory",
                                  TuneCacheWarning, stacklevel=2)
                    return
                schema = self._schema_of_file()
                if schema is not None and schema != SCHEMA and not self._backed_up:
                    import shutil

                    shutil.copy2(self.path, self.path.with_name(f"{self.path.name}.schema{schema}.bak"))
                    self._backed_up = True
                merged[key] = entry
                write_json_atomic(self.path, {"schema": SCHEMA, "entries": merged})
                self._disk = merged
        except OSError as e:
            self.writable = False
            warnings.warn(f"tune cache {self.path} is not writable ({e}); keeping results in memory for this "
                          "run only", TuneCacheWarning, stacklevel=2)
