"""qlab's autotuner: searches each kernel's configurations per device and shape bucket, checks every candidate
against the reference, and remembers the answers in a JSON cache (README.md).

    from qlab.tune import tune, OPS
    results = tune("deltanet", {"T": 512}, device="cpu", budget_s=30)   # list[TuneResult]; .to_dict() is JSON

`OPS` lists the kernel ops present in this tree (an op whose package is not written yet is absent); the
tuner's self-test op `blocked_matmul` is accepted by name too. Heavy imports happen on first use.
"""

from __future__ import annotations

__all__ = ["tune", "tune_shapes", "TuneResult", "OPS"]


def __getattr__(name: str):
    if name == "OPS":
        from qlab.tune.ops import available_ops

        return available_ops()
    if name in ("tune", "tune_shapes", "TuneResult"):
        from qlab.tune import tuner

        return getattr(tuner, name)
    raise AttributeError(f"module 'qlab.tune' has no attribute {name!r}")
