"""Seeded mutation fuzzing of the GGUF reader: a few hundred mutated small qwen35 files of each quant, each read
and decoded (as `qlab gguf info` and `qlab bench decode --gguf` do) in a worker process with a timeout. Every
case must end in success or a clear QlabError: never another exception, never a hang, never a signal."""

from __future__ import annotations

import random
import time

import pytest

import gguf_cases

pytestmark = pytest.mark.slow   # ~25 s for the cases, ~40 s to write and decode the 11 valid files on 2 cores
SEED, CASES_PER_DTYPE = 20261206, 40


@pytest.fixture(scope="module")
def worker():
    w = gguf_cases.Worker()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    return {dt: gguf_cases.write_tiny(d / f"{dt}.gguf", dt) for dt in gguf_cases.TINY_DTYPES}


def test_valid_files_of_each_quant_decode(bases, worker):
    for dt, path in bases.items():
        # the first case also pays for the worker's imports (torch)
        assert worker.run(path, timeout=120) == "ok", dt


def test_mutated_files_give_a_clear_error_or_success(bases, worker, tmp_path):
    rng = random.Random(SEED)
    counts = {"ok": 0, "clear": 0}
    bad = []
    t0 = time.perf_counter()
    for dt, path in bases.items():
        base = path.read_bytes()
        slots, end = gguf_cases.field_slots(path), gguf_cases.header_end(path)
        for i in range(CASES_PER_DTYPE):
            case = tmp_path / f"{dt}-{i}.gguf"
            case.write_bytes(gguf_cases.mutate(base, slots, end, rng))
            out = worker.run(case, base=path)
            kind = out.split(" ", 1)[0]
            if kind == "clear" and not all(case.name in line and line.isprintable() for line in out.split(" | ")):
                kind = "unclear"   # each problem is one printable line naming the file
            if kind in counts:
                counts[kind] += 1
                case.unlink()
            else:
                bad.append(f"{case.name}: {out[:300]}")   # the file is kept for a post-mortem
    n = len(bases) * CASES_PER_DTYPE
    print(f"gguf fuzz: {n} cases in {time.perf_counter() - t0:.1f} s: {counts['clear']} clear errors, "
          f"{counts['ok']} successes, {len(bad)} other")
    assert not bad, f"{len(bad)} of {n} cases neither succeeded nor gave a clear error:\n" + "\n".join(bad[:20])
    assert counts["clear"] > n // 4   # the mutations do reach the checks
