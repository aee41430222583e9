"""The predictor: the `qlab predict --json` contract, the checked-in calibration against the published rows,
physics (depth, bandwidth, MoE, batch), profiles, CLI errors and speed."""

from __future__ import annotations

import json
import statistics
import time

import pytest

from qlab.errors import QlabError
from qlab.predict import efficiencies_from_profile, predict, predict_many
from qlab.predict.calibrate.rows import DEFAULT_CSV, ape, load_rows
from qlab.predict.efficiency import load_calibration

CONTRACT = {"hw": str, "model": str, "quant": str, "context": int, "batch": int, "decode_tok_s": float,
            "prefill_tok_s": float, "ttft_s": float, "memory": dict, "fits": bool, "bound": str, "basis": str}
MEMORY = ("weights_gb", "kv_cache_gb", "state_gb", "overhead_gb", "total_gb")


def test_contract_keys_and_types():
    r = predict("rtx-3090", "qwen3.6-27b", "q4_k_m", 4096)
    assert set(r) == set(CONTRACT)
    for k, t in CONTRACT.items():
        assert isinstance(r[k], t), (k, r[k])
    assert set(r["memory"]) == set(MEMORY) and all(isinstance(r["memory"][k], float) for k in MEMORY)
    assert (r["hw"], r["model"], r["quant"], r["context"], r["batch"]) == ("rtx-3090", "qwen3.6-27b", "Q4_K_M", 4096, 1)
    assert r["bound"] in ("memory", "compute") and r["basis"] in ("roofline", "calibrated", "measured")
    assert r["basis"] == "calibrated" and r["fits"] is True
    assert r["memory"]["weights_gb"] == pytest.approx(16.55, rel=0.01)
    assert 0 < r["decode_tok_s"] < 936 / 16.5       # below the bare roofline
    assert r["ttft_s"] > 4096 / r["prefill_tok_s"] * 0.9


@pytest.mark.skipif(not DEFAULT_CSV.exists(), reason="shared calibration CSV not present")
def test_checked_in_calibration_mdape_within_10_percent():
    cal = load_calibration()
    rows = load_rows(DEFAULT_CSV)
    errs = [ape(cal, r) for r in rows]
    mdape = statistics.median(errs)
    by_class = {}
    for r, e in zip(rows, errs):
        by_class.setdefault(r["class"], []).append(e)
    print(f"calibration MdAPE {100 * mdape:.1f}% over {len(rows)} rows; "
          + ", ".join(f"{c} {100 * statistics.median(v):.1f}%" for c, v in sorted(by_class.items())))
    assert mdape <= 0.10
    assert cal["errors"]["by_set"]["shared"]["mdape"] == pytest.approx(mdape, abs=0.002)  # the JSON says what it achieves
    # fit little: a handful of numbers per class, not one per device
    assert all(set(v) >= {"weights", "kv", "layer_overhead_us"} for v in cal["classes"].values())
    assert len(cal["classes"]) < len({r["hw"] for r in rows})


def test_supplement_qwen35_rows_within_10_percent():
    from qlab.predict.calibrate.rows import SUPPLEMENT_CSV

    cal = load_calibration()
    rows = load_rows(SUPPLEMENT_CSV, tag="supplement")
    assert {r["model"] for r in rows} <= {"qwen3.5-27b", "qwen3.6-27b"}
    errs = [ape(cal, r) for r in rows]
    print(f"Qwen3.5/3.6-27B supplement MdAPE {100 * statistics.median(errs):.1f}% over {len(rows)} rows")
    assert statistics.median(errs) <= 0.10 and max(errs) <= 0.2


def test_uncalibrated_class_is_roofline():
    assert predict("mi300x", "qwen3.6-27b", "Q4_K_M", 0)["basis"] == "roofline"


