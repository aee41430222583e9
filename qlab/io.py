"""Atomic file writes: a reader never sees a half-written file, an interrupted write loses nothing."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from qlab.errors import OutputPathError
from qlab.validate import check_output_file

# Write failures caused by where the file goes (full, read-only, no permission, a directory in the way).
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                      errno.ENOTDIR, errno.EFBIG}


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to a temp file in the same directory, fsync it, then rename it over `path`.
    A path that cannot be a file (a directory, a path through a file, no permission) is a QlabError naming it."""
    path = check_output_file(path, "output file")
    if _not_a_regular_file(path):  # /dev/null, /dev/stdout, a FIFO: renaming over it would replace the device
        try:
            with open(path, "wb" if isinstance(data, bytes) else "w") as f:
                f.write(data)
        except OSError as e:
            raise OutputPathError(f"output file {str(path)!r}: cannot write: {e.strerror or e}") from None
        return path
    if path.is_symlink():  # update the file the link points to; keep the link
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputPathError(f"output file {str(path)!r}: cannot write there: {e.strerror or e}") from None
    mode = "wb" if isinstance(data, bytes) else "w"
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a result file gets the usual permissions
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:  # the disk, not a bug: one line, exit 2
            raise OutputPathError(f"output file {str(path)!r}: cannot write: {e.strerror}") from None
        raise
    return path


def _not_a_regular_file(path: Path) -> bool:
    """A device, pipe or socket (also /dev/stdout when it is a terminal or pipe): written in place, not renamed."""
    if str(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return False


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
