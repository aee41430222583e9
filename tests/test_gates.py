"""The regression gates: a slower benchmark fails and a uniformly slower machine does not (probe-normalised),
limits come from the stored spread, the peer gate fails on a >15 % drop of the qlab/llama.cpp ratio (fallback
rule for an unmeasured machine class), bad flags are exit 2 and a crash exit 3, and planted changes to the
compile report or the predictions fail their snapshot gates. The mutation tests at the end slow each product
path for real (qlab.gates.inject) and check that the gate catches it."""

import copy
import json
import time

import pytest

from qlab.cli import main
from qlab.gates import baseline, peer, snapshots
from qlab.gates.compare import LIMIT_CAP, LIMIT_FLOOR, compare, limit_from_spread
from qlab.gates.inject import slowdown_factor, slowed
from qlab.gates.machine import cpu_model, machine_class


def _bench(name, median, bound="memory"):
    return {"name": name, "fullname": f"benchmarks/x.py::{name}", "extra_info": {"bound": bound},
            "stats": {"median": median, "mean": median, "min": median, "max": median, "rounds": 10}}


def _run(scale_kernels=1.0, scale_machine=1.0):
    """Probes, the benchmark under test (`test_decode_step`, slowed by `scale_kernels`) and five steady ones."""
    steady = [_bench(f"test_steady_{i}", 0.001 * (i + 1) * scale_machine) for i in range(5)]
    return {"machine_info": {"node": "test"}, "benchmarks": [
        _bench("test_probe_bandwidth", 0.010 * scale_machine),
        _bench("test_probe_matmul", 0.002 * scale_machine, "compute"),
        _bench("test_decode_step", 0.004 * scale_machine * scale_kernels),
        _bench("test_prefill", 0.050 * scale_machine, "compute"),
        *steady,
    ]}


def test_twice_slower_benchmark_regresses():
    rows = {r.name.split("::")[-1]: r for r in compare(_run(), _run(scale_kernels=2.0), threshold=1.5)}
    assert rows["test_decode_step"].status == "regressed"
    assert rows["test_decode_step"].factor == pytest.approx(2.0)
    assert "test_probe_bandwidth" not in rows  # probes are the yardstick, not gated themselves


def test_slower_machine_is_not_a_regression_but_a_slower_everything_is():
    rows = compare(_run(), _run(scale_machine=1.8), threshold=1.5)
    assert all(r.status == "ok" for r in rows)
    rows = {r.name.split("::")[-1]: r for r in compare(_run(), _run(2.0, scale_machine=1.8), 1.5)}
    assert rows["test_decode_step"].status == "regressed"
    raw = compare(_run(), _run(scale_machine=1.8), threshold=1.5, normalise="none")
    assert all(r.status == "regressed" for r in raw)


def test_a_common_slowdown_of_every_gated_benchmark_still_fails():
    """The probes, not the gated set's median, are the reference: a slower shared helper cannot cancel out."""
    slow = _run()
    for b in slow["benchmarks"]:
        if "probe" not in b["name"]:
            for k in ("median", "min"):
                b["stats"][k] *= 1.5
    rows = compare(_run(), slow, threshold=1.45)
    assert rows and all(r.status == "regressed" for r in rows)


def _own_probe(run, name, ms, field="probe_min_ms"):
    for b in run["benchmarks"]:
        if b["name"] == name:
            b["extra_info"][field] = ms
    return run


def _peer(run, name, ms):
    """llama.cpp doing benchmark `name`'s work took `ms` between its rounds."""
    return _own_probe(run, name, ms, "peer_min_ms")


def _rebuild_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rebuild_baseline",
                                                  baseline.BASELINE_DIR.parent / "rebuild_baseline.py")
    rb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rb)
    return rb


def test_a_benchmarks_own_probe_normalises_it_where_both_runs_have_one():
    """The machine slowed 1.5x while the benchmark ran (its own probe saw it) but not while the run-level probe
    did: not a regression. Without the own probe in the baseline, the run-level probe is used and it regresses."""
    base = _own_probe(_run(), "test_decode_step", 2.0)
    cur = _own_probe(_run(scale_kernels=1.5), "test_decode_step", 3.0)
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur, threshold=1.2)}
    assert rows["test_decode_step"].factor == pytest.approx(1.0) and rows["test_decode_step"].status == "ok"
    rows = {r.name.split("::")[-1]: r for r in compare(_run(), cur, threshold=1.2)}
    assert rows["test_decode_step"].factor == pytest.approx(1.5) and rows["test_decode_step"].status == "regressed"
    cur = _own_probe(_run(scale_kernels=1.5), "test_decode_step", 2.0)   # slower while the machine held still
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur, threshold=1.2)}
    assert rows["test_decode_step"].status == "regressed"


