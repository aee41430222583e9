"""Prices per (device, memory configuration), from `prices.toml` next to this file.

    price_for(device)          # the Price of the configuration this Device is (its memory_gb), or None
    prices_for("rtx-3090")     # every quote for a device, oldest first

A price belongs to one memory configuration: the $599 Mac mini is the 16 GB M4, and a 32 GB M4 has no price
unless the table names one. Where several quotes match, the most recent is used. Nothing here guesses: a
configuration without a quote is unpriced. The device files carry no prices (a user device file may set
`price_usd`; it is then shown as a user-supplied price).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qlab.errors import QlabError

PRICES_FILE = Path(__file__).with_name("prices.toml")
KINDS = {"msrp": "launch MSRP", "street": "street price (new)", "used": "used price", "user": "user-supplied"}
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")
_FIELDS = {"device", "memory_gb", "usd", "kind", "date", "source", "url", "note"}


@dataclass(frozen=True)
class Price:
    device: str
    memory_gb: float
    usd: float
    kind: str        # msrp | street | used | user
    date: str        # YYYY-MM or YYYY-MM-DD ("" only for a user-supplied price)
    source: str
    url: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        """'launch MSRP 2020-09', 'used price 2026-05': which price it is and when it held."""
        return f"{KINDS[self.kind]} {self.date[:7]}".strip()


def _entry(path, i: int, raw: dict) -> Price:
    def fail(field: str, expected: str) -> QlabError:
        got = raw.get(field, "nothing")
        return QlabError(f"price file {path}: entry {i + 1} ({raw.get('device', '?')}): field {field!r}: "
                         f"expected {expected}, got {got!r}")

    extra = set(raw) - _FIELDS
    if extra:
        raise fail(sorted(extra)[0], f"only the fields {', '.join(sorted(_FIELDS))}")
    for key in ("device", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(key, "a non-empty string")
    for key in ("memory_gb", "usd"):
        v = raw.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise fail(key, "a positive number")
    if raw.get("kind") not in ("msrp", "street", "used"):
        raise fail("kind", "one of msrp, street, used")
    if not isinstance(raw.get("date"), str) or not _DATE.match(raw["date"]):
        raise fail("date", "a date YYYY-MM or YYYY-MM-DD")
    return Price(raw["device"], float(raw["memory_gb"]), float(raw["usd"]), raw["kind"], raw["date"],
                 raw["source"].strip(), raw.get("url", ""), raw.get("note", ""))


def load_prices(path: str | Path = PRICES_FILE) -> tuple[Price, ...]:
    """Every quote in the file, validated (a bad entry is a QlabError naming the entry and the field)."""
    return _load(str(path))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[Price, ...]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise QlabError(f"price file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise QlabError(f"price file {path}: not valid TOML: {e}") from None
    entries = doc.get("price", [])
    if not isinstance(entries, list):
        raise QlabError(f"price file {path}: expected [[price]] tables")
    return tuple(sorted((_entry(path, i, e) for i, e in enumerate(entries)), key=lambda p: (p.device, p.date)))


def prices_for(device_id: str, path: str | Path = PRICES_FILE) -> list[Price]:
    """Every quote for one device id (any configuration), oldest first."""
    base = device_id.split("@", 1)[0]
    return [p for p in load_prices(path) if p.device == base]


def price_for(device, path: str | Path = PRICES_FILE) -> Price | None:
    """The price of the configuration `device` is (its id, at its memory_gb): the most recent quote for it, or
    a user device file's own `price_usd`; None where nothing is known."""
    quotes = [p for p in prices_for(device.id, path) if abs(p.memory_gb - device.memory_gb) < 1e-6]
    if quotes:
        return max(quotes, key=lambda p: p.date)
    if getattr(device, "price_usd", None):
        return Price(device.id, device.memory_gb, float(device.price_usd), "user", "",
                     device.sources.get("price_usd", "") or "user device file")
    return None
