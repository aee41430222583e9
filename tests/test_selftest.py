"""`qlab selftest --device cpu`: every CPU kernel and the decode loop checked on the device, bandwidth fractions
measured, one JSON + a one-page summary; exit 1 when an impl gives a wrong answer."""

from __future__ import annotations

import json

import pytest
import torch

from qlab.cli import main


def _run(tmp_path, *extra) -> int:
    return main(["selftest", "--device", "cpu", "-o", str(tmp_path / "st"), *extra])


@pytest.mark.slow   # ~20 s of CPU: every CPU kernel, two loops, the bandwidth timings, a decode slice
def test_selftest_cpu_passes_and_writes_json_and_summary(tmp_path, capsys):
    assert _run(tmp_path) == 0, capsys.readouterr().out[-3000:]
    rec = json.loads((tmp_path / "st" / "selftest.json").read_text())
    assert rec["passed"] and rec["failures"] == []
    impls = {(r["op"], r["impl"]) for r in rec["kernels"]}
    assert {("dequant_matmul", "cpu_fp32"), ("dequant_matmul", "cpu_int8")} <= impls
    assert {"deltanet", "attention_decode", "attention_prefill"} <= {op for op, _ in impls}
    fmts = {r["case"].split()[0] for r in rec["kernels"] if r["impl"] == "cpu_fp32"}
    assert {"Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K", "IQ4_XS", "Q4_0", "INT4-G128", "FP8"} <= fmts
    assert all(r["rel_rms"] is None or 0 <= r["rel_rms"] <= r["tol"] for r in rec["kernels"])
    assert [r["quant"] for r in rec["loop"]] == ["Q8_0", "Q4_K_M"] and all(r["ok"] for r in rec["loop"])
    bw = rec["bandwidth"]
    assert bw["copy_gb_s"] > 0
    timed = [r for r in bw["kernels"] if "gb_s" in r]
    assert {r["shape"]["fmt"] for r in timed if r["op"] == "dequant_matmul"} == {"Q4_K", "Q6_K", "Q8_0"}
    assert all(r["gb_s"] > 0 and r["fraction"] == pytest.approx(r["gb_s"] / bw["copy_gb_s"]) for r in timed)
    assert rec["decode_slice"]["decode_tok_s"] > 0
    summary = (tmp_path / "st" / "summary.md").read_text()
    assert summary.startswith("# qlab selftest — cpu") and "**PASS**" in summary and "GPU target" in summary
    assert len(summary.splitlines()) < 80   # one page


def test_a_wrong_kernel_fails_the_selftest_with_exit_1(tmp_path, monkeypatch, capsys):
    from qlab.kernels.dequant_matmul import cpu_int8

    real = cpu_int8.matmul

    def off_by_a_bit(x, qw, config=None):   # a plausible bug: right shape, right scale, 5 % off
        return real(x, qw, config) * 1.05

    monkeypatch.setattr(cpu_int8, "matmul", off_by_a_bit)
    assert _run(tmp_path, "--only", "kernels") == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    rec = json.loads((tmp_path / "st" / "selftest.json").read_text())
    assert rec["failures"] and all("cpu_int8" in f for f in rec["failures"])
    assert "cpu_int8" in (tmp_path / "st" / "summary.md").read_text()


def test_selftest_bad_input_is_exit_2(tmp_path, capsys):
    assert _run(tmp_path, "--only", "kernels,nothing") == 2
    if not torch.cuda.is_available():
        assert main(["selftest", "--device", "cuda", "-o", str(tmp_path / "g")]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
