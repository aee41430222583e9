"""`qlab tune --op decode`: the decode step is the objective, and what it chose is what the next decode resolves."""

from __future__ import annotations

import pytest

from qlab.kernels import registry
from qlab.tune.cache import tuned_threads
from qlab.tune.decode import tune_decode


pytestmark = pytest.mark.slow   # ~1 min on a loaded 2-core CPU (weights, a few timed decode steps per candidate)


@pytest.fixture(scope="module")
def record():
    import os
    import tempfile

    old = os.environ.get("QLAB_HOME")
    os.environ["QLAB_HOME"] = tempfile.mkdtemp()
    try:
        rec = tune_decode(layers=4, quant="Q8_0", width_scale=8, vocab=512, context=16, budget_s=6, tokens=2)
        yield rec, os.environ["QLAB_HOME"]
    finally:
        if old is None:
            os.environ.pop("QLAB_HOME")
        else:
            os.environ["QLAB_HOME"] = old


def test_the_record_says_what_was_chosen_and_measured(record):
    rec, _ = record
    assert rec["written"] and rec["default_ms_per_token"] > 0 and rec["tuned_ms_per_token"] > 0
    assert set(rec["impls"]) == {"matmul", "deltanet_decode", "attn_decode"}
    for role, name in rec["impls"].items():
        assert name in {r["impl"] for r in rec["resolved"] if r["role"] == role}
    assert rec["history"][0]["choice"] == "default" and len(rec["history"]) >= 2


def test_the_next_decode_resolves_what_was_chosen(record, monkeypatch):
    rec, home = record
    monkeypatch.setenv("QLAB_HOME", home)
    # cached unless other processes held the CPUs while it tuned (the test below forces that case)
    assert tuned_threads("cpu") == (rec["threads"] if rec["threads_cached"] else None)
    for r in rec["resolved"]:
        if r["role"] in rec["impls"]:
            impl, config, source = registry.resolve(r["op"], r["shape"], "cpu")
            assert impl.name == r["impl"] and config == r["config"]
            assert source == ("cache" if impl.tunables else "default")


def test_a_thread_count_tuned_under_load_is_not_cached(monkeypatch, tmp_path):
    """Other processes held 90 % of the CPUs while it tuned: its impls and configs are written (compared paired,
    at the same load), its thread count is not, and the record says why."""
    from qlab import measure

    class Busy(measure.OthersCpu):
        def __exit__(self, *exc):
            self.share = 0.9

    monkeypatch.setenv("QLAB_HOME", str(tmp_path))
    monkeypatch.setattr(measure, "OthersCpu", Busy)
    rec = tune_decode(layers=4, quant="Q8_0", width_scale=8, vocab=512, context=16, budget_s=1, tokens=1)
    assert rec["written"] and rec["others_cpu_share"] == 0.9 and rec["threads_cached"] is False
    assert tuned_threads("cpu") is None
    shape = next(r for r in rec["resolved"] if r["role"] == "matmul")
    assert registry.resolve(shape["op"], shape["shape"], "cpu")[0].name == shape["impl"]
