"""Setups beside plain decode (qlab.predict.setups): MTP, several GPUs, offload, concurrency; their JSON
fields and bases; the published rows they are fitted on; bad combinations; the CLI flags."""

from __future__ import annotations

import json

import pytest

from qlab.errors import QlabError
from qlab.predict import breakdown, predict
from qlab.predict.setups import AUTO, DEFAULT_ACCEPTANCE, Setup

CONTRACT = {"hw", "model", "quant", "context", "batch", "decode_tok_s", "prefill_tok_s", "ttft_s", "memory", "fits",
            "bound", "basis"}
BASES = {"calibrated", "measured", "roofline", "fitted", "assumed", "given", "published", "fit"}


def _p(setup=None, hw="rtx-3090", ctx=32768, **kw):
    return predict(hw, "qwen3.6-27b", "Q4_K_M", ctx, setup=setup, **kw)


def test_setups_add_fields_and_keep_the_contract():
    plain = _p()
    r = _p(Setup(gpus=2, split="tensor", link="pcie4", mtp=True))
    assert set(plain) == CONTRACT
    assert CONTRACT < set(r) and {"setup", "terms", "per_gpu_gb"} <= set(r)
    assert r["memory"] == plain["memory"] and r["prefill_tok_s"] == plain["prefill_tok_s"]
    assert r["setup"] == {"gpus": 2, "split": "tensor", "link": "pcie4", "mtp": True, "draft": 2,
                          "acceptance": DEFAULT_ACCEPTANCE[2]}
    assert all(t["basis"] in BASES for t in r["terms"].values())
    assert {"allreduce_s", "mtp_draft_s", "mtp_verify_extra_s", "mtp_tokens_per_step"} <= set(r["terms"])


def test_mtp_speeds_up_more_with_higher_acceptance_and_pays_for_drafts():
    base = _p()["decode_tok_s"]
    lo = _p(Setup(mtp=True, acceptance=0.3))["decode_tok_s"]
    hi = _p(Setup(mtp=True, acceptance=0.9))["decode_tok_s"]
    assert base < lo < hi < 3 * base       # 2 drafts: at most 3 tokens per step, minus the cost of drafting
    zero = _p(Setup(mtp=True, draft=4, acceptance=0.0))["decode_tok_s"]
    assert zero < base                     # nothing accepted: the drafts and the wider verify are pure cost


def test_tensor_parallel_beats_layer_split_and_nvlink_beats_pcie():
    one = _p()["decode_tok_s"]
    layer = _p(Setup(gpus=2, split="layer"))
    tp_pcie = _p(Setup(gpus=2, split="tensor", link="pcie3"))["decode_tok_s"]
    tp_nv = _p(Setup(gpus=2, split="tensor", link="nvlink"))["decode_tok_s"]
    assert layer["decode_tok_s"] <= one < tp_pcie < tp_nv < 2 * one
    assert layer["per_gpu_gb"] < _p()["memory"]["total_gb"]


def test_offload_curve_rises_with_gpu_layers_and_auto_fits():
    curve = [_p(Setup(gpu_layers=g), hw="rtx-4060-ti-16gb", ctx=4096)["decode_tok_s"] for g in (0, 16, 32, 48, 64)]
    assert curve == sorted(curve) and curve[-1] > 2 * curve[0]
    auto = _p(Setup(gpu_layers=AUTO), hw="rtx-4060-ti-16gb", ctx=4096)
    assert auto["fits"] and 30 < auto["setup"]["gpu_layers"] < 65 and auto["per_gpu_gb"] <= 16


def _offload_tok_s(**host):
    return _p(Setup(gpu_layers=40, **host), hw="rtx-4060-ti-16gb", ctx=4096)["decode_tok_s"]


def test_offloaded_layers_run_at_the_lesser_of_bandwidth_and_cores():
    """The host streams offloaded weights at min(host_eff x RAM bandwidth, host_core_gbs x cores): more
    bandwidth helps a dual-channel desktop with many cores, more cores help a host short of them, and
    neither helps past the other limit."""
    assert _offload_tok_s(host_bw_gbs=60.0, host_cores=32) > _offload_tok_s(host_bw_gbs=40.0, host_cores=32)
    assert _offload_tok_s(host_bw_gbs=400.0, host_cores=8) > _offload_tok_s(host_bw_gbs=400.0, host_cores=4)
    assert _offload_tok_s(host_bw_gbs=400.0, host_cores=4) == _offload_tok_s(host_bw_gbs=800.0, host_cores=4)
    r = _p(Setup(gpu_layers=40, host_cores=6), hw="rtx-4060-ti-16gb", ctx=4096)
    assert r["setup"]["host_cores"] == 6 and r["terms"]["host_cores"] == {"value": 6, "basis": "given"}
    assert r["terms"]["host_stream_gbs"]["basis"] in {"fitted", "assumed"}


