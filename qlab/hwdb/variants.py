"""Which name picked which variant: `a100-80gb` resolves to the SXM card and "Apple M4 Max" to the 40-core
GPU, silently; `ambiguity(name)` says so, listing the variants the name also fits.

A name is ambiguous when it is not a device id and every word of it also describes other devices that share
the chosen device's id stem (the id less its last part: `a100-80gb` for `a100-80gb-sxm`, `m4-max` for
`m4-max-40c`): "RTX 3090" is not ambiguous (the 3090 Ti's stem is `rtx-3090`), "H100" is.
"""

from __future__ import annotations

import re


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def variants(name: str) -> list[str]:
    """The ids `name` could mean (the chosen one first), or [] where it names one device only."""
    from qlab.errors import QlabError
    from qlab.hwdb import all_devices, get_device
    from qlab.hwdb.loader import normalize

    base = name.split("@", 1)[0].strip()
    try:
        chosen = get_device(base)
    except QlabError:
        return []  # an unknown name is the lookup's error to report, with its closest ids
    if normalize(base) == chosen.id or "-" not in chosen.id:
        return []
    stem = chosen.id.rsplit("-", 1)[0]
    asked = _words(base)
    out = [d.id for d in all_devices()
           if d.id != chosen.id and d.id.rsplit("-", 1)[0] == stem
           and asked <= _words(" ".join((d.id, d.name, *d.aliases)))]
    return [chosen.id, *out] if out else []


def ambiguity(name: str) -> str | None:
    """'"a100-80gb" could be a100-80gb-sxm or a100-80gb-pcie; using a100-80gb-sxm (name one id to choose)', or
    None where the name is not ambiguous."""
    ids = variants(name)
    if not ids:
        return None
    return (f"{name!r} could be {' or '.join(ids)}; using {ids[0]} (give the id to choose another)")