def test_decode_slows_with_depth_only_through_attention_layers():
    q36 = [predict("rtx-4090", "qwen3.6-27b", "Q4_K_M", c)["decode_tok_s"] for c in (0, 8192, 32768, 100_000)]
    assert q36 == sorted(q36, reverse=True) and q36[-1] < 0.9 * q36[0]
    # a dense model with 4x the attention layers and a bigger KV per token loses more at the same depth
    l3 = [predict("rtx-4090", "llama-3-8b", "Q4_K_M", c)["decode_tok_s"] for c in (0, 32768)]
    assert l3[1] / l3[0] < q36[2] / q36[0]


def test_bandwidth_and_quant_order():
    a = predict("rtx-3090", "qwen3.6-27b", "Q4_K_M", 4096)["decode_tok_s"]
    b = predict("rtx-5090", "qwen3.6-27b", "Q4_K_M", 4096)["decode_tok_s"]
    assert b > 1.3 * a
    q8 = predict("rtx-5090", "qwen3.6-27b", "Q8_0", 4096)["decode_tok_s"]
    assert q8 < b


def test_moe_reads_active_experts_only():
    from qlab.models.quant_mix import quantize
    from qlab.predict.workload import decode_step

    read = sum(decode_step("qwen3.6-35b-a3b", "Q4_K_M", 0).weight_bytes.values())
    file = quantize("qwen3.6-35b-a3b", "Q4_K_M").file_bytes
    assert 0.08 < read / file < 0.15            # ~3.45 B of 34.7 B params, minus the embedding table
    # batch 8 touches more distinct experts, but far fewer than 8x
    read8 = sum(decode_step("qwen3.6-35b-a3b", "Q4_K_M", 0, batch=8).weight_bytes.values())
    assert 2 * read < read8 < 8 * read
    moe = predict("m2-ultra", "qwen3.6-35b-a3b", "Q4_K_M", 0)["decode_tok_s"]
    dense = predict("m2-ultra", "qwen3.6-27b", "Q4_K_M", 0)["decode_tok_s"]
    assert moe > 2 * dense


def test_batch_weights_read_once():
    one = predict("h100-sxm", "qwen3.6-27b", "Q4_K_M", 4096, batch=1)
    eight = predict("h100-sxm", "qwen3.6-27b", "Q4_K_M", 4096, batch=8)
    assert 3 * one["decode_tok_s"] < eight["decode_tok_s"] < 8 * one["decode_tok_s"]
    assert eight["memory"]["kv_cache_gb"] == pytest.approx(8 * one["memory"]["kv_cache_gb"], rel=1e-3)
    # a dense attention model at a short context (no per-sequence DeltaNet state) turns compute-bound
    big = predict("h100-sxm", "llama-3-8b", "Q4_K_M", 16, batch=512)
    assert big["bound"] == "compute"


def test_kv_dtype_changes_kv_memory_and_speed_at_depth():
    f16 = predict("rtx-4090", "qwen3.6-27b", "Q4_K_M", 65536, kv_dtype="F16")
    q8 = predict("rtx-4090", "qwen3.6-27b", "Q4_K_M", 65536, kv_dtype="q8_0")
    assert q8["memory"]["kv_cache_gb"] == pytest.approx(f16["memory"]["kv_cache_gb"] * 34 / 64, rel=1e-3)
    # attention over a quantized cache is dequant-bound: it saves memory, not time (calibrated factor ~1)
    assert q8["decode_tok_s"] == pytest.approx(f16["decode_tok_s"], rel=0.15)


def test_context_limits_and_yarn_flag():
    with pytest.raises(QlabError, match="beyond llama-2-7b's maximum 4096"):
        predict("rtx-3090", "llama-2-7b", "Q4_0", 5000)
    r = predict("h200-sxm", "qwen3.6-27b", "Q4_K_M", 300_000)
    assert "YaRN" in r["warnings"][0]
    with pytest.raises(QlabError, match="maximum 1010000"):
        predict("h200-sxm", "qwen3.6-27b", "Q4_K_M", 2_000_000)


