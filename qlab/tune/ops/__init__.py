"""The op registry: which ops the tuner knows, built from the kernel packages that exist.

An op whose kernel package (or its `tunables.py`) is missing or fails to import is simply absent, so the tuner
works while the kernels are still being written. `blocked_matmul` is the tuner's own self-test op (see
builtin.py): always present, never in OPS, accepted by name."""

from __future__ import annotations

import importlib

from qlab.tune.ops.base import TunableOp

# op -> (class "module:Name", the tunables module with SPACES / DEFAULTS / valid)
KERNEL_OPS: dict[str, tuple[str, str]] = {
    "deltanet": ("qlab.tune.ops.deltanet:DeltaNetOp", "qlab.kernels.deltanet.tunables"),
    "attention_decode": ("qlab.tune.ops.attention:AttentionDecodeOp", "qlab.kernels.attention.tunables"),
    "attention_prefill": ("qlab.tune.ops.attention:AttentionPrefillOp", "qlab.kernels.attention.tunables"),
    "dequant_matmul": ("qlab.tune.ops.dequant:DequantMatmulOp", "qlab.kernels.dequant_matmul.tunables"),
}
SELF_TEST_OPS: dict[str, tuple[str, str]] = {
    "blocked_matmul": ("qlab.tune.ops.builtin:BlockedMatmulOp", "qlab.tune.ops.builtin"),
}
NOT_TUNED = ("naive",)   # references are never tuned


def _load(op: str):
    target, tunables_name = {**KERNEL_OPS, **SELF_TEST_OPS}[op]
    mod_name, cls_name = target.split(":")
    try:
        tunables = importlib.import_module(tunables_name)
        cls = getattr(importlib.import_module(mod_name), cls_name)
        if cls.entry:
            entry_mod, entry_fn = cls.entry.split(":")
            getattr(importlib.import_module(entry_mod), entry_fn)
    except Exception:  # a package not written yet, or broken mid-edit: the op is absent
        return None, None
    if not isinstance(getattr(tunables, "SPACES", None), dict):
        return None, None
    return cls, tunables


def available_ops() -> tuple[str, ...]:
    """Kernel ops with at least one tunable impl in this tree (the profile runner's list)."""
    return tuple(op for op in KERNEL_OPS if impl_ops(op))


def all_names() -> tuple[str, ...]:
    return tuple(KERNEL_OPS) + tuple(SELF_TEST_OPS)


def impl_ops(op: str) -> list[TunableOp]:
    """One TunableOp per tunable impl of `op` ([] when the op's package is absent): for a kernel op, the impls
    the kernel registry lists with a search space (references never); for the self-test op, its SPACES."""
    cls, tunables = _load(op)
    if cls is None:
        return []
    valid = getattr(tunables, "valid", None)
    if op in KERNEL_OPS:
        from qlab.kernels import registry

        return [cls(r.name, r.space(), r.defaults(), valid) for r in registry.impls(op)
                if r.tunables and not r.reference and r.space()]
    return [cls(impl, params, getattr(tunables, "DEFAULTS", {}).get(impl, {}), valid)
            for impl, params in tunables.SPACES.items() if impl not in NOT_TUNED]
