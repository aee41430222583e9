"""The options of a profile run and their defaults per mode (quick / default / full)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODES = {
    # mode: decode-loop layers (a slice of whole 3 DeltaNet + 1 attention groups), tokens, contexts, tune budget,
    # and at which contexts the whole model is decoded too where it fits ("first": the first context only)
    "quick": {"layers": 4, "tokens": 16, "contexts": [4096], "tune_budget_s": 20.0, "whole": "none"},
    "default": {"layers": 8, "tokens": 32, "contexts": [4096, 32768], "tune_budget_s": 120.0, "whole": "first"},
    "full": {"layers": 8, "tokens": 32, "contexts": [4096, 32768, 131072], "tune_budget_s": 600.0, "whole": "all"},
}
DEFAULT_QUANTS = ["Q4_K_M", "Q8_0"]
WHOLE_TOKENS = 8          # decode steps timed on the whole model (seconds each on a CPU; the median of 8 is steady)
WHOLE_PREFILL_TOKENS = 16


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
    width_scale: float = 1.0          # narrower synthetic model (tests: the whole-model path at full depth)
    vocab: int | None = None

    def __post_init__(self):
        if self.contexts is None:
            self.contexts = list(MODES[self.mode]["contexts"])

    @property
    def layers(self) -> int:
        return MODES[self.mode]["layers"]

    def whole_contexts(self) -> list[int]:
        """Contexts at which the whole model is decoded (where it fits) next to the slice."""
        how = MODES[self.mode]["whole"]
        return [] if how == "none" else self.contexts[:1] if how == "first" else list(self.contexts)

    @property
    def tokens(self) -> int:
        return MODES[self.mode]["tokens"]

    @property
    def tune_budget_s(self) -> float:
        base = MODES[self.mode]["tune_budget_s"]
        return min(base, 0.25 * self.budget_s) if self.budget_s else base

    def to_json(self) -> dict:
        return {"mode": self.mode, "quants": self.quants, "contexts": self.contexts, "budget_s": self.budget_s,
                "gpu": self.gpu, "model": self.model, "layers": self.layers, "tokens": self.tokens,
                **({"width_scale": self.width_scale, "vocab": self.vocab} if self.width_scale != 1.0 or self.vocab
                   else {})}
