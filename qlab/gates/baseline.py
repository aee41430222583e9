"""Where the baselines live: one file per machine class, `benchmarks/baseline/<class>.json`.

Each is pytest-benchmark JSON (the timing gate's baseline: per benchmark the median over the rebuild's runs of
its fastest sample, with `extra_info` spread / limit / runs) plus a `qlab_baseline` object: the class, how it was
measured, and `peer`: per quant the qlab/llama.cpp decode ratio (median over runs) and its runs.
`benchmarks/rebuild_baseline.py` writes it; nothing else does.
"""

from __future__ import annotations

from pathlib import Path

from qlab.gates.compare import load_run

BASELINE_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "baseline"


def baseline_path(cls: str) -> Path:
    return BASELINE_DIR / f"{cls}.json"


def stored_classes() -> list[str]:
    """The machine classes with a stored baseline."""
    return sorted(p.stem for p in BASELINE_DIR.glob("*.json")
                  if isinstance(load_run(p).get("qlab_baseline"), dict) and load_run(p)["qlab_baseline"].get("class"))


def load_class(cls: str) -> dict | None:
    """The baseline of machine class `cls`, or None when none is stored."""
    p = baseline_path(cls)
    return load_run(p) if p.exists() else None


def peer_ratios(doc: dict) -> dict[str, float]:
    """quant -> stored qlab/llama.cpp decode ratio of a baseline document."""
    peer = (doc.get("qlab_baseline") or {}).get("peer") or {}
    return {q: float(v["ratio"]) for q, v in peer.items() if isinstance(v, dict) and "ratio" in v}
