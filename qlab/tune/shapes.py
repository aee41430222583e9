"""Shapes to tune at: named presets (`qwen3.6-27b`) and a SPEC syntax for custom ones.

SPEC: shapes separated by `;`, each a comma list of `dim=value` overriding the op's Qwen3.6-27B defaults,
e.g. `T=4096` or `T=1,B=8;T=2048`. `dtype=fp32|bf16|fp16` is accepted by every op. Unknown dims, values that
are not positive integers, or an empty spec raise QlabError naming the offending part.
"""

from __future__ import annotations

from qlab.errors import QlabError, unknown

PRESETS = ("qwen3.6-27b",)
DTYPES = ("fp32", "bf16", "fp16")


def _op_class(op: str):
    from qlab.tune.ops import _load, all_names

    if op not in all_names():
        raise unknown("op", op, all_names())
    cls, _ = _load(op)
    if cls is None:
        raise QlabError(f"op {op!r}: its kernel package (or its tunables.py) is not in this tree yet")
    return cls


def check_shape(op: str, shape: dict) -> dict:
    cls = _op_class(op)
    for k, v in shape.items():
        if k == "dtype":
            if v not in DTYPES:
                raise QlabError(f"shape {op}: dtype {v!r}; expected one of {', '.join(DTYPES)}")
        elif k not in cls.dims:
            raise unknown(f"dimension of {op} (dims: {', '.join(cls.dims)}, dtype)", k, list(cls.dims) + ["dtype"])
        elif isinstance(cls.dims[k], int) and (not isinstance(v, int) or v <= 0):
            raise QlabError(f"shape {op}: {k}={v!r}; expected a positive integer")
    return shape


def preset_shapes(op: str, preset: str = "qwen3.6-27b") -> list[dict]:
    cls = _op_class(op)
    if preset not in PRESETS:
        raise unknown("shape preset", preset, PRESETS)
    return [dict(s) for s in cls.presets.get(preset, [{}])]


def parse_spec(op: str, spec: str) -> list[dict]:
    """`qwen3.6-27b` or `dim=v,...;dim=v,...` -> a list of shape dicts (overrides of the op's defaults)."""
    if spec in PRESETS:
        return preset_shapes(op, spec)
    shapes = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        shape: dict = {}
        for item in part.split(","):
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name or not value:
                raise QlabError(f"--shapes {spec!r}: {item.strip()!r} is not dim=value "
                                "(expected e.g. T=4096 or T=1,B=8;T=2048, or the preset qwen3.6-27b)")
            shape[name] = int(value) if value.lstrip("-").isdigit() else value
        shapes.append(check_shape(op, shape))
    if not shapes:
        raise QlabError(f"--shapes {spec!r}: no shape given (expected e.g. T=4096, or qwen3.6-27b)")
    return shapes
