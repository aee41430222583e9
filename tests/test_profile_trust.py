"""Profiles you can trust on a machine qlab has never seen: each condition of the other machine is forced here,
so every path runs on any CPU (issue 18): a dtype without instructions, a noisy probe, a fit that cannot
reproduce its decode, another machine's profile, a broken kernel impl; plus the file and input checks."""

import copy
import json

import pytest

from qlab.cli import main
from qlab.errors import QlabError
from qlab.predict import predict
from qlab.predict.calibrate.from_profile import calibration_from_profile
from qlab.profile import microbench, stages
from qlab.profile.machine import differences, fingerprint_here, require_this_machine
from qlab.profile.options import ProfileOptions
from qlab.profile.runner import new_document, run_profile
from qlab.profile.schema import load_profile, validate_profile

AVX2_FLAGS = {"sse4_2", "avx", "avx2", "fma", "f16c"}


def _rate(tflops: float, spread: float = 0.02) -> dict:
    return {"tflops": tflops, "spread": spread, "supported": True}


def _avx2_microbench(read_gbs: float = 11.0) -> dict:
    """What the AVX2-only EPYC measured: bf16 converted element by element (0.0007 TFLOPS)."""
    mm = {"float32": _rate(0.09), "bfloat16": _rate(0.0007)}
    microbench.check_rates(mm)
    return microbench.summarize({"read": {"gbs": read_gbs, "spread": 0.05}, "copy": {"gbs": 9.0, "spread": 0.05},
                                 "matmul": mm, "threads": 2})


def _host_profile(decode_rows, mb=None, bf16_estimate=0.2) -> dict:
    """A cpu-host profile of *this* machine (fingerprint included), with the given decode rows."""
    doc = new_document(ProfileOptions(mode="quick"))
    doc["device"] = {"id": "cpu-host", "name": "test cpu", "kind": "cpu", "source": "cpu", "known": True,
                     "specs": {"vendor": "cpu", "kind": "cpu", "architecture": "x86", "memory_gb": 24.0,
                               "mem_bandwidth_gbs": 30.0, "fp32_tflops": 0.5, "bf16_tflops": bf16_estimate},
                     "details": {}}
    doc["fingerprint"] = fingerprint_here(gpu=False)
    doc["microbench"] = mb or _avx2_microbench()
    stage_opts = ProfileOptions(mode="quick")
    with _quiet_microbench(doc["microbench"]):
        stages.stage_microbench(doc, stage_opts, stages.Context(log=lambda m: None))
    doc["decode"] = [{"quant": q, "context": c, "layers_run": 4, "tok_s": t * 10, "scaled_tok_s": t}
                     for q, c, t in decode_rows]
    return doc


class _quiet_microbench:
    """Make stage_microbench take `mb` instead of measuring."""

    def __init__(self, mb):
        self.mb, self.saved = mb, None

    def __enter__(self):
        self.saved = microbench.run_all
        microbench.run_all = lambda *a, **k: copy.deepcopy(self.mb)

    def __exit__(self, *exc):
        microbench.run_all = self.saved


# ------------------------------------------------------------------ probes that are physically sane
def test_dtype_without_instructions_is_unsupported():
    assert microbench.matmul_support("cpu", "bfloat16", AVX2_FLAGS)
    assert microbench.matmul_support("cpu", "float16", AVX2_FLAGS)
    assert microbench.matmul_support("cpu", "bfloat16", AVX2_FLAGS | {"avx512_bf16"}) is None
    assert microbench.matmul_support("cpu", "float32", set()) is None
    assert microbench.matmul_support("cuda", "bfloat16", capability=(7, 5))
    assert microbench.matmul_support("cuda", "bfloat16", capability=(8, 0)) is None


def test_slow_dtype_is_never_the_compute_peak():
    mb = _avx2_microbench()
    assert "bfloat16" in mb["unsupported"] and set(mb["matmul_tflops"]) == {"float32"}
    # the flags claimed bf16 (an estimate of 0.2 TFLOPS), the probe said otherwise: no bf16 peak remains
    doc = _host_profile([("Q4_K_M", 4096, 0.6)])
    assert "bf16_tflops" not in doc["device"]["specs"]
    assert doc["device"]["details"]["unsupported_specs"] == ["bf16_tflops"]
    doc["calibration"] = calibration_from_profile(doc)
    p = predict("cpu-host", "qwen3.6-27b", "Q4_K_M", 4096, profile=doc)
    assert p["bound"] == "memory"            # the AVX2 profile came out "compute-bound" on the bf16 probe


