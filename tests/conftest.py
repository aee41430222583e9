"""Test-wide fixtures. Outputs allocated with torch.empty* are poisoned with NaN, so a kernel that
forgets to write an element fails its comparison instead of passing on leftover memory."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QLAB_HOME", os.path.join(os.path.dirname(__file__), ".qlab-home"))


@pytest.fixture(autouse=True)
def _nan_poisoned_empty(monkeypatch):
    try:
        import torch
    except ImportError:
        yield
        return
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def poison(t):
        if t.dtype.is_floating_point and t.device.type == "cpu":
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(real_empty_like(*a, **k)))
    yield


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own QLAB_HOME (user devices, tune cache), so tests never touch ~/.qlab."""
    monkeypatch.setenv("QLAB_HOME", str(tmp_path / "qlab-home"))
    yield
