"""qlab: a hardware-aware performance lab for Qwen3.6-27B."""

__version__ = "0.1.0"
