"""Memory the loop may use: what is available (checked before allocating) and what the process peaked at."""

from __future__ import annotations

import os
import resource
import sys

from qlab.errors import QlabError

GB = 1e9


def available_bytes() -> int | None:
    """Memory a new allocation can get without swapping: MemAvailable on Linux, free+inactive elsewhere
    (psutil when installed); None when unknown."""
    try:
        import psutil  # optional

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    avail = _proc_kib("/proc/meminfo", "MemAvailable:")
    if avail is not None:
        return avail
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _proc_kib(path: str, key: str) -> int | None:
    """Bytes of the `key: N kB` line of a /proc file (Linux); None where there is no such file or line."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class DoesNotFitError(QlabError, MemoryError):
    """Not enough memory for what was asked: a QlabError for the CLI (one line, exit 2) and a MemoryError for
    callers that treat out-of-memory as a result (the profile runner records it and moves on)."""


def check_fits(what: str, needed: int, available: int | None = None, margin: float = 0.95) -> None:
    """Raise a QlabError naming the size needed and what is available, before anything is allocated."""
    available = available_bytes() if available is None else available
    if available is not None and needed > margin * available:
        raise DoesNotFitError(f"{what} needs {needed / GB:.2f} GB but only {available / GB:.2f} GB of memory is "
                        f"available; use a smaller --layers slice, a smaller quant or --width-scale")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far. Linux: VmHWM, the high-water mark of this process's own
    memory map (ru_maxrss would carry over the parent's peak when the process was started by vfork + exec, as
    subprocess does); elsewhere ru_maxrss (KiB on Linux, bytes on macOS)."""
    hwm = _proc_kib("/proc/self/status", "VmHWM:")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()
