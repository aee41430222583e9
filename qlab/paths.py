"""Where qlab keeps per-user state. `QLAB_HOME` overrides the default `~/.qlab`.

  $QLAB_HOME/devices/*.toml   user devices: add or override hwdb entries
  $QLAB_HOME/tune-cache.json  the autotuner's persistent cache
"""

from __future__ import annotations

import os
from pathlib import Path


def qlab_home() -> Path:
    return Path(os.environ.get("QLAB_HOME") or Path.home() / ".qlab")


def user_devices_dir() -> Path:
    return qlab_home() / "devices"


def tune_cache_path() -> Path:
    return qlab_home() / "tune-cache.json"
