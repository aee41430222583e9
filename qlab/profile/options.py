"""The options of a profile run and their defaults per mode (quick / default / full)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODES = {
    # mode: decode-loop layers (a slice of whole 3 DeltaNet + 1 attention groups), tokens, contexts, tune budget
    "quick": {"layers": 4, "tokens": 16, "contexts": [4096], "tune_budget_s": 20.0},
    "default": {"layers": 8, "tokens": 32, "contexts": [4096, 32768], "tune_budget_s": 120.0},
    "full": {"layers": 64, "tokens": 32, "contexts": [4096, 32768, 131072], "tune_budget_s": 600.0},
}
DEFAULT_QUANTS = ["Q4_K_M", "Q8_0"]


@dataclass
class ProfileOptions:
    gpu: str = "auto"
    mode: str = "default"
    quants: list[str] = field(default_factory=lambda: list(DEFAULT_QUANTS))
    contexts: list[int] | None = None
    out: Path = Path("profiles")
    budget_s: float | None = None
    report: bool = False
    resume: Path | None = None
    model: str = "qwen3.6-27b"
    threads: int | None = None

    def __post_init__(self):
        if self.contexts is None:
            self.contexts = list(MODES[self.mode]["contexts"])

    @property
    def layers(self) -> int:
        return MODES[self.mode]["layers"]

    @property
    def tokens(self) -> int:
        return MODES[self.mode]["tokens"]

    @property
    def tune_budget_s(self) -> float:
        base = MODES[self.mode]["tune_budget_s"]
        return min(base, 0.25 * self.budget_s) if self.budget_s else base

    def to_json(self) -> dict:
        return {"mode": self.mode, "quants": self.quants, "contexts": self.contexts, "budget_s": self.budget_s,
                "gpu": self.gpu, "model": self.model, "layers": self.layers, "tokens": self.tokens}
