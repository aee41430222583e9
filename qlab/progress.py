"""Progress of a run made of weighted stages (`qlab profile`): a live bar on a terminal, plain lines elsewhere.

    with StageProgress({"detect": 1, "microbench": 5, "tune": 25}, console) as progress:
        progress.begin("detect"); ...; progress.finish("detect", "done")
        progress.finish("tune", "skipped")            # never begun: counts as done, takes no time

The bar moves inside a stage too: by the time the stage has taken against what it should take at the rate the
stages run so far went (weights are relative costs), capped at 90 % of the stage until it ends, so it never claims
more than it knows. The ETA is that same estimate, recomputed at every refresh (it never freezes), shown once
stages worth at least `min_weight_for_eta` have run in this process ("estimating" before: a 1-weight detect
stage says nothing about tuning). When the output is not a terminal, each begin and finish is one plain line
with the elapsed time and the ETA, so a log shows where a run is while it runs.
"""

from __future__ import annotations

import time

CAP = 0.9  # a running stage shows at most this share of its weight


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class StageProgress:
    def __init__(self, weights: dict[str, float], console=None, min_weight_for_eta: float = 5.0,
                 clock=time.monotonic, live: bool | None = None):
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.weights = dict(weights)
        self.console = console
        self.clock = clock
        self.min_weight_for_eta = min_weight_for_eta
        self.live = console.is_terminal if live is None else live
        self.started = clock()
        self.finished: dict[str, str] = {}
        self.ran_weight = 0.0     # weights of the stages run (not skipped or resumed) in this process
        self.ran_seconds = 0.0
        self.current: str | None = None
        self.current_since = 0.0
        self._live = None

    # -- estimates ---------------------------------------------------------------------------------------
    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def rate(self) -> float | None:
        """Seconds per unit of weight so far, or None until enough has run to say."""
        if self.ran_weight < self.min_weight_for_eta or self.ran_seconds <= 0:
            return None
        return self.ran_seconds / self.ran_weight

    def done_weight(self) -> float:
        done = sum(self.weights[n] for n in self.finished)
        rate = self.rate()
        if self.current and rate:
            expected = rate * self.weights[self.current]
            done += self.weights[self.current] * min(CAP, (self.clock() - self.current_since) / expected)
        return done

    def eta(self) -> float | None:
        rate = self.rate()
        if rate is None:
            return None
        later = sum(w for n, w in self.weights.items() if n not in self.finished and n != self.current)
        left = later * rate
        if self.current:
            left += max(0.0, rate * self.weights[self.current] - (self.clock() - self.current_since))
        return left

    def status(self) -> str:
        n = len(self.weights)
        index = list(self.weights).index(self.current) + 1 if self.current else len(self.finished)
        where = f"stage {index}/{n} {self.current}" if self.current else f"{len(self.finished)}/{n} stages"
        eta = self.eta()
        left = "ETA estimating" if eta is None else f"about {_clock(eta)} left"
        return f"{where} · {_clock(self.clock() - self.started)} elapsed · {left}"

    # -- events ------------------------------------------------------------------------------------------
    def begin(self, name: str) -> None:
        self.current, self.current_since = name, self.clock()
        if not self.live:
            self._line(f"{name}: started")

    def finish(self, name: str, status: str = "done") -> None:
        """A stage ended (done, failed), or was passed over (skipped, done earlier): those take no time."""
        if name == self.current:
            took = self.clock() - self.current_since
            self.ran_weight += self.weights.get(name, 0.0)
            self.ran_seconds += took
            self.current = None
            status = f"{status} in {_clock(took)}"
        self.finished[name] = status
        if not self.live:
            self._line(f"{name}: {status}")

    def _line(self, what: str) -> None:
        self.console.print(f"qlab profile: {what} ({self.status()})", markup=False, highlight=False)

    # -- the live bar ------------------------------------------------------------------------------------
    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_row("qlab profile", ProgressBar(total=self.total, completed=self.done_weight(), width=30),
                     f"{100 * self.done_weight() / self.total:3.0f}%", self.status())
        return grid

    def __enter__(self):
        if self.live:
            from rich.live import Live

            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=2,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        elif exc[0] is None:
            self._line("finished")
        return False
