"""Kernels validated before they are timed, on the device being profiled.

Each tunable impl of each op is first run against its op's reference at a small shape on this device (the
kernel registry's `validate` hook where the registry knows the impl, else the tuner's own reference check at
the op's smallest decode shape). An impl that fails is excluded from timing and recorded with its error in
`doc["kernel_validation"]`; the op is still timed with the impls that passed.
"""

from __future__ import annotations

from collections.abc import Callable

SMALL_SEQ = 64     # sequence-like dims (context, prompt length) at validation: small, other dims as the model has


def _registry_check(op: str, impl: str, device: str) -> tuple[bool, str | None]:
    """(handled, error): handled is False when the registry does not exist or does not know this impl."""
    try:
        from qlab.kernels import registry
    except ImportError:
        return False, None
    try:
        registry.get(op, impl)
    except Exception:  # noqa: BLE001 — an op or impl the registry does not list: the tuner's check runs
        return False, None
    try:
        registry.validate(op, impl, device)
    except registry.ImplUnavailableError as e:
        return True, f"unavailable: {str(e).splitlines()[0]}"
    except registry.ValidationError as e:
        return True, str(e).splitlines()[0]
    return True, None


def tuner_check(top, device: str) -> str | None:
    """Run `top` (a qlab.tune TunableOp) with its default config on a small shape against its reference."""
    from qlab.tune.tuner import CandidateFailed, check

    small = {d: min(int(top.dims[d]), SMALL_SEQ) for d in top.seq_dims if d in top.dims}
    shape = top.full_shape(small, device)
    try:
        inputs = top.make_inputs(shape, device)
        ref = top.reference(inputs)
        check(top, inputs, ref, dict(top.defaults), top.tolerance(shape))
    except CandidateFailed as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 — any failure excludes the impl; the profile goes on
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def validate_impl(op: str, top, device: str) -> str | None:
    """None when the impl gave the reference's answer on `device`; else the error, one line."""
    handled, err = _registry_check(op, top.impl, device)
    return err if handled else tuner_check(top, device)


def validated_ops(op: str, device: str, log: Callable[[str], None] = print,
                  check: Callable | None = None) -> tuple[list, dict]:
    """(the impls of `op` that passed on `device`, {impl: error} for those excluded)."""
    from qlab.tune.tuner import _get_ops

    check = check or validate_impl
    passed, failed = [], {}
    for top in _get_ops(op, device):
        err = check(op, top, device)
        if err is None:
            passed.append(top)
        else:
            failed[top.impl] = err[:300]
            log(f"{op}/{top.impl} excluded: {failed[top.impl]}")
    return passed, failed