def test_gpu_layers_count_the_output_layer_first():
    """llama.cpp's -ngl k gives the GPU the output layer first, then the last k-1 blocks (i_gpu_start =
    n_layer + 1 - k): -ngl 1 moves only the output matrix; -ngl n_layers still leaves a block on the host."""
    def run(g):
        return _p(Setup(gpu_layers=g), hw="rtx-4060-ti-16gb", ctx=4096)

    none, head_only = run(0), run(1)
    assert head_only["decode_tok_s"] > none["decode_tok_s"]
    assert head_only["per_gpu_gb"] - none["per_gpu_gb"] == pytest.approx(1.0, abs=0.4)  # the 248k x 5120 Q6_K head
    assert run(64)["decode_tok_s"] < run(65)["decode_tok_s"]


def test_concurrency_counts_sequences_that_fit():
    r = _p(hw="h100-sxm", concurrency=True)
    c = r["concurrency"]
    # 80 GB minus 16.5 GB weights and ~1.2 GB overhead, ~2.3 GB per 32K sequence (KV in 16 layers + state)
    assert 20 <= c["max_sequences"] <= 30
    assert c["aggregate_tok_s"] > r["decode_tok_s"] and c["per_user_tok_s"] < r["decode_tok_s"]
    assert _p(hw="rtx-3060-12gb", concurrency=True)["concurrency"]["max_sequences"] == 0


@pytest.mark.parametrize("setup,hw,model,msg", [
    (Setup(mtp=True), "rtx-3090", "llama-3-8b", "has no MTP layer"),
    (Setup(gpus=2), "m4-max-40c", "qwen3.6-27b", "not a card that can be paired"),
    (Setup(gpu_layers=10), "m4-max-40c", "qwen3.6-27b", "nothing to offload"),
    (Setup(gpus=2, split="tensor", link="nvlink"), "rtx-4090", "qwen3.6-27b", "no NVLink"),
    (Setup(gpus=3, split="tensor"), "rtx-3090", "llama-3-8b", "do not divide"),
    (Setup(gpu_layers=99), "rtx-3090", "qwen3.6-27b", "expected 0..65"),
    (Setup(gpu_layers=10, host_cores=0), "rtx-3090", "qwen3.6-27b", "host_cores: expected a positive"),
])
def test_bad_combinations_are_one_line(setup, hw, model, msg):
    with pytest.raises(QlabError, match=msg):
        predict(hw, model, "Q4_K_M", 4096, setup=setup)


def test_breakdown_lists_setup_terms():
    b = breakdown("rtx-3090", "qwen3.6-27b", "Q4_K_M", 4096, setup=Setup(mtp=True, draft=3))
    assert b["mtp_tokens_per_step"] == pytest.approx(1 + 3 * 0.72) and b["mtp_draft_s"] > 0


def test_published_setup_rows_within_the_checked_in_errors():
    """The checked-in fit reproduces what calibration.json says it achieves on the published rows."""
    import statistics

    from qlab.predict.calibrate.setups import load_setup_rows, ratio
    from qlab.predict.efficiency import load_calibration

    cal = load_calibration()
    rows = load_setup_rows()
    assert len(rows) >= 20 and len({r["source"] for r in rows}) >= 10
    for setup, e in cal["errors"]["setups"].items():
        errs = [abs(ratio(r, cal["setups"]) - 1) for r in rows if r["setup"] == setup]
        assert statistics.median(errs) == pytest.approx(e["mdape"], abs=0.003), setup
        assert e["mdape"] < 0.2


