"""The profile document: versioned, checked against `profile.schema.json` on load and before every write."""

from __future__ import annotations

import json
import math
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


def _first_non_finite(value, path: tuple = ()) -> tuple | None:
    """The JSON path of the first NaN or infinity in `value` (JSON Schema's "number" lets them through)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _first_non_finite(v, (*path, k))
        if found is not None:
            return found
    return None


def validate_profile(doc: dict, where: str = "profile") -> dict:
    """Raise QlabError naming `where` and the first bad field (as a JSON path) if `doc` breaks the schema."""
    bad = _first_non_finite(doc)
    if bad is not None:
        value = doc
        for k in bad:
            value = value[k]
        raise QlabError(f"{where}: field {'/'.join(map(str, bad))}: expected a finite number, got {value}")
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        field = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise QlabError(f"{where}: field {field}: {e.message}{more}")
    return doc


def read_json_object(path: str | Path, what: str = "profile") -> dict:
    """A JSON object from `path`; every failure is one line naming `what` and the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise QlabError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise QlabError(f"{what} {path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise QlabError(f"{what} {path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:  # `[[[[...` thousands deep
        raise QlabError(f"{what} {path}: not JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise QlabError(f"{what} {path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def load_profile(path: str | Path) -> dict:
    """Read and validate a profile; errors name the file and the field."""
    return validate_profile(read_json_object(path), f"profile {path}")


def load_profiles_dir(directory: str | Path, check_machine: bool = False) -> list[dict]:
    """Every *.json profile in a directory (sorted by name); an unreadable directory is an error. With
    `check_machine`, a profile measured on another machine is an error naming its file (qlab/profile/machine.py)."""
    from qlab.profile.machine import require_this_machine

    directory = Path(directory)
    if not directory.is_dir():
        raise QlabError(f"profiles directory {directory}: not a directory")
    try:
        files = sorted(directory.glob("*.json"))
    except OSError as e:
        raise QlabError(f"profiles directory {directory}: cannot read: {e}") from None
    docs = [load_profile(f) for f in files]
    if check_machine:
        for f, doc in zip(files, docs):
            require_this_machine(doc, f"profile {f}")
    return docs


def _calibration_only_validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    sub = {"type": "object", "required": ["calibration"],
           "properties": {"calibration": schema["properties"]["calibration"]}}
    return jsonschema.Draft202012Validator(sub)


def load_profile_for_prediction(path: str | Path, flag: str = "--profile") -> dict:
    """A profile for `qlab predict --profile`: a whole profile (checked against the schema and against this
    machine) or a bare {"calibration": {...}} document (qlab/predict/README.md); errors are one line naming
    the flag, the file and the field."""
    from qlab.profile.machine import require_this_machine

    doc = read_json_object(path, flag)
    if "schema_version" in doc:
        validate_profile(doc, f"{flag} {path}")
        require_this_machine(doc, f"{flag} {path}")
        return doc
    bad = _first_non_finite(doc)
    if bad is not None:
        raise QlabError(f"{flag} {path}: field {'/'.join(map(str, bad))}: expected a finite number")
    errors = sorted(_calibration_only_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        field = "/".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise QlabError(f"{flag} {path}: field {field}: {errors[0].message}")
    return doc
