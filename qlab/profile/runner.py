"""Runs the profile stages in order, saving the document atomically after each, with a progress display.

A stage that fails (out of memory, a kernel error) is recorded with its error and the run goes on; Ctrl-C
leaves the finished stages on disk, and `--resume FILE` continues from the first unfinished one.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from qlab import __version__
from qlab.errors import QlabError
from qlab.io import write_json_atomic
from qlab.profile.environment import git_commit, software_versions
from qlab.profile.options import ProfileOptions
from qlab.profile.schema import SCHEMA_VERSION, load_profile, validate_profile
from qlab.profile.stages import STAGE_WEIGHT, STAGES, Context


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_document(opts: ProfileOptions) -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "qlab_version": __version__, "created": _now(), "updated": _now(),
        "git_commit": git_commit(), "software": software_versions(), "options": opts.to_json(),
        # filled by the detect stage; a placeholder that satisfies the schema until then
        "device": {"id": "pending", "name": "pending", "kind": "cpu", "source": "pending", "known": False,
                   "specs": {"mem_bandwidth_gbs": 1.0, "memory_gb": 1.0}, "details": {}},
        "stages": {},
    }


class ProfileInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the finished stages are saved in `path` (None before the device was known)."""

    def __init__(self, path: Path | None):
        super().__init__(str(path))
        self.path = path


def _resume_document(path: Path, opts: ProfileOptions) -> dict:
    from qlab.profile.machine import require_this_machine

    doc = load_profile(path)
    require_this_machine(doc, f"--resume {path}")
    if doc["options"].get("mode") != opts.mode or doc["options"].get("quants") != opts.quants \
            or doc["options"].get("contexts") != opts.contexts:
        raise QlabError(f"--resume {path}: that run was made with options {doc['options']}; "
                        f"run with the same --quick/--full, --quants and --contexts, or start a new profile")
    return doc


def profile_path(opts: ProfileOptions, doc: dict) -> Path:
    """The file of this run. A new name is claimed with an exclusive create, so two runs started in the same
    second get two files (-2, -3, ... after the time stamp) instead of one overwriting the other."""
    if opts.resume:
        return opts.resume
    stamp = doc["created"].replace("-", "").replace(":", "").rstrip("Z")
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QlabError(f"--out {out}: cannot create the directory: {e.strerror or e}") from None
    base = f"{doc['device']['id']}-{opts.mode}-{stamp}"
    for n in range(1, 1000):
        path = out / (f"{base}.json" if n == 1 else f"{base}-{n}.json")
        try:
            with open(path, "x"):
                return path   # claimed (empty until the first save replaces it atomically)
        except FileExistsError:
            continue
        except OSError as e:
            raise QlabError(f"--out {out}: cannot create a profile file there: {e.strerror or e}") from None
    raise QlabError(f"--out {out}: 999 profiles named {base}*.json already exist")


def run_profile(opts: ProfileOptions, console=None) -> tuple[dict, Path]:
    """Run (or resume) a profile; returns the document and the file it was written to."""
    from rich.console import Console

    from qlab.progress import StageProgress

    console = console or Console(stderr=True)
    doc = _resume_document(opts.resume, opts) if opts.resume else new_document(opts)
    ctx = Context(torch_device=doc["device"].get("torch_device", "cpu"), log=lambda m: console.print(f"[yellow]{m}"))
    path: list[Path] = []  # known once the device is

    def save() -> None:
        if path:
            doc["updated"] = _now()
            try:
                write_json_atomic(path[0], validate_profile(doc, "profile being written"))
            except OSError as e:
                raise QlabError(f"cannot write the profile {path[0]}: {e.strerror or e}") from None

    ctx.save = save
    if doc["device"]["id"] != "pending":
        path.append(profile_path(opts, doc))
        ctx.path = path[0]
    started = time.monotonic()
    # a live bar that moves within stages on a terminal, one plain line per stage event elsewhere (qlab/progress.py)
    with StageProgress(STAGE_WEIGHT, console) as progress:
        for name, stage in STAGES.items():
            if doc["stages"].get(name, {}).get("status") == "done":
                progress.finish(name, "done earlier")
                continue
            if opts.budget_s and time.monotonic() - started > opts.budget_s and name in ("tune", "decode"):
                doc["stages"][name] = {"status": "skipped", "error": f"budget of {opts.budget_s:g} s spent"}
                save()
                progress.finish(name, "skipped (budget spent)")
                continue
            progress.begin(name)
            t0 = time.monotonic()
            try:
                stage(doc, opts, ctx)
                doc["stages"][name] = {"status": "done", "seconds": round(time.monotonic() - t0, 2)}
            except QlabError as e:
                if name == "detect":
                    raise
                doc["stages"][name] = {"status": "failed", "seconds": round(time.monotonic() - t0, 2),
                                       "error": str(e)[:500]}
                console.print(f"[red]stage {name} failed: {e}")
            except KeyboardInterrupt:
                save()
                raise ProfileInterrupted(path[0] if path else None) from None
            except Exception as e:  # recorded in the profile; the run continues with the next stage
                detail = traceback.format_exception_only(type(e), e)[-1].strip()
                if name == "detect":  # without a device there is nothing to measure
                    raise QlabError(f"device detection failed: {detail}") from e
                doc["stages"][name] = {"status": "failed", "seconds": round(time.monotonic() - t0, 2),
                                       "error": detail[:500]}
                console.print(f"[red]stage {name} failed: {detail}")
            if name == "detect" and not path:
                path.append(profile_path(opts, doc))
                ctx.path = path[0]
            save()
            progress.finish(name, doc["stages"][name]["status"])
    return doc, path[0]