@pytest.mark.parametrize("kw,msg", [({"hw": "rtx-3091"}, "unknown device 'rtx-3091'; closest: rtx-3090"),
                                    ({"model": "qwen3.6-72b"}, "unknown model 'qwen3.6-72b'; closest"),
                                    ({"quant": "Q4_K_X"}, "unknown quant 'Q4_K_X'; closest: Q4_K_"),
                                    ({"kv_dtype": "F12"}, "unknown KV dtype 'F12'"),
                                    ({"batch": 0}, "batch: expected an integer >= 1")])
def test_bad_input(kw, msg):
    args = {"hw": "rtx-3090", "model": "qwen3.6-27b", "quant": "Q4_K_M", "context": 4096, **kw}
    with pytest.raises(QlabError, match=msg):
        predict(**args)


def test_profile_efficiencies_replace_fitted():
    base = predict("rtx-3090", "qwen3.6-27b", "Q4_K_M", 4096)
    prof = {"calibration": {"device_id": "rtx-3090", "efficiencies": {"weights": 0.5, "kv": 0.5,
                                                                      "layer_overhead_us": 0.0}}}
    r = predict("rtx-3090", "qwen3.6-27b", "Q4_K_M", 4096, profile=prof)
    assert r["basis"] == "measured" and r["decode_tok_s"] != base["decode_tok_s"]
    assert efficiencies_from_profile(prof).weights == 0.5
    for bad in ({}, {"calibration": {}}, {"calibration": {"efficiencies": {"weights": -1}}}):
        with pytest.raises(QlabError, match="profile"):
            efficiencies_from_profile(bad)


