"""The tune cache: round trip, corrupt or stale files ignored with a warning, two writers at once, and an
unwritable directory degrading to an in-memory cache. No torch needed."""

import json
import subprocess
import sys
import textwrap

import pytest

from qlab.tune.cache import SCHEMA, TuneCache, TuneCacheWarning, make_key


def test_round_trip_through_the_file(tmp_path):
    path = tmp_path / "c.json"
    TuneCache(path).put("k1", {"config": {"BLOCK": 64}, "time_s": 1e-3})
    fresh = TuneCache(path)  # a new process would do this
    assert fresh.get("k1")["config"] == {"BLOCK": 64}
    assert fresh.get("other") is None
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_key_is_order_independent_and_changes_with_any_field():
    a = make_key({"op": "x", "torch": "2.13", "bucket": {"T": 512, "B": 1}})
    b = make_key({"bucket": {"B": 1, "T": 512}, "torch": "2.13", "op": "x"})
    assert a == b
    assert a != make_key({"op": "x", "torch": "2.14", "bucket": {"T": 512, "B": 1}})


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"schema": 1, "entries": 3}', ""])
def test_corrupt_cache_is_ignored_with_a_warning(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    cache = TuneCache(path)
    with pytest.warns(TuneCacheWarning, match="corrupt"):
        assert cache.get("k") is None
    cache.put("k", {"config": {}})   # and the next write replaces it with a good file
    assert TuneCache(path).get("k") == cache.get("k")


def test_older_schema_is_ignored_and_backed_up_before_the_first_write(tmp_path):
    path = tmp_path / "c.json"
    old = json.dumps({"schema": 0, "entries": {"k": {"config": {}}}})
    path.write_text(old)
    cache = TuneCache(path)
    with pytest.warns(TuneCacheWarning, match="stale"):
        assert cache.get("k") is None
    cache.put("k2", {"config": {"a": 1}})
    assert (tmp_path / "c.json.schema0.bak").read_text() == old
    assert TuneCache(path).get("k2")["config"] == {"a": 1}


def test_newer_schema_is_kept_as_it_is_never_overwritten(tmp_path):
    """A newer qlab's cache: read as empty, never replaced; this process keeps its results in memory."""
    path = tmp_path / "c.json"
    newer = json.dumps({"schema": SCHEMA + 1, "entries": {"k": {"config": {"x": 1}}}})
    path.write_text(newer)
    cache = TuneCache(path)
    with pytest.warns(TuneCacheWarning, match="newer qlab"):
        assert cache.get("k") is None
        cache.put("k2", {"config": {"a": 1}})
    assert path.read_text() == newer
    assert cache.get("k2")["config"] == {"a": 1}
    fresh = TuneCache(path)   # a writer that never read it first is stopped at the write too
    with pytest.warns(TuneCacheWarning, match="newer qlab"):
        fresh.put("k3", {"config": {}})
    assert path.read_text() == newer


def test_one_bad_entry_is_skipped_with_a_warning_the_others_kept(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"schema": SCHEMA, "entries": {
        "good": {"config": {"block_n": 64}}, "list": [1], "nested": {"config": {"block_n": {"a": 1}}}}}))
    cache = TuneCache(path)
    with pytest.warns(TuneCacheWarning, match="skipping entry 'list'"):
        assert cache.get("good")["config"] == {"block_n": 64}
    assert cache.get("list") is None and cache.get("nested") is None


def test_a_cached_config_outside_the_space_is_re_tuned_not_fatal(tmp_path):
    """'block_n': 'abc' in the cache (a hand edit, another version): a warning, then a normal tuning."""
    from qlab.tune.cache import make_key
    from qlab.tune.ops import impl_ops
    from qlab.tune.tuner import _cache_fields, tune_task

    top = impl_ops("blocked_matmul")[0]
    shape = top.full_shape({"M": 1, "N": 256, "K": 64})
    path = tmp_path / "c.json"
    key = make_key(_cache_fields(top, shape, "cpu"))
    path.write_text(json.dumps({"schema": SCHEMA, "entries": {key: {"config": {"block_n": "abc"}}}}))
    with pytest.warns(TuneCacheWarning, match="outside the impl's space"):
        res = tune_task(top, shape, "cpu", 0.5, "budgeted", TuneCache(path))
    assert not res.from_cache and res.config["block_n"] in top.params["block_n"]


def test_unwritable_directory_keeps_an_in_memory_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")           # a file where the cache's directory should be (works even as root)
    cache = TuneCache(blocker / "sub" / "c.json")
    with pytest.warns(TuneCacheWarning, match="not writable"):
        cache.put("k", {"config": {"a": 1}})
    assert cache.get("k")["config"] == {"a": 1}
    cache.put("k2", {"config": {"a": 2}})  # warns once, then stays in memory
    assert cache.get("k2")["config"] == {"a": 2}


WRITER = textwrap.dedent("""
    import sys
    from qlab.tune.cache import TuneCache
    path, tag = sys.argv[1], sys.argv[2]
    for i in range(25):
        TuneCache(path).put(f"{tag}-{i}", {"config": {"i": i}, "writer": tag})
""")


def test_two_processes_writing_at_once_both_land(tmp_path):
    path = tmp_path / "c.json"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag]) for tag in ("a", "b")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = json.loads(path.read_text())["entries"]
    assert set(entries) == {f"{t}-{i}" for t in "ab" for i in range(25)}
    assert not list(tmp_path.glob(".c.json.*.tmp"))   # no temp files left behind
