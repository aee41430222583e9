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


def test_stale_schema_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"schema": SCHEMA + 99, "entries": {"k": {"config": {}}}}))
    with pytest.warns(TuneCacheWarning, match="stale"):
        assert TuneCache(path).get("k") is None


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