def test_missing_and_new_benchmarks_are_reported():
    cur = _run()
    cur["benchmarks"] = [b for b in cur["benchmarks"] if b["name"] != "test_prefill"] + [_bench("test_new", 1.0)]
    status = {r.name.split("::")[-1]: r.status for r in compare(_run(), cur)}
    assert status["test_prefill"] == "missing" and status["test_new"] == "new"


def test_each_benchmark_is_held_to_its_own_stored_limit():
    base, cur = _run(), _run(scale_kernels=1.3)
    for b in base["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["extra_info"]["limit"] = 1.25
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur)}
    assert rows["test_decode_step"].status == "regressed" and rows["test_decode_step"].threshold == 1.25
    assert rows["test_steady_0"].threshold == LIMIT_CAP


def test_limit_rule_from_spread():
    assert limit_from_spread(1.0) == LIMIT_FLOOR            # a quiet benchmark: the floor
    assert limit_from_spread(1.2) == pytest.approx(1.32)    # 1.1 x its spread
    assert limit_from_spread(2.0) == LIMIT_CAP < 1.5        # never so loose that a 1.5x slowdown passes


def test_machine_class_from_flags():
    assert machine_class({"avx2", "fma", "avx512f", "avx512bw", "avx512vl"}, "x86_64") == "x86_64-avx512"
    assert machine_class({"avx2", "fma", "avx512f"}, "x86_64") == "x86_64-avx2"
    assert machine_class({"sse4_2"}, "x86_64") == "x86_64-sse"
    assert machine_class(set(), "aarch64") == "aarch64"


def test_slowdown_switch_parsing(monkeypatch):
    assert slowdown_factor("swiglu", "") == 1.0
    assert slowdown_factor("swiglu", "swiglu") == 1.5
    assert slowdown_factor("matmul_int8[Q4_K]", "matmul_int8[Q4_K]:2,swiglu") == 2.0
    assert slowdown_factor("deltanet_step_48", "all:1.5") == 1.5
    monkeypatch.setenv("QLAB_GATE_SLOWDOWN", "f:3")
    t0 = time.perf_counter()
    slowed("f", lambda: time.sleep(0.02))()
    assert time.perf_counter() - t0 >= 0.06


def test_gate_cli_fails_against_baseline_scaled_by_half(tmp_path, capsys):
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    cur.write_text(json.dumps(_run()))
    half = _run()
    for b in half["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["stats"]["median"] *= 0.5
            b["stats"]["min"] *= 0.5
    base.write_text(json.dumps(half))
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(base), "--current", str(cur)]) == 1
    assert "test_decode_step is ×2.00 slower" in capsys.readouterr().out.replace("\n", " ")
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(cur), "--current", str(cur)]) == 0


def test_a_provisional_baseline_shows_but_does_not_fail(tmp_path, capsys):
    """A baseline measured too noisily to bind (rebuild_baseline.py marks it) is advisory, and says so."""
    base, cur = _run(), tmp_path / "cur.json"
    base["qlab_baseline"] = {"class": "x86_64-avx512", "provisional": True}
    (tmp_path / "base.json").write_text(json.dumps(base))
    cur.write_text(json.dumps(_run(scale_kernels=2.0)))
    argv = ["bench", "gate", "--only", "timing", "--baseline", str(tmp_path / "base.json"), "--current", str(cur)]
    assert main(argv) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "regressed" in out and "advisory" in out
    base["qlab_baseline"]["provisional"] = False
    (tmp_path / "base.json").write_text(json.dumps(base))
    assert main(argv) == 1
    base["qlab_baseline"]["provisional"] = ["peer"]   # only the peer gate provisional: the timing gate binds
    (tmp_path / "base.json").write_text(json.dumps(base))
    assert main(argv) == 1
    base["qlab_baseline"]["provisional"] = ["timing"]
    (tmp_path / "base.json").write_text(json.dumps(base))
    assert main(argv) == 0


