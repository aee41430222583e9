"""The profile runner: schema checks, atomic stage-by-stage saves, resume after an interruption, faults."""

import json

import pytest

from qlab.cli import main
from qlab.errors import QlabError
from qlab.profile import microbench, stages
from qlab.profile.options import ProfileOptions
from qlab.profile.runner import new_document, run_profile
from qlab.profile.schema import load_profile, validate_profile


def _fake_stages(monkeypatch, calls, interrupt_at=None, fail_at=None):
    def make(name):
        def stage(doc, opts, ctx):
            calls.append(name)
            if name == interrupt_at:
                raise KeyboardInterrupt
            if name == fail_at:
                raise MemoryError("planted out of memory")
            if name == "detect":
                doc["device"] = {"id": "cpu-host", "name": "test cpu", "kind": "cpu", "source": "cpu", "known": False,
                                 "specs": {"mem_bandwidth_gbs": 10.0, "memory_gb": 16.0}, "details": {}}
                from qlab.profile.machine import fingerprint_here

                doc["fingerprint"] = fingerprint_here(gpu=False)
            if name == "microbench":
                doc["microbench"] = {"read_gbs": 9.0, "copy_gbs": 8.0, "matmul_tflops": {"float32": 0.1}}
        return stage

    monkeypatch.setattr(stages, "STAGES", {n: make(n) for n in stages.STAGES})
    import qlab.profile.runner as runner

    monkeypatch.setattr(runner, "STAGES", stages.STAGES)


def test_interrupted_run_keeps_finished_stages_and_resumes(tmp_path, monkeypatch):
    calls = []
    _fake_stages(monkeypatch, calls, interrupt_at="tune")
    opts = ProfileOptions(mode="quick", out=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_profile(opts)
    (path,) = tmp_path.glob("*.json")
    doc = load_profile(path)
    assert [n for n, s in doc["stages"].items() if s["status"] == "done"] == ["detect", "microbench"]
    assert doc["microbench"]["read_gbs"] == 9.0

    calls.clear()
    _fake_stages(monkeypatch, calls)
    doc, path2 = run_profile(ProfileOptions(mode="quick", out=tmp_path, resume=path))
    assert path2 == path
    assert calls == ["tune", "decode", "calibrate", "predict"]  # finished stages are not run again
    assert all(s["status"] == "done" for s in load_profile(path)["stages"].values())


def test_failed_stage_is_recorded_and_run_continues(tmp_path, monkeypatch):
    calls = []
    _fake_stages(monkeypatch, calls, fail_at="tune")
    doc, path = run_profile(ProfileOptions(mode="quick", out=tmp_path))
    assert calls[-1] == "predict"
    st = load_profile(path)["stages"]["tune"]
    assert st["status"] == "failed" and "planted out of memory" in st["error"]


def test_resume_with_other_options_is_refused(tmp_path, monkeypatch):
    calls = []
    _fake_stages(monkeypatch, calls)
    _, path = run_profile(ProfileOptions(mode="quick", out=tmp_path))
    with pytest.raises(QlabError, match="same --quick"):
        run_profile(ProfileOptions(mode="quick", out=tmp_path, resume=path, quants=["Q8_0"]))


def test_corrupt_profile_names_file_and_field(tmp_path):
    doc = new_document(ProfileOptions(mode="quick"))
    doc["microbench"] = {"read_gbs": -1, "copy_gbs": 1, "matmul_tflops": {}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(QlabError, match=r"bad\.json.*microbench/read_gbs"):
        load_profile(bad)
    (tmp_path / "trunc.json").write_text(json.dumps(doc)[:50])
    with pytest.raises(QlabError, match="not JSON"):
        load_profile(tmp_path / "trunc.json")


def test_new_document_is_valid():
    validate_profile(new_document(ProfileOptions()))


def test_microbench_measures_positive_rates():
    r = microbench.read_bandwidth("cpu", nbytes=1 << 24, repeats=3)
    c = microbench.copy_bandwidth("cpu", nbytes=1 << 24, repeats=3)
    m = microbench.matmul_rate("cpu", "float32", n=128, repeats=3)
    assert r["gbs"] > 0.1 and c["gbs"] > 0.1 and m["tflops"] > 0
    assert r["bytes"] == 1 << 24 and m["flops"] == 2 * 128**3


def _rc(argv) -> int:
    """Exit code of `qlab ARGV`, whether a usage error returns 2 or exits with it (argparse)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_cli_bad_input(capsys, tmp_path):
    assert _rc(["profile", "--gpu", "cuda", "--quick", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert _rc(["profile", "--budget", "0"]) == 2
    assert _rc(["profile", "--contexts", "4k,abc"]) == 2
    assert _rc(["profile", "--resume", "/nonexistent.json"]) == 2


def _measured_cpu_profile(decode_rows):
    doc = new_document(ProfileOptions(mode="quick"))
    doc["device"] = {"id": "cpu-host", "name": "test cpu", "kind": "cpu", "source": "cpu", "known": False,
                     "specs": {"vendor": "cpu", "kind": "cpu", "architecture": "x86", "memory_gb": 24.0,
                               "mem_bandwidth_gbs": 12.0, "fp32_tflops": 0.1, "bf16_tflops": 0.2},
                     "details": {"measured_specs": ["mem_bandwidth_gbs", "fp32_tflops", "bf16_tflops"]}}
    doc["microbench"] = {"read_gbs": 12.0, "copy_gbs": 10.0, "matmul_tflops": {"float32": 0.08}}
    doc["decode"] = [{"quant": q, "context": c, "layers_run": 4, "tok_s": t * 16, "scaled_tok_s": t}
                     for q, c, t in decode_rows]
    return doc


def test_calibration_reproduces_the_measured_decode_loop():
    from qlab.predict import predict
    from qlab.predict.calibrate.from_profile import calibration_from_profile

    doc = _measured_cpu_profile([("Q8_0", 4096, 0.31), ("Q4_K_M", 4096, 0.52)])
    doc["calibration"] = calibration_from_profile(doc)
    validate_profile(doc)
    for row in doc["calibration"]["check"]:
        assert abs(row["error_pct"]) < 1.0, row
    for quant, measured in (("Q8_0", 0.31), ("Q4_K_M", 0.52)):
        p = predict("cpu-host", "qwen3.6-27b", quant, 4096, profile=doc)
        assert p["basis"] == "measured"
        assert p["decode_tok_s"] == pytest.approx(measured, rel=0.01)
    # the measured specs are what the prediction stands on, not the hwdb's estimate for this CPU
    slower = _measured_cpu_profile([("Q8_0", 4096, 0.31)])
    slower["calibration"] = calibration_from_profile(slower)
    assert predict("cpu-host", "qwen3.6-27b", "Q8_0", 4096, profile=slower)["decode_tok_s"] == pytest.approx(0.31, rel=0.01)
