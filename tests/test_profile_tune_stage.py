"""The profile's tune stage tunes the decode step first, then exactly the impls that decode runs (issue 20)."""

from types import SimpleNamespace

from qlab.profile import stages
from qlab.profile.options import ProfileOptions


def _doc():
    return {"microbench": {"read_gbs": 10.0, "matmul_tflops": {"float32": 0.1}},
            "device": {"specs": {"mem_bandwidth_gbs": 10.0}}}


def _tunable(op, impl):
    return SimpleNamespace(op=op, impl=impl, full_shape=lambda s, d: dict(s))


def test_tune_stage_tunes_only_what_decode_runs(monkeypatch):
    import qlab.profile.kernel_check as kernel_check
    import qlab.tune.tuner as tuner

    # every validated tunable impl per op (recurrent_cpu has no tunables, so it is not among them)
    every = {"dequant_matmul": ["cpu_int8", "cpu_fp32", "naive"], "deltanet": ["chunk_torch", "naive"],
             "attention_decode": ["sdpa", "naive"], "attention_prefill": ["sdpa", "naive"]}
    # what the engine resolves per op and shape: recurrent_cpu for one token, chunk_torch for a prompt
    engine = {("deltanet", 1): "recurrent_cpu", ("deltanet", 64): "chunk_torch"}
    asked = {}

    def fake_tune_decode(**kw):
        asked.update(kw)
        return {"quant": kw["quant"], "context": kw["context"], "layers": 4, "threads": 2, "default_threads": 2,
                "impls": {}, "default_ms_per_token": 10.0, "tuned_ms_per_token": 9.0, "speedup": 1.11,
                "others_cpu_share": 0.05, "threads_cached": True, "resolved": [{"op": "deltanet", "impl": "recurrent_cpu"}, {"op": "dequant_matmul", "impl": "cpu_int8"}]}

    tuned = []
    monkeypatch.setattr(stages, "run_decode_tuner", fake_tune_decode)
    monkeypatch.setattr(kernel_check, "validated_ops",
                        lambda op, device, log: ([_tunable(op, i) for i in every[op]], {}))
    monkeypatch.setattr(tuner, "tune_task",
                        lambda top, shape, *a, **k: tuned.append((top.op, top.impl, shape["T"])) or {})
    monkeypatch.setattr(stages, "tune_shapes_for", lambda op, mode: [{"T": 1}, {"T": 64}])
    monkeypatch.setattr(stages, "_engine_impl",
                        lambda op, s, d: engine.get((op, s["T"]), {"dequant_matmul": "cpu_int8"}.get(op, "sdpa")))

    doc = _doc()
    opts = ProfileOptions(mode="quick", quants=["Q4_K_M", "Q8_0"], contexts=[4096])
    stages.stage_tune(doc, opts, stages.Context(torch_device="cpu", log=lambda m: None))

    assert asked["quant"] == "Q4_K_M" and asked["context"] == 4096 and asked["layers"] == opts.layers
    assert sorted(tuned) == sorted([("dequant_matmul", "cpu_int8", 1), ("dequant_matmul", "cpu_int8", 64),
                                    ("deltanet", "chunk_torch", 64), ("attention_decode", "sdpa", 1),
                                    ("attention_decode", "sdpa", 64), ("attention_prefill", "sdpa", 1),
                                    ("attention_prefill", "sdpa", 64)])   # nothing the engine does not run
    assert "recurrent_cpu" in doc["kernel_errors"]["deltanet"]            # said why it was not tuned
    assert doc["decode_tuning"]["runs"]["deltanet"] == ["recurrent_cpu"]


def test_tune_stage_goes_on_with_the_default_choices_when_the_decode_tuner_fails(monkeypatch):
    import qlab.profile.kernel_check as kernel_check
    import qlab.tune.tuner as tuner

    def broken(**kw):
        raise MemoryError("planted")

    tuned = []
    monkeypatch.setattr(stages, "run_decode_tuner", broken)
    monkeypatch.setattr(kernel_check, "validated_ops",
                        lambda op, device, log: ([_tunable(op, "a"), _tunable(op, "b")], {}))
    monkeypatch.setattr(tuner, "tune_task", lambda top, shape, *a, **k: tuned.append((top.op, top.impl)) or {})
    monkeypatch.setattr(stages, "tune_shapes_for", lambda op, mode: [{"T": 1}])
    monkeypatch.setattr(stages, "_engine_impl", lambda op, s, d: "b")   # what resolve gives without the tuner
    doc = _doc()
    stages.stage_tune(doc, ProfileOptions(mode="quick"), stages.Context(torch_device="cpu", log=lambda m: None))
    assert "MemoryError: planted" in doc["kernel_errors"]["decode"]
    assert {i for _, i in tuned} == {"b"} and "decode_tuning" not in doc