def test_the_timing_gate_binds_only_on_the_cpu_model_of_its_baseline(tmp_path, monkeypatch, capsys):
    """Same class, another microarchitecture: the comparison is shown, advisory, and says why."""
    base = _run()
    base["qlab_baseline"] = {"class": "x86_64-avx512", "cpu_model": "AuthenticAMD family 26 model 2"}
    monkeypatch.setattr(baseline, "BASELINE_DIR", tmp_path)
    (tmp_path / "x86_64-avx512.json").write_text(json.dumps(base))
    cur = tmp_path / "cur.json"
    cur.write_text(json.dumps(_run(scale_kernels=2.0)))
    argv = ["bench", "gate", "--only", "timing", "--class", "x86_64-avx512", "--current", str(cur)]
    monkeypatch.setattr("qlab.gates.machine.cpu_model", lambda: "AuthenticAMD family 25 model 17")
    assert main(argv) == 0
    assert "other CPU model" in capsys.readouterr().out.replace("\n", " ")
    monkeypatch.setattr("qlab.gates.machine.cpu_model", lambda: "AuthenticAMD family 26 model 2")
    assert main(argv) == 1


def test_a_benchmark_too_noisy_to_gate_is_shown_but_does_not_fail(tmp_path, capsys):
    base, cur = _run(), tmp_path / "cur.json"
    base["qlab_baseline"] = {"class": "x86_64-avx512", "provisional": [], "too_noisy": ["test_decode_step"]}
    (tmp_path / "base.json").write_text(json.dumps(base))
    cur.write_text(json.dumps(_run(scale_kernels=2.0)))
    argv = ["bench", "gate", "--only", "timing", "--baseline", str(tmp_path / "base.json"), "--current", str(cur)]
    assert main(argv) == 0
    assert "not gated: " in capsys.readouterr().out
    base["qlab_baseline"]["too_noisy"] = ["test_prefill"]
    (tmp_path / "base.json").write_text(json.dumps(base))
    assert main(argv) == 1


def test_gate_cli_bad_input(tmp_path, capsys):
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(tmp_path / "bad.json"),
                 "--current", str(tmp_path / "bad.json")]) == 2
    assert main(["bench", "gate", "--only", "speed"]) == 2
    for empty in (",", "", " , "):   # an empty selection would print "gate: passed" having checked nothing
        assert main(["bench", "gate", "--only", empty]) == 2
    for bad in ("nan", "inf", "-inf", "1", "0.5", "", "x"):
        assert _exit_code(["bench", "gate", "--only", "timing", "--threshold", bad]) == 2, bad
    assert "--threshold: expected a finite number > 1" in capsys.readouterr().err


