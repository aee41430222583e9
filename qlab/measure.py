"""One home for the ways qlab measures: waiting for a device, timing a callable, the read and copy bandwidth
probes, and setting the CPU thread count for a stretch of code.

    from qlab import measure
    measure.sync("cuda")                                   # wait for the queued work (no-op on the CPU)
    times = measure.time_calls(fn, "cpu", warmup=1, repeats=5)   # seconds per call (device events on CUDA)
    with measure.threads(1): ...                           # torch's intra-op threads, restored afterwards
    measure.read_bandwidth_gbs("cpu")                      # streaming-read GB/s (best of repeats)
    with measure.OthersCpu() as o: ...                     # o.share: CPU time other processes took meanwhile

Nothing heavy at import: torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator


def device_kind(device) -> str:
    """"cpu", "cuda" or "mps" for a device string ("cuda:1"), a torch.device or a tensor's device."""
    return str(getattr(device, "type", device)).split(":")[0]


def sync(device="cpu") -> None:
    """Wait until the work queued on `device` has finished (CUDA, MPS); the CPU runs eagerly."""
    kind = device_kind(device)
    if kind == "cuda":
        import torch

        torch.cuda.synchronize(device if str(device) != "cuda" else None)
    elif kind == "mps":
        import torch

        torch.mps.synchronize()


def time_once(fn: Callable[[], object], device="cpu") -> float:
    """Seconds one call of fn takes on `device`: CUDA events around it on a GPU (the device's own time, the
    host free to queue), perf_counter around a synchronised call elsewhere."""
    if device_kind(device) == "cuda":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def time_calls(fn: Callable[[], object], device="cpu", warmup: int = 1, repeats: int = 5) -> list[float]:
    """Seconds per call of fn, `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    return [time_once(fn, device) for _ in range(repeats)]


def median_s(fn: Callable[[], object], device="cpu", warmup: int = 1, repeats: int = 5) -> float:
    return statistics.median(time_calls(fn, device, warmup, repeats))


@contextlib.contextmanager
def stopwatch(device="cpu") -> Iterator[list]:
    """with stopwatch(dev) as t: ... -> t[0] is the block's wall time in seconds, the device synchronised
    on both sides (for a stretch of code rather than one callable)."""
    out: list[float] = []
    sync(device)
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        sync(device)
        out.append(time.perf_counter() - t0)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads (None or 0: leave them), then put back what was there."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads for the rest of the process (None: leave them); returns the count."""
    import torch

    if n:
        if int(n) < 1:
            raise ValueError(f"threads: {n}; expected a positive count")
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def read_bandwidth_gbs(device="cpu", nbytes: int = 512 << 20, repeats: int = 5) -> float:
    """GB/s of a streaming read on `device`: a float32 sum over `nbytes` (far larger than any cache), the best
    of `repeats` (the rate a bandwidth-bound kernel can hope for, with torch's threads)."""
    import torch

    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    return x.numel() * 4 / min(time_calls(lambda: x.sum(), device, 1, repeats)) / 1e9


def copy_bandwidth_gbs(device="cpu", nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """GB/s of dst.copy_(src) over `nbytes`, counting bytes read plus bytes written (best of `repeats`)."""
    import torch

    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.zeros_like(src)
    return 2 * src.numel() * 4 / min(time_calls(lambda: dst.copy_(src), device, 1, repeats)) / 1e9


# Other processes (or a hypervisor's steal) taking more than this share of the machine's CPUs make a timing
# answer for that moment, not for the machine: a 2-thread decode on 2 cores runs 3-20x slower per op while a
# neighbour computes. Profiles re-measure and flag such runs; the decode tuner does not cache a thread count.
CONTENDED = 0.25


class OthersCpu:
    """Context manager: the share of this machine's CPU time that other processes (and, in a VM, the
    hypervisor's steal) took while it was open — busy ticks from /proc/stat minus this process's own CPU
    time, over wall time x CPUs. A 2-thread decode on 2 cores runs 3-20x slower per op while a neighbour
    computes, so a profile must know. `share` stays None where /proc/stat cannot be read (not Linux)."""

    share: float | None = None

    @staticmethod
    def _busy() -> tuple[float, int] | None:
        import os

        try:
            with open("/proc/stat") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        v = [int(x) for x in lines[0].split()[1:]]
        busy = sum(v[:3]) + sum(v[5:8])   # user nice system (idle iowait) irq softirq steal
        cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
        return busy / os.sysconf("SC_CLK_TCK"), cpus

    def __enter__(self):
        import os

        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc):
        import os

        busy, wall = self._busy(), time.perf_counter() - self.t0
        if busy is not None and self.busy0 is not None and wall > 0:
            others = (busy[0] - self.busy0[0]) - (sum(os.times()[:2]) - self.own0)
            self.share = min(1.0, max(0.0, others / (wall * busy[1])))