def test_noisy_probe_is_remeasured_then_flagged():
    spreads = iter([0.6, 0.5])
    r = microbench._steady(lambda: {"gbs": 10.0, "spread": next(spreads)})
    assert r["noisy"] and r["remeasured"] and r["spread"] == 0.5 and r["spreads"] == [0.6, 0.5]
    spreads = iter([0.6, 0.05])
    r = microbench._steady(lambda: {"gbs": 10.0, "spread": next(spreads)})
    assert not r["noisy"] and r["spread"] == 0.05
    mb = microbench.summarize({"read": {"gbs": 9.0, "spread": 0.6, "noisy": True},
                               "copy": {"gbs": 9.0, "spread": 0.1}, "matmul": {"float32": _rate(0.1)}})
    assert mb["noisy"] == {"read": 0.6}


def test_roofline_point_classifies_decode_as_memory_bound():
    from qlab.profile.roofline import roofline_points

    doc = _host_profile([("Q4_K_M", 4096, 0.6)])
    (p,) = roofline_points(doc)
    assert p["bound"] == "memory" and p["intensity_flop_per_byte"] < p["ridge_flop_per_byte"]
    assert 0 < p["of_roofline"] <= 1.0 + 1e-9


# ------------------------------------------------------------------ calibration that checks itself
def test_calibrated_profile_reproduces_its_own_decode():
    doc = _host_profile([("Q4_K_M", 4096, 0.62), ("Q8_0", 4096, 0.35)])
    doc["calibration"] = cal = calibration_from_profile(doc)
    validate_profile(doc)
    assert cal["basis"] == "measured" and all(abs(c["error_pct"]) <= 10 for c in cal["check"])
    for quant, measured in (("Q4_K_M", 0.62), ("Q8_0", 0.35)):
        p = predict("cpu-host", "qwen3.6-27b", quant, 4096, profile=doc)
        assert p["basis"] == "measured" and p["decode_tok_s"] == pytest.approx(measured, rel=0.10)


def test_kv_efficiency_comes_from_the_decode_growth_with_depth():
    """The attention-decode kernel probe said 0.40 of the read bandwidth on the 2-core EPYC where the decode loop
    grew with depth as 0.20 would: one weight factor could not fit both depths (-29 % / +35 %) and the profile
    fell back to the class. Rows generated with kv 0.2 and a K-quant factor 1.3 must give back exactly those."""
    truth = {"device_id": "cpu-host", "efficiencies": {"weights": 1.0, "kv": 0.2, "dequant_ops": {"kquant": 0.0},
                                                        "family_factor": {"kquant": 1.3}}}
    doc = _host_profile([])
    view = {"device": doc["device"], "calibration": truth}
    rows = [("Q4_K_M", c, predict("cpu-host", "qwen3.6-27b", "Q4_K_M", c, profile=view)["decode_tok_s"])
            for c in (4096, 32768)]
    doc = _host_profile(rows)
    doc["kernels"] = [{"op": "attention_decode", "impl": "sdpa", "achieved_gbs": 0.4 * 11.0}]
    doc["calibration"] = cal = calibration_from_profile(doc)
    validate_profile({k: v for k, v in doc.items() if k != "kernels"})   # the probe row is a stub
    assert cal["basis"] == "measured" and cal["kv_from"] == "the decode's growth with depth"
    assert cal["efficiencies"]["kv"] == pytest.approx(0.2, rel=0.02)
    assert cal["efficiencies"]["family_factor"]["kquant"] == pytest.approx(1.3, rel=0.02)
    assert all(abs(c["error_pct"]) < 1 for c in cal["check"])
    one_depth = _host_profile(rows[:1])
    one_depth["kernels"] = doc["kernels"]
    assert calibration_from_profile(one_depth)["kv_from"] == "the best tuned attention-decode kernel"