def _exit_code(argv) -> int:
    """main's return value, or the code of the SystemExit argparse raises for a bad flag."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.slow   # a real pytest-benchmark run with the probes: ~10 s quiet, 45 s on a loaded 2-core machine
def test_a_crashing_benchmark_is_an_internal_error_not_a_failed_gate(tmp_path):
    suite = tmp_path / "bench_crash.py"
    suite.write_text("def test_crash(benchmark):\n    benchmark(lambda: 1 / 0)\n")
    cur = tmp_path / "cur.json"
    cur.write_text(json.dumps(_run()))
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(cur), "--suites", str(suite),
                 "--no-confirm"]) == 3


def _peer_measurement(tmp_path, q8: float, q4: float):
    p = tmp_path / "peer.json"
    p.write_text(json.dumps({"Q8_0": {"ratio": q8, "qlab_ms": 5.0, "llama_ms": 5.0 * q8},
                             "Q4_K_M": {"ratio": q4, "qlab_ms": 4.0, "llama_ms": 4.0 * q4}}))
    return str(p)


def test_peer_gate_fails_on_a_drop_beyond_15_percent(tmp_path, monkeypatch, capsys):
    stored = {"Q8_0": 1.2, "Q4_K_M": 1.0}
    monkeypatch.setattr(baseline, "load_class", lambda cls: {"qlab_baseline": {"peer": {
        q: {"ratio": r} for q, r in stored.items()}}} if cls == "x86_64-avx512" else None)
    monkeypatch.setattr(baseline, "stored_classes", lambda: ["x86_64-avx512"])
    args = ["bench", "gate", "--only", "peer", "--class", "x86_64-avx512", "--peer-json"]
    assert main(args + [_peer_measurement(tmp_path, 1.2 * 0.9, 1.0 * 0.9)]) == 0     # 10 % down: ok
    assert main(args + [_peer_measurement(tmp_path, 1.2 * 0.8, 1.0)]) == 1           # 20 % down: fails
    assert "Q8_0 slice is 0.960x" in capsys.readouterr().out.replace("\n", " ")
    # a class with no stored ratio says so and is held to the fallback floor, 0.7 x the lowest stored
    other = ["bench", "gate", "--only", "peer", "--class", "x86_64-avx2", "--peer-json"]
    assert main(other + [_peer_measurement(tmp_path, 0.9, 0.75)]) == 0     # floors 0.84 and 0.70
    out = capsys.readouterr().out.replace("\n", " ")
    assert "no stored qlab/llama.cpp ratio for machine class x86_64-avx2" in out and "fallback" in out
    assert main(other + [_peer_measurement(tmp_path, 0.9, 0.65)]) == 1


def test_peer_gate_re_measures_a_drop_before_failing(monkeypatch, capsys):
    """A drop seen once (a moment of load) is re-measured and passes when it does not repeat; one seen every time
    fails. Only the suspect quant is re-measured."""
    monkeypatch.setattr(baseline, "load_class", lambda cls: {"qlab_baseline": {"peer": {
        "Q8_0": {"ratio": 1.0}, "Q4_K_M": {"ratio": 1.0}}}})
    monkeypatch.setattr(baseline, "stored_classes", lambda: ["x86_64-avx512"])
    calls = []

    def fake_measure(quants=peer.QUANTS, pairs=3, ratios=None):
        calls.append(tuple(quants))
        r = ratios.pop(0)
        return {q: {"ratio": r if q == "Q8_0" else 1.0, "qlab_ms": 1.0, "llama_ms": r} for q in quants}

    args = ["bench", "gate", "--only", "peer", "--class", "x86_64-avx512"]
    monkeypatch.setattr(peer, "measure", lambda quants=peer.QUANTS, pairs=3: fake_measure(quants, pairs, once))
    once = [0.7, 0.95]
    assert main(args) == 0 and calls == [peer.QUANTS, ("Q8_0",)]
    assert "re-measuring Q8_0" in capsys.readouterr().out
    calls.clear()
    monkeypatch.setattr(peer, "measure", lambda quants=peer.QUANTS, pairs=3: fake_measure(quants, pairs, always))
    always = [0.7, 0.72, 0.71]
    assert main(args) == 1 and len(calls) == 3


def test_peer_judge_rules():
    res = {r.quant: r for r in peer.judge({"Q8_0": {"ratio": 1.0, "qlab_ms": 1, "llama_ms": 1}},
                                          {"Q8_0": 1.1}, [{"Q8_0": 1.1}])}
    assert res["Q8_0"].rule == "class" and res["Q8_0"].floor == pytest.approx(0.85 * 1.1)
    assert not res["Q8_0"].failed
    (r,) = peer.judge({"Q8_0": {"ratio": 0.5, "qlab_ms": 1, "llama_ms": 1}}, None, [{"Q8_0": 1.1}, {"Q8_0": 0.9}])
    assert r.rule == "fallback" and r.floor == pytest.approx(0.7 * 0.9) and r.failed


def test_snapshot_diff_finds_planted_changes():
    snap = {"deltanet/k/sm_80/w4/s2": {"regs": 96, "spills": 0, "shared_bytes": 0, "error": ""}}
    planted = copy.deepcopy(snap)
    planted["deltanet/k/sm_80/w4/s2"]["spills"] = 64
    assert snapshots.diff_snapshots(snap, snap) == []
    (line,) = snapshots.diff_snapshots(snap, planted)
    assert "spills: 0 -> 64" in line


def test_golden_gate_fails_on_planted_predictor_change(tmp_path, monkeypatch):
    pytest.importorskip("qlab.predict", reason="predictor not built")
    from qlab import predict as predict_mod

    if not hasattr(predict_mod, "predict"):
        pytest.skip("predictor not built")
    monkeypatch.setattr(snapshots, "GOLDEN_HW", ("rtx-3090",))
    monkeypatch.setattr(snapshots, "GOLDEN_MODELS", ("qwen3.6-27b",))
    path = tmp_path / "golden.json"
    assert snapshots.check("golden", path, update=True) == []
    assert snapshots.check("golden", path) == []
    real = predict_mod.predict

    def planted(*a, **k):
        out = real(*a, **k)
        return out | {"decode_tok_s": out["decode_tok_s"] * 1.1}

    monkeypatch.setattr(predict_mod, "predict", planted)
    assert any("decode_tok_s" in line for line in snapshots.check("golden", path))


def test_compile_gate_fails_on_planted_snapshot_change(tmp_path, monkeypatch):
    from qlab.kernels.aot import CompileResult

    fake = [CompileResult("op", "kern", 80, 4, 2, regs=64, spill_stores=0, spill_loads=0, stack_bytes=0,
                          shared_bytes=1024)]
    monkeypatch.setattr("qlab.kernels.aot.compile_report", lambda *a, **k: list(fake))
    path = tmp_path / "compile.json"
    snapshots.check("compile", path, update=True)
    assert snapshots.check("compile", path) == []
    fake[0] = CompileResult("op", "kern", 80, 4, 2, regs=72, spill_stores=0, spill_loads=0, stack_bytes=0,
                            shared_bytes=1024)
    assert snapshots.check("compile", path) == ["~ op/kern/sm_80/w4/s2 regs: 64 -> 72"]


# ---- mutation: slow each product path for real, the gate must catch it ------------------------------------------
def _product_paths(run: dict) -> dict[str, set[str]]:
    """path (the slowdown switch) -> the names of the benchmarks that time it (a kernel on all threads and on one)."""
    out: dict[str, set[str]] = {}
    for b in run["benchmarks"]:
        if "path" in (b.get("extra_info") or {}):
            out.setdefault(b["extra_info"]["path"], set()).add(b["name"])
    return out


RUNS_EACH, MAX_DRIFT = 3, 1.15


def _drift(runs: list[dict]) -> dict[str, float]:
    """Per benchmark, the largest probe-normalised factor between any two of `runs` (>= 1)."""
    out = {}
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            for r in compare(a, b, threshold=2.0):
                name = r.name.split("::")[-1]
                out[name] = max(out.get(name, 1.0), r.factor, 1 / r.factor)
    return out


def _best_of(runs: list[dict]) -> dict:
    """One run whose every benchmark (probes too) has its fastest time over `runs`, and its own probe's and
    llama.cpp peer's fastest."""
    out = copy.deepcopy(runs[0])
    for b in out["benchmarks"]:
        same = [x for r in runs for x in r["benchmarks"] if x["name"] == b["name"]]
        b["stats"]["min"] = min(x["stats"]["min"] for x in same)
        for field in ("probe_min_ms", "peer_min_ms"):
            if field in b["extra_info"]:
                b["extra_info"][field] = min(x["extra_info"][field] for x in same)
    return out