def test_cli_json_and_errors(tmp_path, capsys):
    from qlab.cli import main

    assert main(["predict", "--hw", "rtx-3090", "--model", "qwen3.6-27b", "--quant", "Q4_K_M", "--context", "4k",
                 "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert isinstance(one, dict) and one["context"] == 4096 and set(one) == set(CONTRACT)
    assert main(["predict", "--hw", "rtx-3090,m4-max", "--quant", "Q4_K_M,Q8_0", "--context", "0,32768",
                 "--json"]) == 0
    many = json.loads(capsys.readouterr().out)
    assert isinstance(many, list) and len(many) == 8
    assert main(["predict", "--hw", "rtx-3090", "--context", "1000,2000"]) == 0
    assert "decode tok/s" in capsys.readouterr().out
    assert main(["predict", "--hw", "rtx-9090"]) == 2
    assert "unknown device 'rtx-9090'" in capsys.readouterr().err
    csv = tmp_path / "s.csv"
    csv.write_text("hw,model,quant,context,batch\nrtx-3090,qwen3.6-27b,Q4_K_M,4096,1\n"
                   "rtx-3090,qwen3.6-27b,Q9_K,4096,1\n")
    assert main(["predict", "--scenarios", str(csv), "--json"]) == 2
    assert "line 3: unknown quant 'Q9_K'" in capsys.readouterr().err
    csv.write_text("hw,model,quant\nrtx-3090,qwen3.6-27b,Q4_K_M\n")
    assert main(["predict", "--scenarios", str(csv)]) == 2
    assert "missing column(s) context" in capsys.readouterr().err
    csv.write_text("hw,model,quant,context\nrtx-3090,qwen3.6-27b,Q4_K_M,lots\n")
    assert main(["predict", "--scenarios", str(csv)]) == 2
    assert "line 2: context: expected an integer" in capsys.readouterr().err


def test_thousand_scenarios_under_two_seconds():
    hws = ["rtx-3090", "rtx-4090", "rtx-5090", "h100-sxm", "m4-max-40c", "m3-max-40c", "dgx-spark", "rx-7900-xtx"]
    models = ["qwen3.6-27b", "llama-3-8b", "qwen3.6-35b-a3b", "gpt-oss-20b", "gemma-3-27b"]
    quants = ["Q4_K_M", "Q8_0", "Q6_K", "IQ4_XS", "Q5_K_M"]
    ctxs = [0, 4096, 16384, 32768, 65536]
    sc = [{"hw": h, "model": m, "quant": q, "context": c} for h in hws for m in models for q in quants for c in ctxs]
    assert len(sc) == 1000
    t = time.perf_counter()
    out = predict_many(sc)
    dt = time.perf_counter() - t
    print(f"1000 scenarios in {dt:.2f} s (cold caches, shared CPU)")
    assert len(out) == 1000 and dt < 2.0


def test_prefill_attention_term_grows_with_context():
    a = predict("rtx-3090", "qwen3.6-27b", "Q4_K_M", 8192)
    b = predict("rtx-3090", "qwen3.6-27b", "Q4_K_M", 65536)
    assert b["prefill_tok_s"] < a["prefill_tok_s"]              # the quadratic attention term
    assert b["ttft_s"] > 8 * a["ttft_s"]                         # superlinear in the prompt length
    g = predict("rtx-3090", "gemma-3-27b", "Q4_K_M", 65536)      # sliding layers cap their share
    g8 = predict("rtx-3090", "gemma-3-27b", "Q4_K_M", 8192)
    assert g["prefill_tok_s"] / g8["prefill_tok_s"] > 0.5


def test_cpu_host_predicts_with_cpu_defaults():
    r = predict("cpu-host", "qwen3.6-27b", "Q4_K_M", 1024)
    assert r["basis"] == "roofline" and r["bound"] == "memory" and r["decode_tok_s"] > 0


def test_breakdown_adds_up_to_the_step():
    from qlab.predict import breakdown

    parts = breakdown("rtx-4090", "qwen3.6-27b", "Q4_K_M", 65536)
    r = predict("rtx-4090", "qwen3.6-27b", "Q4_K_M", 65536)
    mem = parts["weights_s"] + parts["dequant_s"] + parts["kv_s"] + parts["state_s"]
    assert mem > parts["compute_s"]
    assert 1 / (mem + parts["layer_overhead_s"]) == pytest.approx(r["decode_tok_s"], rel=1e-3)
    assert parts["kv_s"] > parts["state_s"] > 0


def test_affine_depth_cache_matches_the_direct_sums():
    """predict() builds the step and the KV memory at a depth from cached coefficients (speed); they must
    equal the direct per-layer sums at any depth, sliding windows included."""
    import random

    from qlab.hwdb import get_device
    from qlab.models.loader import get_model
    from qlab.models.memory import memory
    from qlab.predict.core import memory_at, parts_at, step_parts
    from qlab.predict.efficiency import efficiencies_for
    from qlab.predict.workload import _decode_step_direct

    rnd = random.Random(42)
    for _ in range(200):
        m = get_model(rnd.choice(["qwen3.6-27b", "gemma-3-27b", "gpt-oss-20b", "llama-3-8b", "qwen3.6-35b-a3b"]))
        dev = get_device(rnd.choice(["rtx-3090", "h100-sxm", "m4-max-40c"]))
        c, b, kv = rnd.randint(0, 131072), rnd.choice([1, 2, 8]), rnd.choice(["F16", "Q8_0"])
        direct = step_parts(_decode_step_direct(m, "Q4_K_M", c, b, kv), dev, efficiencies_for(dev))
        fast = parts_at(dev, m, "Q4_K_M", c, b, kv, efficiencies_for(dev))
        assert fast == pytest.approx(direct, rel=1e-9, abs=1e-15), (m.id, c, b, kv)
        assert memory_at(m, "Q4_K_M", c, b, kv, "nvidia").kv_cache_gb == pytest.approx(
            memory(m, "Q4_K_M", c, b, kv, runtime="nvidia").kv_cache_gb, rel=1e-9, abs=1e-12)