def test_fit_that_cannot_reproduce_its_decode_falls_back_to_the_class():
    # one quant, two depths that no weight factor and plausible KV efficiency explain (the 32K row is 20x slower)
    doc = _host_profile([("Q4_K_M", 4096, 0.6), ("Q4_K_M", 32768, 0.03)])
    doc["calibration"] = cal = calibration_from_profile(doc)
    validate_profile(doc)
    assert cal["basis"] == "class" and cal["efficiencies"] == {}
    assert any("32768" in p and "measured" in p for p in cal["problems"])
    assert len(cal["check_class"]) == 2
    assert predict("cpu-host", "qwen3.6-27b", "Q4_K_M", 4096, profile=doc)["basis"] == "class"


def test_implausible_ratio_is_recorded_not_clamped():
    doc = _host_profile([("Q8_0", 4096, 0.35)])
    doc["device"]["specs"]["bf16_tflops"] = 0.0007          # an old profile: the bf16 probe as the peak
    doc["device"]["details"]["unsupported_specs"] = []
    cal = calibration_from_profile(doc)
    assert "compute" not in cal.get("fitted", cal["efficiencies"])
    assert any(p.startswith("compute:") and "outside the plausible" in p for p in cal["problems"])
    assert cal["basis"] == "class"                          # compute-bound on 0.7 GFLOP/s: no factor solves it


def test_summary_says_when_the_calibration_is_not_published(capsys):
    from rich.console import Console

    from qlab.profile.summary import print_checks

    doc = _host_profile([("Q4_K_M", 4096, 0.6), ("Q4_K_M", 32768, 0.03)])
    doc["calibration"] = calibration_from_profile(doc)
    print_checks(doc, Console(file=None, width=200))
    out = capsys.readouterr().out
    assert "not published as measured" in out and "basis: class" in out and "off" in out


# ------------------------------------------------------------------ profiles belong to one machine
def _other_machine(doc):
    doc = copy.deepcopy(doc)
    doc["fingerprint"]["cpu"] = dict(doc["fingerprint"]["cpu"], model="AMD EPYC 7B12 (elsewhere)",
                                     flags=sorted(AVX2_FLAGS))
    return doc


def test_fingerprint_mismatch_is_refused(tmp_path, capsys):
    doc = _host_profile([("Q8_0", 4096, 0.35)])
    doc["calibration"] = calibration_from_profile(doc)
    require_this_machine(doc, "here")                        # this machine's own profile passes
    other = _other_machine(doc)
    with pytest.raises(QlabError, match="another machine.*model"):
        require_this_machine(other, "p.json")
    assert differences({"cpu": {"cores": 2}, "read_gbs": 33.0}, {"cpu": {"cores": 2}, "read_gbs": 11.0})
    assert not differences({"cpu": {"cores": 2}, "read_gbs": 33.0, "read_noisy": True},
                           {"cpu": {"cores": 2}, "read_gbs": 11.0})     # a loaded machine is not another one
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert main(["predict", "--hw", "cpu-host", "--profile", str(path), "--quant", "Q8_0", "--context", "4096"]) == 2
    err = capsys.readouterr().err
    assert "another machine" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    pdir = tmp_path / "profiles"
    pdir.mkdir()
    (pdir / "other.json").write_text(json.dumps(other))
    assert main(["report", "--profiles", str(pdir), "--hw", "rtx-3090", "--out", str(tmp_path / "r.html")]) == 2
    assert "another machine" in capsys.readouterr().err


def test_profile_without_fingerprint_is_refused_for_the_host():
    doc = _host_profile([("Q8_0", 4096, 0.35)])
    del doc["fingerprint"]
    with pytest.raises(QlabError, match="without a machine fingerprint"):
        require_this_machine(doc, "old.json")


def _fake_run(monkeypatch, interrupt_at=None):
    def make(name):
        def stage(doc, opts, ctx):
            if name == interrupt_at:
                raise KeyboardInterrupt
            if name == "detect":
                doc["device"] = {"id": "cpu-host", "name": "test cpu", "kind": "cpu", "source": "cpu", "known": True,
                                 "specs": {"mem_bandwidth_gbs": 10.0, "memory_gb": 16.0}, "details": {}}
                doc["fingerprint"] = fingerprint_here(gpu=False)
        return stage

    import qlab.profile.runner as runner

    monkeypatch.setattr(runner, "STAGES", {n: make(n) for n in stages.STAGES})


def test_resume_of_another_machines_profile_is_refused(tmp_path, monkeypatch):
    _fake_run(monkeypatch)
    doc, path = run_profile(ProfileOptions(mode="quick", out=tmp_path))
    path.write_text(json.dumps(_other_machine(load_profile(path))))
    with pytest.raises(QlabError, match="--resume.*another machine"):
        run_profile(ProfileOptions(mode="quick", out=tmp_path, resume=path))


