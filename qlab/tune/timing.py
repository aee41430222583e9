"""Timing one configuration: warm-up, then the median of repeats, with the last-level cache flushed between
repeats when the op's working set would otherwise stay in it (a decode step's 3 MiB state fits a 32 MiB L3,
and timing it warm would flatter it). CUDA: device events around each repeat; CPU: perf_counter.

Repeats adapt to the op: enough to fill `target_s` of measuring, between `min_repeats` and `max_repeats`,
and never past the caller's deadline, so a slow configuration costs its share of the budget and no more.
"""

from __future__ import annotations

import glob
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qlab import measure


def llc_bytes(device: str = "cpu") -> int:
    """Size of the last-level cache: L2 on a CUDA device; on the CPU the largest cache sysfs lists."""
    if device.startswith("cuda"):
        import torch

        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20) or 50 << 20)
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * mult)
        except ValueError:
            continue
    return max(sizes, default=32 << 20)


@dataclass
class Measurement:
    median_s: float
    samples: list[float] = field(default_factory=list)
    flushed: bool = False


class Timer:
    """Times zero-argument callables on one device. `working_set_bytes` decides whether to flush."""

    def __init__(self, device: str = "cpu", warmup: int = 1, min_repeats: int = 5, max_repeats: int = 15,
                 target_s: float = 0.1):
        self.device = device
        self.warmup = warmup
        self.min_repeats = min_repeats
        self.max_repeats = max_repeats
        self.target_s = target_s
        self._flush_buf = None
        self._llc: int | None = None
        self.calls = 0

    @property
    def llc(self) -> int:
        if self._llc is None:
            self._llc = llc_bytes(self.device)
        return self._llc

    def _flush(self) -> None:
        """Write a buffer twice the LLC's size: whatever the op left in the cache is evicted."""
        import torch

        if self._flush_buf is None:
            self._flush_buf = torch.empty(2 * self.llc // 4, dtype=torch.float32, device=self.device)
        self._flush_buf.fill_(1.0)

    def _sync(self) -> None:
        measure.sync(self.device)

    def _once(self, fn: Callable[[], object]) -> float:
        return measure.time_once(fn, self.device)

    def measure(self, fn: Callable[[], object], working_set_bytes: float = 0.0,
                deadline: float | None = None, give_up_above: float | None = None) -> Measurement:
        """Median of the repeats. `give_up_above`: a first sample slower than this ends the measurement (a
        candidate twice as slow as the best so far cannot win; measuring it well would only spend budget)."""
        self.calls += 1
        flush = 0 < working_set_bytes < self.llc
        for _ in range(self.warmup):
            fn()
        self._sync()
        samples: list[float] = []
        while True:
            if flush:
                self._flush()
                self._sync()
            samples.append(self._once(fn))
            n = len(samples)
            if n == 1 and give_up_above is not None and samples[0] > give_up_above:
                break
            if n >= self.max_repeats:
                break
            wanted = max(self.min_repeats, min(self.max_repeats, int(self.target_s / max(samples[0], 1e-9))))
            if n >= wanted:
                break
            if deadline is not None and n >= 1 and time.monotonic() + statistics.median(samples) > deadline:
                break
        return Measurement(statistics.median(samples), samples, flush)

    def compare(self, fns: list[Callable[[], object]], working_set_bytes: float = 0.0, rounds: int = 3,
                before: Callable[[int], object] | None = None, deadline: float | None = None) -> list[float]:
        """Medians of up to `rounds` measurements of each callable, taken in alternation (a, b, a, b, ...),
        so a change in the machine's load hits all of them alike; at least one round, more while the
        deadline allows. `before(i)` runs ahead of measuring fns[i]."""
        per: list[list[float]] = [[] for _ in fns]
        for r in range(rounds):
            if r and deadline is not None and time.monotonic() >= deadline:
                break
            for i, fn in enumerate(fns):
                if before is not None:
                    before(i)
                per[i].append(self.measure(fn, working_set_bytes, deadline).median_s)
        return [statistics.median(p) for p in per]
