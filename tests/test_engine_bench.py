"""`run_decode_bench` / `qlab bench decode` on a narrow 4-layer slice: the record's fields, its internal
arithmetic (slice -> 64 layers, bytes -> GB/s), synthetic fill at depth, logits dump, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qlab.cli import main
from qlab.engine.bench import run_decode_bench
from qlab.engine.config import QWEN36_27B
from qlab.engine.reference import reference_logits
from qlab.engine.weights import synthetic_weights
from qlab.testing import rel_rms_error

SMALL = dict(width_scale=8, vocab=512, threads=2)


@pytest.mark.parametrize("context,fill", [(20, "prefill"), (700, "synthetic")])
def test_record_fields_and_arithmetic(context, fill):
    r = run_decode_bench(layers=4, quant="Q8_0", context=context, tokens=2, **SMALL)
    json.dumps(r)
    assert r["fill"] == fill and r["layers"] == 4 and r["full_layers"] == 64
    assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0
    assert set(r["ops_ms_per_token"]) == {"deltanet", "attention", "matmul", "other"}
    assert all(v >= 0 for v in r["ops_ms_per_token"].values()) and r["ops_ms_per_token"]["matmul"] > 0
    b = r["bytes_per_token"]
    cfg = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)
    assert b["kv_cache"] == cfg.kv_cache_bytes(context, 2)          # bf16 cache read to depth
    assert b["total"] == b["weights"] + b["kv_cache"] + b["state"]
    assert r["achieved_gb_s"] == pytest.approx(b["total"] * r["decode_tok_s"] / 1e9)
    f = r["full_model"]
    head, t = r["head_ms_per_token"], r["decode_ms_per_token"]
    assert f["ms_per_token"] == pytest.approx(head + (t - head) / 4 * 64)
    assert f["decode_tok_s"] == pytest.approx(1e3 / f["ms_per_token"])
    assert str(round(f["ms_per_token"], 2)) in f["arithmetic"] or f"{f['ms_per_token']:.2f}" in f["arithmetic"]
    assert f["bytes_per_token"] == pytest.approx(b["head_weights"] + (b["total"] - b["head_weights"]) * 16)


def test_dump_logits_are_the_model_logits(tmp_path):
    out = tmp_path / "l.npy"
    assert main(["bench", "decode", "--layers", "4", "--quant", "Q8_0", "--width-scale", "8", "--vocab", "512",
                 "--dump-logits", str(out), "--prompt-tokens", "3,1,4,1,5"]) == 0
    got = np.load(out)
    assert got.shape == (5, 512)
    ref = reference_logits(synthetic_weights(QWEN36_27B.width_scaled(8, vocab=512).sliced(4), "Q8_0"), [3, 1, 4, 1, 5])
    assert rel_rms_error(ref, torch.from_numpy(got)) < 1e-2


def test_cli_json_and_bad_input(capsys):
    assert main(["bench", "decode", "--layers", "4", "--width-scale", "8", "--vocab", "512", "--context", "8",
                 "--tokens", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["context"] == 8
    assert main(["bench", "decode", "--layers", "6"]) == 2
    assert "multiple of 4" in capsys.readouterr().err
    assert main(["bench", "decode", "--layers", "4", "--context", "300000"]) == 2
    assert "exceeds the model's context of 262144" in capsys.readouterr().err
    assert main(["bench", "decode", "--dump-logits", "x.npy"]) == 2
    assert main(["bench", "decode", "--layers", "4", "--width-scale", "8", "--vocab", "512",
                 "--dump-logits", "x.npy", "--prompt-tokens", "1,999"]) == 2
    assert "outside the vocabulary" in capsys.readouterr().err


def test_full_model_that_does_not_fit_is_refused_before_allocating(capsys, monkeypatch):
    from qlab.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * 10**9)
    assert main(["bench", "decode", "--quant", "Q8_0"]) == 2
    err = capsys.readouterr().err
    assert "64-layer slice at Q8_0" in err and "only 8.00 GB" in err


def test_fit_check_counts_the_x8_copies_of_synthetic_weights():
    """cpu_int8 keeps a row-interleaved copy of every Q4_K/Q6_K matrix (not of the embedding, read by row);
    synthetic weights live in plain memory, so the fit check must count both."""
    from qlab.engine.weights import synthetic_nbytes, synthetic_weights

    cfg = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)
    w = synthetic_weights(cfg, "Q4_K_M", seed=0)
    copies = sum(t.raw.nbytes * (1184 / 1152 if t.fmt == "Q4_K" else 1) for n, t in w.tensors.items()   # 8 rows
                 if getattr(t, "fmt", None) in ("Q4_K", "Q6_K") and n != "token_embd.weight" and t.shape[0] % 8 == 0)
    base = synthetic_nbytes(cfg, "Q4_K_M")
    assert copies > 0 and synthetic_nbytes(cfg, "Q8_0", x8_copies=True) == synthetic_nbytes(cfg, "Q8_0")
    assert synthetic_nbytes(cfg, "Q4_K_M", x8_copies=True) - base == pytest.approx(copies, rel=1e-9)


def test_bench_reads_a_gguf(tmp_path):
    from qlab.engine.gguf_io import write_synthetic_gguf

    path = write_synthetic_gguf(tmp_path / "s.gguf", QWEN36_27B.width_scaled(8, vocab=512).sliced(4), "Q8_0")
    r = run_decode_bench(gguf=str(path), layers=4, context=8, tokens=1, threads=2)
    assert r["source"] == str(path) and r["quant"] == "F32+Q8_0" and r["full_layers"] == 64
    assert r["weights_gb"] == pytest.approx(path.stat().st_size / 1e9, rel=0.05)


def test_slice_of_a_kquant_gguf_scales_by_the_whole_files_layer_bytes(tmp_path):
    """A slice is the file's first layers, which a Q4_K_M mix gives more bits (Q6_K attn_v/ffn_down on the first
    eighth): their streaming time scales by the weight bytes of all the file's layers, not by layer count;
    the attention/DeltaNet ops by count."""
    import gguf

    from qlab.engine.gguf_io import write_synthetic_gguf

    path = write_synthetic_gguf(tmp_path / "k.gguf", QWEN36_27B.width_scaled(16, vocab=512).sliced(32), "Q4_K_M")
    r = run_decode_bench(gguf=str(path), layers=4, context=64, tokens=2, threads=2)
    per_layer = sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors if t.name.startswith("blk.")) / 32
    assert r["full_layer_weight_bytes"] == pytest.approx(64 * per_layer, rel=1e-6)
    b, f, ops = r["bytes_per_token"], r["full_model"], r["ops_ms_per_token"]
    slice_w = b["weights"] - b["head_weights"]
    assert f["weight_bytes_ratio"] == pytest.approx(64 * per_layer / slice_w) and f["weight_bytes_ratio"] < 16 * 0.97
    t, head = r["decode_ms_per_token"], r["head_ms_per_token"]
    layers_prof = r["profiled_ms_per_token"] * (1 - r["head_share_of_profiled"])
    mixer = (t - head) * (ops["attention"] + ops["deltanet"]) / layers_prof
    assert f["ms_per_token"] == pytest.approx(head + mixer * 16 + (t - head - mixer) * f["weight_bytes_ratio"])
    assert f["bytes_per_token"] == pytest.approx(b["head_weights"] + 64 * per_layer + (b["total"] - b["weights"]) * 16)


def test_whole_model_times_its_first_layers_beside_it(tmp_path):
    """side_slice: the first layers of the loaded model, one slice step after each whole step; the error is the
    median over those pairs, and the slice's own extrapolation is recorded."""
    from qlab.engine.gguf_io import write_synthetic_gguf

    cfg = QWEN36_27B.width_scaled(16, vocab=512)
    path = write_synthetic_gguf(tmp_path / "w.gguf", cfg, "Q8_0")
    r = run_decode_bench(gguf=str(path), layers=None, context=16, tokens=3, threads=2, side_slice=4)
    side = r["side_by_side"]
    assert r["layers"] == 64 and side["layers"] == 4 and len(side["decode_ms_samples"]) == 3
    assert side["full_model"]["layers"] == 64 and side["scaled_tok_s"] == pytest.approx(side["full_model"]["decode_tok_s"])
    assert side["full_model"]["weight_bytes_ratio"] == pytest.approx(16)      # Q8_0: every layer alike
    assert -90 < side["error_pct"] < 900 and r["settle_ms_samples"]