@pytest.mark.slow
def test_mutation_every_product_path_slowed_1_5x_fails_the_timing_gate(tmp_path, monkeypatch):
    """Runs as the code is and with QLAB_GATE_SLOWDOWN making every product path 1.5x slower (probes untouched),
    alternating, three of each: every benchmark of every path (a kernel on all threads and on one) must regress
    on its own row (best of the slowed runs against best of the plain ones). The reference is the yardsticks, not
    the gated set, so one path slowed alone is judged as here. Paths none of whose benchmarks could be judged
    are printed.
    Limits: this class's stored ones where its baseline binds (paths it lists as too noisy are left out, named);
    the rule's floor, 1.2, where it is provisional or missing. A path whose plain runs, or whose slowed runs,
    already differ among themselves by more than 15 % (probe-normalised) cannot be judged on this machine now: it
    is named, and the test skips only if no path can be judged."""
    from qlab.gates.baseline import load_class
    from qlab.gates.commands import provisional
    from qlab.gates.compare import load_run
    from qlab.gates.run import default_suites, run_suites

    runs = {"plain": [], "slow": []}
    for i in range(RUNS_EACH):
        for kind, env in (("plain", None), ("slow", "all:1.5")):
            if env:
                monkeypatch.setenv("QLAB_GATE_SLOWDOWN", env)
            else:
                monkeypatch.delenv("QLAB_GATE_SLOWDOWN", raising=False)
            runs[kind].append(load_run(run_suites(default_suites(), tmp_path / f"{kind}{i}.json")))
    paths = _product_paths(runs["plain"][0])
    assert len(paths) >= 10 and paths == _product_paths(runs["slow"][0])
    stored = load_class(machine_class())
    model = (stored or {}).get("qlab_baseline", {}).get("cpu_model")
    binding = stored is not None and not provisional(stored) and model in (None, "", cpu_model())
    stored_info = {b["name"]: b["extra_info"] for b in (stored or {"benchmarks": []})["benchmarks"]}
    noisy = set(stored["qlab_baseline"].get("too_noisy") or []) if binding else set()
    for b in (b for kind in runs.values() for run in kind for b in run["benchmarks"]):
        if binding and (stored_info.get(b["name"]) or {}).get("yardstick"):   # the yardstick the gate divides by
            b["extra_info"]["yardstick"] = stored_info[b["name"]]["yardstick"]
    base = _best_of(runs["plain"])
    for b in base["benchmarks"]:   # judged as the gate judges: the stored limit
        b["extra_info"]["limit"] = ((stored_info.get(b["name"]) or {}).get("limit") or LIMIT_CAP) if binding \
            else LIMIT_FLOOR
    drift = {kind: _drift(runs[kind]) for kind in runs}
    unjudged = {n for d in drift.values() for n, f in d.items() if f > MAX_DRIFT}
    rows = {r.name.split("::")[-1]: r for r in compare(base, _best_of(runs["slow"]))}
    judged = set(rows) - noisy - unjudged
    if not judged:
        pytest.skip(f"this machine is too noisy now to judge any path (drift between runs: {drift})")
    unguarded = sorted(p for p, names in paths.items() if not names & judged)
    print("mutation: " + ", ".join(f"{n} x{rows[n].factor:.2f} (limit x{rows[n].threshold:.2f}, {rows[n].bound})"
                                   for n in sorted(judged))
          + f"; too noisy {sorted(noisy)}; not judged (drift) "
            f"{ {n: round(max(d.get(n, 1.0) for d in drift.values()), 3) for n in sorted(unjudged)} }; "
            f"paths with no judged benchmark "
            f"{unguarded}")
    missed = {n: round(rows[n].factor, 3) for n in judged if rows[n].status != "regressed"}
    assert not missed, (f"1.5x slowdowns the gate did not catch (factor <= limit): {missed}; left out as too "
                        f"noisy: {sorted(noisy)}; not judged (its plain or its slowed runs drift > 15 %): "
                        f"{sorted(unjudged)}")


