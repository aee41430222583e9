"""The regression gates: a 2x slower benchmark fails, a uniformly slower machine does not, and planted
changes to the compile report or the predictions fail their snapshot gates."""

import copy
import json

import pytest

from qlab.cli import main
from qlab.gates import snapshots
from qlab.gates.compare import compare


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


def test_slower_machine_is_not_a_regression():
    for normalise in ("median", "probe"):
        rows = compare(_run(), _run(scale_machine=1.8), threshold=1.5, normalise=normalise)
        assert all(r.status == "ok" for r in rows), normalise
    rows = {r.name.split("::")[-1]: r for r in compare(_run(), _run(2.0, scale_machine=1.8), 1.5, "probe")}
    assert rows["test_decode_step"].status == "regressed"
    raw = compare(_run(), _run(scale_machine=1.8), threshold=1.5, normalise="none")
    assert all(r.status == "regressed" for r in raw)


def test_missing_and_new_benchmarks_are_reported():
    cur = _run()
    cur["benchmarks"] = [b for b in cur["benchmarks"] if b["name"] != "test_prefill"] + [_bench("test_new", 1.0)]
    status = {r.name.split("::")[-1]: r.status for r in compare(_run(), cur)}
    assert status["test_prefill"] == "missing" and status["test_new"] == "new"


def test_gate_cli_fails_against_baseline_scaled_by_half(tmp_path, capsys):
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    cur.write_text(json.dumps(_run()))
    half = _run()
    for b in half["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["stats"]["median"] *= 0.5
    base.write_text(json.dumps(half))
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(base), "--current", str(cur)]) == 1
    assert "test_decode_step is ×2.00 slower" in capsys.readouterr().out.replace("\n", " ")
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(cur), "--current", str(cur)]) == 0


def test_gate_cli_bad_input(tmp_path, capsys):
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["bench", "gate", "--only", "timing", "--baseline", str(tmp_path / "bad.json"),
                 "--current", str(tmp_path / "bad.json")]) == 2
    assert main(["bench", "gate", "--only", "speed"]) == 2


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


def test_a_noisy_benchmark_gets_its_own_measured_spread_as_limit():
    base, cur = _run(), _run()
    for b in base["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["extra_info"]["baseline_medians_of_runs"] = [0.004, 0.0075, 0.004]   # bimodal: ×1.875 spread
    for b in cur["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["stats"]["median"] *= 1.8
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur, threshold=1.6)}
    assert rows["test_decode_step"].status == "ok"
    assert rows["test_decode_step"].threshold == pytest.approx(1.1 * 1.875)
    for b in cur["benchmarks"]:
        if b["name"] == "test_decode_step":
            b["stats"]["median"] *= 2.0 / 1.8 * 1.2   # ×2.4: beyond even its own spread
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur, threshold=1.6)}
    assert rows["test_decode_step"].status == "regressed"


def test_reference_impls_are_shown_but_not_gated():
    base, cur = _run(), _run()
    for run in (base, cur):
        run["benchmarks"].append(_bench("test_step[naive]", 0.001))
    cur["benchmarks"][-1]["stats"]["median"] = 0.003
    rows = {r.name.split("::")[-1]: r for r in compare(base, cur)}
    assert rows["test_step[naive]"].status == "ungated" and rows["test_step[naive]"].factor == pytest.approx(3.0)
