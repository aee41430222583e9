"""The profile document: versioned, checked against `profile.schema.json` on load and before every write."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from qlab.errors import QlabError

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("profile.schema.json")


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(schema)


def validate_profile(doc: dict, where: str = "profile") -> dict:
    """Raise QlabError naming `where` and the first bad field (as a JSON path) if `doc` breaks the schema."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        field = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise QlabError(f"{where}: field {field}: {e.message}{more}")
    return doc


def load_profile(path: str | Path) -> dict:
    """Read and validate a profile; errors name the file and the field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise QlabError(f"profile {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise QlabError(f"profile {path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise QlabError(f"profile {path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(doc, dict):
        raise QlabError(f"profile {path}: expected a JSON object, got {type(doc).__name__}")
    return validate_profile(doc, f"profile {path}")


def load_profiles_dir(directory: str | Path) -> list[dict]:
    """Every *.json profile in a directory (sorted by name); an unreadable directory is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise QlabError(f"profiles directory {directory}: not a directory")
    try:
        files = sorted(directory.glob("*.json"))
    except OSError as e:
        raise QlabError(f"profiles directory {directory}: cannot read: {e}") from None
    return [load_profile(f) for f in files]