@pytest.mark.slow
@pytest.mark.peer
def test_mutation_decode_loop_slowed_1_5x_fails_the_peer_gate(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    monkeypatch.setenv("QLAB_GATE_SLICES", str(tmp_path / "slices"))
    monkeypatch.delenv("QLAB_GATE_SLOWDOWN", raising=False)
    as_is = peer.measure(quants=("Q8_0",), pairs=2)
    monkeypatch.setenv("QLAB_GATE_SLOWDOWN", "decode_loop:1.5")
    slowed_run = peer.measure(quants=("Q8_0",), pairs=2)
    (r,) = peer.judge(slowed_run, {"Q8_0": as_is["Q8_0"]["ratio"]}, [])
    assert r.failed, f"ratio {r.ratio:.3f} vs stored {r.stored:.3f}: a 1.5x slower decode loop passed"


def test_rebuild_divides_each_run_by_the_probe_the_gate_will_use():
    """Where every run has the benchmark's own probe, the spread is measured against it (a run whose own probe saw
    a 1.2x slower machine is 1.2x off against the run-level probe, not against its own)."""
    rb = _rebuild_module()
    runs = [_own_probe(_run(scale_kernels=k), "test_decode_step", 2.0 * k) for k in (1.0, 1.2, 1.0)]
    doc, rows = rb.build_timing(runs)
    spread = {r["name"]: r["spread"] for r in rows}
    assert spread["test_decode_step"] == pytest.approx(1.0) and spread["test_prefill"] == pytest.approx(1.0)
    (b,) = [b for b in doc["benchmarks"] if b["name"] == "test_decode_step"]
    assert b["extra_info"]["probe_min_ms"] == pytest.approx(2.0)
    for r in runs:   # without own probes in every run: the run-level probe, and the 1.2x shows
        for x in r["benchmarks"]:
            x["extra_info"].pop("probe_min_ms", None)
    assert {r["name"]: r["spread"] for r in rb.build_timing(runs)[1]}["test_decode_step"] == pytest.approx(1.2)


def test_the_llamacpp_yardstick_where_the_baseline_chose_it():
    """The benchmark 1.5x slower while llama.cpp doing the same work was 1.5x slower too (the machine), and the
    probes held still: not a regression when the baseline's yardstick is llama.cpp; a regression on the probe."""
    base = _peer(_run(), "test_decode_step", 2.0)
    cur = _peer(_run(scale_kernels=1.5), "test_decode_step", 3.0)
    by_probe = {r.name.split("::")[-1]: r for r in compare(base, cur, threshold=1.2)}
    assert by_probe["test_decode_step"].status == "regressed"
    for b in base["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["extra_info"]["yardstick"] = "llama.cpp"
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur, threshold=1.2)}
    assert rows["test_decode_step"].factor == pytest.approx(1.0) and rows["test_decode_step"].bound == "llama.cpp"
    slower = _peer(_run(scale_kernels=1.5), "test_decode_step", 2.0)   # qlab slower, llama.cpp not: regressed
    assert {r.name.split("::")[-1]: r for r in compare(base, slower, 1.2)}["test_decode_step"].status == "regressed"
    del cur["benchmarks"][2]["extra_info"]["peer_min_ms"]   # a current run without it: the probe decides
    assert {r.name.split("::")[-1]: r for r in compare(base, cur, 1.2)}["test_decode_step"].bound == "memory"