def test_two_runs_in_the_same_second_get_two_files(tmp_path, monkeypatch):
    import qlab.profile.runner as runner

    _fake_run(monkeypatch)
    monkeypatch.setattr(runner, "_now", lambda: "2026-12-06T01:00:00Z")
    _, a = run_profile(ProfileOptions(mode="quick", out=tmp_path))
    _, b = run_profile(ProfileOptions(mode="quick", out=tmp_path))
    assert a != b and a.exists() and b.exists() and b.name.endswith("-2.json")


def test_ctrl_c_prints_the_resume_line(tmp_path, monkeypatch, capsys):
    _fake_run(monkeypatch, interrupt_at="tune")
    assert main(["profile", "--quick", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    (path,) = tmp_path.glob("*.json")
    assert f"--resume {path}" in err and "--quick" in err


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["calibration"]["efficiencies"].update(layer_overhead_us=float("nan")), "finite"),
    (lambda d: d["calibration"]["efficiencies"].update(family_factor="abc"), "family_factor"),
    (lambda d: d["calibration"]["efficiencies"].update(speedup=2.0), "speedup"),
])
def test_bad_profile_values_are_one_line_errors(tmp_path, capsys, edit, message):
    doc = _host_profile([("Q8_0", 4096, 0.35)])
    doc["calibration"] = calibration_from_profile(doc)
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))                           # json writes NaN as a bare NaN
    with pytest.raises(QlabError, match=message):
        load_profile(path)
    assert main(["predict", "--hw", "cpu-host", "--profile", str(path), "--quant", "Q8_0", "--context", "4096"]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.json" in err and "Traceback" not in err


# ------------------------------------------------------------------ kernels validated before they are timed
def test_broken_impl_is_excluded_and_recorded(monkeypatch):
    import torch

    from qlab.profile.kernel_check import validated_ops
    from qlab.tune.ops.builtin import BlockedMatmulOp
    from qlab.tune.ops.base import TunableOp

    good = BlockedMatmulOp("torch_blocked", {"block_n": [64]}, {"block_n": 64})

    class Broken(BlockedMatmulOp):
        def run(self, inputs, config):          # a deliberately wrong answer: off by one everywhere
            return super().run(inputs, config) + 1.0

    broken = Broken("torch_broken", {"block_n": [64]}, {"block_n": 64})
    assert isinstance(broken, TunableOp)
    monkeypatch.setattr("qlab.tune.tuner._get_ops", lambda op, device: [broken, good])
    torch.manual_seed(42)
    logs = []
    passed, failed = validated_ops("blocked_matmul", "cpu", logs.append)
    assert [t.impl for t in passed] == ["torch_blocked"]
    assert "torch_broken" in failed and "rel RMS" in failed["torch_broken"]
    assert any("excluded" in m for m in logs)


# ------------------------------------------------------------------ the whole model where it fits
@pytest.mark.slow   # ~10 s quiet, up to a minute on a loaded 2-core machine: a 64-layer model is written and run
def test_whole_model_decoded_next_to_the_slice(tmp_path, monkeypatch):
    """Default mode on a full-depth (64-layer), width-scaled model: the slice and the whole model are both
    decoded and the extrapolation error is recorded; a --quick run of the same machine then carries it."""
    from qlab.profile import whole_model

    monkeypatch.setenv("QLAB_HOME", str(tmp_path / "home"))
    opts = ProfileOptions(mode="default", quants=["Q8_0"], contexts=[64], out=tmp_path / "profiles",
                          width_scale=16, vocab=512, threads=1)
    monkeypatch.setattr(type(opts), "layers", property(lambda self: 4))
    monkeypatch.setattr(type(opts), "tokens", property(lambda self: 4))
    monkeypatch.setattr("qlab.profile.options.WHOLE_TOKENS", 4)
    doc = new_document(opts)
    doc["device"]["id"] = "cpu-host"
    doc["fingerprint"] = fingerprint_here(gpu=False)
    stages.stage_decode(doc, opts, stages.Context(log=lambda m: None))
    rows = {r["whole_model"]: r for r in doc["decode"]}
    assert rows[True]["layers_run"] == 64 and rows[False]["layers_run"] == 4, doc.get("whole_model")
    assert rows[True]["scaled_tok_s"] == rows[True]["tok_s"] > 0
    (e,) = doc["extrapolation"]
    # the error is the slice's first layers timed beside the whole model; the slice run on its own, read from the
    # whole model's file, is compared too
    side = rows[True]["side_by_side"]
    assert e["whole_tok_s"] == rows[True]["tok_s"] and e["slice_scaled_tok_s"] == side["scaled_tok_s"]
    assert e["error_pct"] == side["error_pct"] and side["layers"] == 4
    assert e["across_runs_error_pct"] == pytest.approx(100 * (rows[False]["scaled_tok_s"] / rows[True]["tok_s"] - 1))
    assert rows[False]["source"].endswith(".gguf")
    assert (tmp_path / "home" / "models").is_dir()
    validate_profile(doc)
    opts.out.mkdir()
    (opts.out / "cpu-host-default-1.json").write_text(json.dumps(doc))
    quick = new_document(ProfileOptions(mode="quick", out=opts.out))
    quick["fingerprint"] = doc["fingerprint"]
    stages.record_extrapolation(quick, ProfileOptions(mode="quick", out=opts.out), stages.Context())
    assert quick["extrapolation_carried"]["rows"][0]["error_pct"] == e["error_pct"]
    # another machine's whole-model run is not carried
    (opts.out / "cpu-host-default-1.json").write_text(json.dumps(_other_machine(doc)))
    quick.pop("extrapolation_carried")
    stages.record_extrapolation(quick, ProfileOptions(mode="quick", out=opts.out), stages.Context())
    assert "extrapolation_carried" not in quick
    # where the whole model does not fit, the slice stands alone and the profile says why
    assert not whole_model.plan("qwen3.6-27b", "Q8_0", 4096, available_bytes=8 << 30)["fits"]


def test_report_says_when_a_profile_calibration_is_not_published():
    from qlab.report.build import build_report

    doc = _host_profile([("Q4_K_M", 4096, 0.6), ("Q4_K_M", 32768, 0.03)])
    doc["calibration"] = calibration_from_profile(doc)
    html = build_report(["rtx-3090"], None, False, profiles=[doc])
    assert "Not published as measured" in html and "basis: class" in html


def test_whole_model_row_calibrates_and_corrects_the_slice_rows():
    from qlab.predict.calibrate.from_profile import measured_rows

    doc = _host_profile([("Q4_K_M", 4096, 0.60), ("Q4_K_M", 32768, 0.50)])
    doc["decode"].append({"quant": "Q4_K_M", "context": 4096, "layers_run": 64, "whole_model": True,
                          "tok_s": 0.66, "scaled_tok_s": 0.66})
    rows = {r["context"]: r for r in measured_rows(doc)}
    assert rows[4096]["whole_model"] and rows[4096]["scaled_tok_s"] == 0.66
    assert rows[32768]["scaled_tok_s"] == pytest.approx(0.50 * 0.66 / 0.60)
    doc["calibration"] = cal = calibration_from_profile(doc)
    assert cal["basis"] == "measured"
    assert predict("cpu-host", "qwen3.6-27b", "Q4_K_M", 4096, profile=doc)["decode_tok_s"] == pytest.approx(0.66, rel=0.1)


def test_bench_decode_whole_model_falls_back_to_its_gguf(tmp_path, monkeypatch, capsys):
    """`qlab bench decode` with no --layers: where the in-memory model (two layouts) does not fit but its
    memory-mapped GGUF does, the GGUF is written once and decoded."""
    import qlab.engine.bench as bench
    from qlab.engine.memory import DoesNotFitError
    from qlab.profile import whole_model

    calls = []

    def fake_run(model, layers, quant, context, tokens, device, threads, gguf, **kw):
        calls.append(gguf)
        if gguf is None:
            raise DoesNotFitError("the 64-layer model needs 33 GB")
        return {"gguf": gguf}

    monkeypatch.setattr(bench, "run_decode_bench", fake_run)
    monkeypatch.setattr(bench, "format_record", lambda r: f"decoded {r['gguf']}")
    monkeypatch.setattr(whole_model, "plan", lambda *a, **k: {"fits": True})
    monkeypatch.setattr(whole_model, "ensure_model_file", lambda *a, **k: tmp_path / "whole.gguf")
    assert main(["bench", "decode", "--quant", "Q4_K_M"]) == 0
    assert calls == [None, str(tmp_path / "whole.gguf")] and "whole.gguf" in capsys.readouterr().out
    monkeypatch.setattr(whole_model, "plan", lambda *a, **k: {"fits": False})
    calls.clear()
    assert main(["bench", "decode", "--quant", "Q4_K_M"]) == 2     # the one-line does-not-fit error stands
    assert calls == [None]


def test_absurd_decode_is_a_problem_not_a_factor():
    doc = _host_profile([("Q8_0", 4096, 0.0005)])     # 2000 s per token on 11 GB/s: not weight streaming
    cal = calibration_from_profile(doc)
    assert cal["basis"] == "class" and any("slower than the measured bandwidth" in p for p in cal["problems"])
    doc["calibration"] = cal
    validate_profile(doc)


def test_tune_stage_times_only_validated_impls(tmp_path, monkeypatch):
    import qlab.tune
    from qlab.tune.ops.builtin import BlockedMatmulOp

    class Broken(BlockedMatmulOp):
        def run(self, inputs, config):
            return super().run(inputs, config) * 0.5

    good = BlockedMatmulOp("torch_blocked", {"block_n": [64, 128]}, {"block_n": 64})
    broken = Broken("torch_broken", {"block_n": [64]}, {"block_n": 64})
    monkeypatch.setenv("QLAB_HOME", str(tmp_path))
    monkeypatch.setattr(qlab.tune, "OPS", ("blocked_matmul",), raising=False)
    monkeypatch.setattr("qlab.tune.tuner._get_ops", lambda op, device: [broken, good])
    monkeypatch.setattr(stages, "tune_shapes_for", lambda op, mode: [{"M": 1, "N": 256, "K": 128}])
    monkeypatch.setattr(stages, "tune_decode_step", lambda doc, opts, ctx: False)  # no decode step tuning
    monkeypatch.setattr(stages, "_engine_impl", lambda op, s, d: "torch_blocked")  # what the engine would run
    doc = _host_profile([])
    stages.stage_tune(doc, ProfileOptions(mode="quick", budget_s=4.0), stages.Context(log=lambda m: None))
    v = doc["kernel_validation"]["blocked_matmul"]
    assert v["passed"] == ["torch_blocked"] and "torch_broken" in v["failed"]
    assert {k["impl"] for k in doc["kernels"]} == {"torch_blocked"}     # the run went on with the good impl
    validate_profile(doc)


def test_contended_decode_is_measured_again_then_flagged(monkeypatch):
    """A decode timed while other processes held the CPUs is re-measured; the least contended run is kept, and
    flagged when every run was contended. The share is read from /proc/stat where there is one."""
    from qlab.measure import OthersCpu

    monkeypatch.setattr(stages, "CONTENDED_PAUSE_S", 0.0)
    logs = []
    shares = iter([0.7, 0.1])
    r = stages.uncontended(lambda: {"tok_s": 1.0, "others_cpu_share": next(shares)}, "Q4_K_M @ 4096", logs.append)
    assert r["others_cpu_share"] == 0.1 and r["contention_retries"] == 1 and "contended" not in r
    assert "measuring again" in logs[0]
    shares = iter([0.7, 0.5, 0.6])
    r = stages.uncontended(lambda: {"tok_s": 1.0, "others_cpu_share": next(shares)}, "Q8_0 @ 4096", logs.append)
    assert r["others_cpu_share"] == 0.5 and r["contended"] and "flagged" in logs[-1]
    assert stages.uncontended(lambda: {"others_cpu_share": None}, "x", logs.append)["contention_retries"] == 0
    with OthersCpu() as o:
        sum(range(10**6))
    assert o.share is None or 0.0 <= o.share <= 1.0


def test_probe_under_a_neighbour_is_remeasured_then_noisy(monkeypatch):
    """A steady probe (small spread) while other processes held the CPUs is not a steady machine."""
    from qlab import measure

    shares = iter([0.7, 0.6])

    class Busy:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.share = next(shares)

    monkeypatch.setattr(measure, "OthersCpu", Busy)
    r = microbench._steady(lambda: {"gbs": 10.0, "spread": 0.02})
    assert r["noisy"] and r["remeasured"] and r["others_cpu_share"] == 0.6
