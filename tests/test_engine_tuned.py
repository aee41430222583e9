"""The decode loop runs what the tune cache says: a config (and an impl choice) written for the shapes the decode
step uses is what the step's kernels receive, and the bench record says it came from the cache."""

from __future__ import annotations

import pytest
import torch

from qlab.engine.config import QWEN36_27B
from qlab.engine.model import Qwen35, decode_one_token
from qlab.engine.ops import default_backend
from qlab.engine.weights import synthetic_weights
from qlab.kernels import registry
from qlab.tune.cache import TuneCache, make_key

CFG = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)


@pytest.fixture(scope="module")
def weights():
    return synthetic_weights(CFG, "Q8_0", seed=42)


def _step(weights, backend):
    m = Qwen35(weights, backend)
    st = m.new_state(8)
    decode_one_token(m, torch.tensor([3]), st)
    return m


def _put_config(rec, shape, config):
    spec = registry.op_spec(rec.op)
    fields = registry.cache_fields(spec, rec.name, spec.full_shape(shape, "cpu"), "cpu")
    TuneCache().put(make_key(fields), {"config": config, "key_fields": fields})


def _put_choice(op, shape, impl):
    spec = registry.op_spec(op)
    fields = registry.choice_fields(spec, spec.full_shape(shape, "cpu"), "cpu")
    TuneCache().put(make_key(fields), {"impl": impl, "key_fields": fields})


def _non_default(rec) -> dict:
    """A config of rec's space that differs from its defaults in every parameter."""
    return {k: next(v for v in values if v != rec.defaults()[k]) for k, values in rec.space().items()}


def test_tuned_configs_and_choices_reach_the_decode_loop(weights, monkeypatch):
    first = _step(weights, default_backend("cpu"))
    plan = {f: (rec, shape) for (f, _), (rec, _cfg, src, shape) in first.ops.plan.items() if shape.get("M", 1) == 1
            and shape.get("T", 1) == 1}
    assert all(r["from_cache"] is False for r in first.ops.resolutions())
    mm_rec, mm_shape = next((rec, s) for (f, _), (rec, _c, _s, s) in first.ops.plan.items()
                            if f == "matmul" and s["M"] == 1 and rec.tunables)
    at_rec, at_shape = plan["attn_decode"]
    mm_cfg, at_cfg = _non_default(mm_rec), _non_default(at_rec)
    for (f, _), (rec, _c, _s, s) in first.ops.plan.items():   # every decode matmul shape gets the config
        if f == "matmul" and s["M"] == 1 and rec.name == mm_rec.name:
            _put_config(rec, s, mm_cfg)
    _put_config(at_rec, at_shape, at_cfg)
    dn_rec, dn_shape = plan["deltanet_decode"]
    other = next(r.name for r in registry.available("deltanet", "cpu")
                 if r.name != dn_rec.name and not r.reference and (r.fits is None or r.fits(dn_shape)))
    _put_choice("deltanet", dn_shape, other)

    seen = {"matmul": [], "attn": [], "deltanet": []}
    import qlab.kernels.dequant_matmul as api
    real_mm, real_many = api.matmul, api.matmul_many
    monkeypatch.setattr(api, "matmul", lambda x, qw, **k: seen["matmul"].append(k) or real_mm(x, qw, **k))
    monkeypatch.setattr(api, "matmul_many", lambda x, ws, **k: seen["matmul"].append(k) or real_many(x, ws, **k))
    import qlab.kernels.attention as A
    import qlab.kernels.deltanet as D

    real_attn, real_dn = A.decode, D.gated_delta_rule
    monkeypatch.setattr(A, "decode", lambda *a, **k: seen["attn"].append(k) or real_attn(*a, **k))
    monkeypatch.setattr(D, "gated_delta_rule", lambda *a, **k: seen["deltanet"].append(k) or real_dn(*a, **k))

    tuned = _step(weights, default_backend("cpu"))
    assert {"impl": mm_rec.name, "config": mm_cfg} in [{"impl": k["impl"], "config": k["config"]}
                                                        for k in seen["matmul"]]
    assert seen["attn"] and all(k["config"] == at_cfg and k["impl"] == at_rec.name for k in seen["attn"])
    assert seen["deltanet"] and all(k["impl"] == other for k in seen["deltanet"])   # not the fused C step
    res = {(r["role"], r["impl"]): r for r in tuned.ops.resolutions()}
    assert res[("attn_decode", at_rec.name)]["from_cache"] and res[("attn_decode", at_rec.name)]["config"] == at_cfg
    assert ("deltanet_decode", other) in res

    seen["attn"].clear()
    _step(weights, default_backend("cpu", tuned=False))      # tuned=False: the defaults, whatever the cache says
    assert all(k["config"] == at_rec.defaults() for k in seen["attn"])


def test_bench_record_lists_each_ops_impl_config_and_source():
    from qlab.engine.bench import run_decode_bench

    rec = run_decode_bench(layers=4, quant="Q8_0", context=4, tokens=1, width_scale=8, vocab=512)
    roles = {r["role"] for r in rec["resolved"]}
    assert {"matmul", "attn_decode"} <= roles and ("deltanet_decode" in roles)
    for r in rec["resolved"]:
        assert registry.get(r["op"], r["impl"]).name == r["impl"] and isinstance(r["from_cache"], bool)
        assert set(r["config"]) == set(registry.get(r["op"], r["impl"]).defaults())