def test_rebuild_keeps_the_yardstick_its_runs_spread_least_against():
    rb = _rebuild_module()
    # the benchmark tracks llama.cpp exactly and the probe not (x1.3 between runs): llama.cpp is chosen, spread 1
    runs = [_peer(_run(scale_kernels=k), "test_decode_step", 2.0 * k) for k in (1.0, 1.3, 1.1)]
    doc, rows = rb.build_timing(runs)
    row = {r["name"]: r for r in rows}["test_decode_step"]
    assert row["yardstick"] == "llama.cpp" and row["spread"] == pytest.approx(1.0)
    assert row["spreads"]["probe"] == pytest.approx(1.3)
    (b,) = [b for b in doc["benchmarks"] if b["name"] == "test_decode_step"]
    assert b["extra_info"]["yardstick"] == "llama.cpp" and b["extra_info"]["peer_min_ms"] == pytest.approx(2.2)
    # llama.cpp wandering where the benchmark does not: the probe is kept
    runs = [_peer(_run(), "test_decode_step", 2.0 * k) for k in (1.0, 1.3, 1.1)]
    assert {r["name"]: r for r in rb.build_timing(runs)[1]}["test_decode_step"]["yardstick"] == "probe"


def test_rebuild_timing_only_keeps_the_stored_peer_ratios(tmp_path):
    """--timing-only (after adding a benchmark) keeps the class's peer ratios and when they were measured; without
    a stored baseline, or one without peer ratios, it stops with a line naming the file."""
    rb = _rebuild_module()
    out = tmp_path / "x86_64-test.json"
    with pytest.raises(SystemExit, match="no stored baseline"):
        rb.stored_peer(out)
    doc = _run()
    doc["qlab_baseline"] = {"measured": "2026-01-01 00:00 UTC"}
    out.write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="no stored peer ratios"):
        rb.stored_peer(out)
    doc["qlab_baseline"]["peer"] = {"Q8_0": {"ratio": 0.8, "runs": [0.8], "spread": 1.0}}
    out.write_text(json.dumps(doc))
    kept = rb.stored_peer(out)
    assert kept["peer"]["Q8_0"]["ratio"] == 0.8 and kept["peer_measured"] == "2026-01-01 00:00 UTC"
