"""The kernel registry: every family's impls are records with the fields callers ask about; availability,
resolve and validate answer from those fields."""

from __future__ import annotations

import pytest

from qlab.kernels import registry as R


def test_every_op_has_one_reference_and_records_are_well_formed():
    assert set(R.ops()) == {"dequant_matmul", "deltanet", "attention_decode", "attention_prefill"}
    for op in R.ops():
        recs = R.impls(op)
        assert [r.name for r in recs if r.reference] == ["naive"], op
        for r in recs:
            assert r.backend in R.BACKENDS and set(r.devices) <= set(R.DEVICE_KINDS) and r.algorithm
            if not R.why_unavailable(op, r.name, "cpu"):
                assert callable(r.fn())
            if r.tunables:   # every tunable impl has a space and defaults inside it
                space, dflt = r.space(), r.defaults()
                assert space and set(dflt) == set(space), r.key
                assert all(dflt[k] in space[k] for k in space), r.key
            if r.batches:
                assert callable(r.load(r.entry_many))


def test_formats_come_from_the_kernel_modules_own_tables():
    from qlab.kernels.dequant_matmul import cpu_int8

    assert R.get("dequant_matmul", "cpu_int8").supported_formats() == cpu_int8.FORMATS
    assert set(cpu_int8.INT8_FORMATS) | set(cpu_int8.HALF_FORMATS) == set(cpu_int8.FORMATS)
    assert R.get("dequant_matmul", "cpu_fp32").supported_formats() is None   # every format
    pytest.importorskip("triton")
    from qlab.kernels.dequant_matmul import triton_gemv

    assert R.get("dequant_matmul", "triton").supported_formats() == tuple(triton_gemv.FMT_CODE)


def test_aliases_and_unknown_names():
    assert R.get("dequant_matmul", "torch_cpu").name == "cpu_fp32"
    assert R.canonical("dequant_matmul", "torch_cpu") == "cpu_fp32"
    with pytest.raises(ValueError, match=r"unknown 'cpu_int9' for dequant_matmul.*closest: cpu_int8"):
        R.get("dequant_matmul", "cpu_int9")


def test_availability_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    names = [r.name for r in R.available("deltanet", "cpu")]
    assert {"naive", "recurrent_torch", "chunk_torch"} <= set(names)
    assert "triton_recurrent" not in names
    assert "runs on cuda, not cpu" in R.why_unavailable("deltanet", "triton_recurrent", "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")   # Triton on CPU tensors, when triton imports
    if not R._triton_import_reason():
        assert R.why_unavailable("deltanet", "triton_recurrent", "cpu") == ""
    with pytest.raises(R.ImplUnavailableError, match="cupy_decode.*available: "):
        R.require("attention_decode", "cupy_decode", "cpu")


def test_resolve_picks_by_fields_not_names():
    """Decode (one token) and prompt shapes get different DeltaNet impls; a format an impl does not read
    goes to one that does; the reference is never the default where something faster runs."""
    dn1, _, src = R.resolve("deltanet", {"T": 1}, "cpu", cache=False)
    dn512, _, _ = R.resolve("deltanet", {"T": 512}, "cpu", cache=False)
    assert src == "default" and not dn1.reference and not dn512.reference
    assert dn1.fits({"T": 1}) if dn1.fits else True
    assert dn512.fits is None or dn512.fits({"T": 512})
    q6, _, _ = R.resolve("dequant_matmul", {"M": 1, "fmt": "Q6_K"}, "cpu", cache=False)
    iq, _, _ = R.resolve("dequant_matmul", {"M": 1, "fmt": "IQ4_XS"}, "cpu", cache=False)
    assert q6.reads("Q6_K") and iq.reads("IQ4_XS") and not iq.reference
    rec, cfg, src = R.resolve("attention_decode", {"S": 100}, "cpu", impl="sdpa", cache=False)
    assert rec.name == "sdpa" and cfg == rec.defaults() and src == "default"
    with pytest.raises(ValueError, match="does not accept"):
        R.resolve("dequant_matmul", {"fmt": "Q4_0"}, "cpu", impl="cpu_int8", cache=False)


@pytest.mark.parametrize("op", ["dequant_matmul", "deltanet", "attention_decode", "attention_prefill"])
def test_validate_every_cpu_impl(op):
    for rec in R.available(op, "cpu"):
        rows = R.validate(op, rec.name, "cpu")
        assert rows and all(r["rel_rms"] <= r["tol"] for r in rows)


def test_validate_reports_a_wrong_answer_as_one_line(monkeypatch):
    import torch

    from qlab.kernels.attention import sdpa

    real = sdpa.decode
    monkeypatch.setattr(sdpa, "decode", lambda *a, **k: real(*a, **k) + 1e-2 * torch.randn(real(*a, **k).shape))
    with pytest.raises(R.ValidationError, match=r"attention_decode/sdpa on cpu: .*rel RMS error .* > "):
        R.validate("attention_decode", "sdpa", "cpu")
    monkeypatch.setattr(sdpa, "decode", lambda *a, **k: 1 / 0)
    with pytest.raises(R.ValidationError, match=r"attention_decode/sdpa on cpu: ZeroDivisionError"):
        R.validate("attention_decode", "sdpa", "cpu")
