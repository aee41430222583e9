"""The fleet's own record, `OUT/fleet.json`: which profile runs were asked, and how each slot ended.

Saved atomically after every event, so an interrupted fleet run keeps what finished; `--resume` re-runs
only the slots without a complete profile, and refuses a manifest made with other profile flags.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from qlab.errors import QlabError
from qlab.io import write_json_atomic

MANIFEST = "fleet.json"
SCHEMA = 1


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Manifest:
    def __init__(self, out: Path, doc: dict):
        self.out, self.doc = out, doc

    @classmethod
    def start(cls, out: Path, profile_argv: list[str], address: str, resume: bool) -> "Manifest":
        path = out / MANIFEST
        if not resume:
            if path.exists():
                raise QlabError(f"--out {out}: holds a fleet run already ({path}); "
                                f"continue it with --resume or choose another --out")
            return cls(out, {"schema": SCHEMA, "created": _now(), "address": address,
                             "profile_args": list(profile_argv), "slots": {}})
        if not path.is_file():
            raise QlabError(f"--resume: no fleet run in {out} (no {MANIFEST}); start one without --resume")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise QlabError(f"--resume: {path} is not a readable fleet manifest ({e})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("slots"), dict):
            raise QlabError(f"--resume: {path} is not a fleet manifest of schema {SCHEMA}")
        if doc.get("profile_args") != list(profile_argv):
            raise QlabError(f"--resume: that fleet run used profile flags {doc.get('profile_args')}; "
                            f"give the same flags, or start a new fleet run in another --out")
        return cls(out, doc)

    def complete(self, key: str) -> bool:
        """A slot whose profile finished and whose file is still there."""
        rec = self.doc["slots"].get(key, {})
        return rec.get("status") == "done" and (self.out / rec.get("profile", "\0")).is_file()

    def record(self, key: str, **fields) -> None:
        rec = self.doc["slots"].setdefault(key, {"attempts": 0})
        rec.update(fields, updated=_now())
        self.save()

    def save(self) -> None:
        self.doc["updated"] = _now()
        write_json_atomic(self.out / MANIFEST, self.doc)