def test_cli_setup_flags(capsys):
    from qlab.cli import main

    assert main(["predict", "--hw", "rtx-3090", "--gpus", "2", "--split", "tensor", "--link", "pcie4", "--quant",
                 "Q4_K_M", "--context", "32k", "--mtp", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["setup"]["split"] == "tensor" and "terms" in r
    assert main(["predict", "--hw", "rtx-4060-ti-16gb", "--offload-layers", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["setup"]["gpu_layers"] == 45
    assert main(["predict", "--hw", "h100-sxm", "--concurrency"]) == 0
    assert "sequences fit" in capsys.readouterr().out
    tps = {}
    for threads in (2, 16):   # a host this short of cores runs its layers at cores x per-core rate, not its RAM's
        assert main(["predict", "--hw", "rtx-4090", "--gpu-layers", "40", "--host-threads", str(threads),
                     "--json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["setup"]["host_cores"] == threads
        tps[threads] = r["decode_tok_s"]
    assert tps[2] < tps[16]
    for argv, msg in ((["--hw", ","], "--hw: expected one or more"), (["--hw", "rtx-3090", "--quant", ""], "--quant"),
                      (["--hw", "rtx-3090", "--context", ""], "--context"),
                      (["--hw", "rtx-3090", "--context", "1.0e400"], "--context: expected an integer"),
                      (["--hw", "rtx-3090", "--split", "tensor"], "only meaningful with --gpus"),
                      (["--hw", "rtx-3090", "--draft", "3"], "only meaningful with --mtp"),
                      (["--hw", "rtx-3090", "--host-threads", "4"], "only meaningful with --gpu-layers")):
        assert main(["predict", *argv]) == 2, argv
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:   # argparse's own usage error, also exit 2
        main(["predict", "--hw", "rtx-3090", "--gpu-layers", "9", "--host-threads", "0"])
    assert e.value.code == 2 and "--host-threads: expected an integer >= 1" in capsys.readouterr().err


def test_hundred_thousand_scenarios_under_ten_cpu_seconds(tmp_path, capsys):
    """Issue 23: `predict --scenarios` with 100k distinct rows, JSON and table output. CPU time, not wall
    time: the 2-core CI machine is shared."""
    import random
    import time

    from qlab.cli import main

    rnd = random.Random(42)
    hws = ["rtx-3090", "rtx-4090", "h100-sxm", "m4-max-40c", "dgx-spark", "rx-7900-xtx", "b200", "a100-80gb-sxm"]
    models = ["qwen3.6-27b", "llama-3-8b", "qwen3.6-35b-a3b", "gemma-3-27b", "qwen3-32b"]
    quants = ["Q4_K_M", "Q8_0", "Q6_K", "IQ4_XS"]
    rows = [f"{rnd.choice(hws)},{rnd.choice(models)},{rnd.choice(quants)},{rnd.randint(0, 32768)},{rnd.choice([1, 2, 8])}"
            for _ in range(100_000)]
    csv = tmp_path / "s.csv"
    csv.write_text("hw,model,quant,context,batch\n" + "\n".join(rows) + "\n")
    for mode in (["--json"], []):
        t = time.process_time()
        assert main(["predict", "--scenarios", str(csv), *mode]) == 0
        dt = time.process_time() - t
        out = capsys.readouterr().out
        print(f"100k scenarios {mode or 'table'}: {dt:.1f} s CPU")
        assert dt < 10.0 and out.count("qwen3") >= 40_000


def test_excluded_setup_rows_state_why():
    """A published row left out of the setup fit is kept in setups_excluded.csv with its source and a reason,
    and is not also in the fitted rows (nothing is dropped silently)."""
    import csv

    from qlab.predict.calibrate.rows import DATA

    with open(DATA / "setups_excluded.csv", newline="") as f:
        excluded = list(csv.DictReader(f))
    with open(DATA / "setups_published.csv", newline="") as f:
        fitted = {(r["source"], r["hw"], r["measured_tok_s"]) for r in csv.DictReader(f)}
    assert excluded
    for r in excluded:
        assert r["reason"].strip() and r["source"].startswith("https://"), r
        assert (r["source"], r["hw"], r["measured_tok_s"]) not in fitted, r


def test_metal_small_batch_of_kquant_rows_does_not_amortize():
    """Published llama-batched-bench: on an M4 (Metal) 8 rows of a K-quant 27B give 1.22x the tok/s of one,
    on an RTX 3090 3.34x; Q8_0 on an M2 Ultra still amortizes (4 rows: 2.84x)."""
    def gain(hw, quant, b):
        return predict(hw, "qwen3.6-27b", quant, 160, b)["decode_tok_s"] / predict(hw, "qwen3.6-27b", quant, 160)["decode_tok_s"]

    assert gain("m4", "Q3_K_M", 8) < 1.5
    assert gain("rtx-3090", "Q4_0", 8) > 2.5
    assert gain("m2-ultra-76c", "Q8_0", 4) > 2.0


def test_metal_batches_above_eight_rows_read_the_weights_once():
    """Above 8 rows Metal runs the mat-mat kernel: 16 sequences must gain over 8 (no per-row re-read)."""
    t8, t16 = (predict("m3-ultra", "qwen3.6-27b", "Q4_K_M", 4096, b)["decode_tok_s"] for b in (8, 16))
    assert t16 > 2 * t8
