"""Synthetic GGUF files: written in llama.cpp's qwen35 layout, read back memory-mapped and bit-identical to
the in-memory synthetic weights; every kind of bad file is a QlabError naming the file (and the tensor)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from qlab.cli import main
from qlab.engine import gguf_io
from qlab.engine.config import QWEN36_27B
from qlab.engine.model import Qwen35, prefill
from qlab.engine.ops import reference_backend
from qlab.engine.tensors import TensorSpec
from qlab.engine.weights import synthetic_weights
from qlab.errors import QlabError

CFG = QWEN36_27B.width_scaled(8, vocab=512).sliced(4)
TOKENS = torch.tensor([[5, 17, 300, 2, 99]])


def _logits(weights):
    m = Qwen35(weights, reference_backend())
    return prefill(m, TOKENS, m.new_state(8), all_logits=True)


@pytest.mark.parametrize("dtype", ["F16", "Q4_K_M"])
def test_synthetic_gguf_round_trips(tmp_path, dtype):
    path = gguf_io.write_synthetic_gguf(tmp_path / "m.gguf", CFG, dtype, seed=42)
    w = gguf_io.read_gguf(path)
    c = w.cfg
    assert (c.n_layers, c.hidden, c.ffn, c.vocab, c.n_heads, c.n_kv_heads) == (4, 512, 2048, 512, 6, 1)
    assert (c.lin_k_heads, c.lin_v_heads, c.rope_dim, c.rope_theta, c.rms_eps) == (2, 6, 64, 1e7, 1e-6)
    assert set(w.formats()) == ({"F16", "F32"} if dtype == "F16" else {"Q4_K", "Q6_K", "F32"})
    # matrices are views of the file's memory map, not copies
    qkv = w["blk.0.attn_qkv.weight"]
    assert isinstance(qkv.raw.base, (np.memmap, np.ndarray)) and not qkv.raw.flags.owndata
    assert torch.equal(_logits(w), _logits(synthetic_weights(CFG, dtype, seed=42)))


def test_layer_slice_of_a_file(tmp_path):
    path = gguf_io.write_synthetic_gguf(tmp_path / "m.gguf", CFG.sliced(4), "Q8_0", seed=1)
    assert gguf_io.read_gguf(path, layers=4).cfg.n_layers == 4
    with pytest.raises(QlabError, match="multiple of 4"):
        gguf_io.read_gguf(path, layers=2)


def test_other_architecture(tmp_path):
    import gguf

    p = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(p, "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(QlabError, match=r"llama\.gguf: architecture 'llama', expected 'qwen35'"):
        gguf_io.read_gguf(p)


def test_truncated_file(tmp_path):
    good = gguf_io.write_synthetic_gguf(tmp_path / "m.gguf", CFG, "Q8_0")
    bad = tmp_path / "cut.gguf"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) - 100_000])
    with pytest.raises(QlabError, match=r"cut\.gguf"):
        gguf_io.read_gguf(bad)


def _write_with(monkeypatch, tmp_path, edit):
    real = gguf_io.model_specs
    monkeypatch.setattr(gguf_io, "model_specs", lambda cfg, mtp=False: edit(real(cfg, mtp)))
    path = gguf_io.write_synthetic_gguf(tmp_path / "odd.gguf", CFG, "F16")
    monkeypatch.setattr(gguf_io, "model_specs", real)
    return path


def test_missing_tensor(monkeypatch, tmp_path):
    p = _write_with(monkeypatch, tmp_path, lambda specs: [s for s in specs if s.name != "blk.2.ssm_out.weight"])
    with pytest.raises(QlabError, match=r"odd\.gguf: tensor 'blk\.2\.ssm_out\.weight' is missing"):
        gguf_io.read_gguf(p)


def test_shape_mismatch(monkeypatch, tmp_path):
    def widen(specs):
        return [TensorSpec(s.name, (s.shape[0] + 256, s.shape[1]), s.kind, s.init)
                if s.name == "blk.3.attn_k.weight" else s for s in specs]

    p = _write_with(monkeypatch, tmp_path, widen)
    with pytest.raises(QlabError, match=r"odd\.gguf: qwen35\.attention\.head_count_kv: disagrees with tensor "
                                        r"'blk\.3\.attn_k\.weight' of shape \[512, 512\] \(expected \[512, 256\]\)"):
        gguf_io.read_gguf(p)


def test_shape_mismatch_of_a_tensor_metadata_does_not_describe(monkeypatch, tmp_path):
    def widen(specs):
        return [TensorSpec(s.name, (s.shape[0] + 256, s.shape[1]), s.kind, s.init)
                if s.name == "blk.2.attn_gate.weight" else s for s in specs]

    p = _write_with(monkeypatch, tmp_path, widen)
    with pytest.raises(QlabError, match=r"odd\.gguf: tensor 'blk\.2\.attn_gate\.weight' has shape \[1024, 512\], "
                                        r"expected \[768, 512\]"):
        gguf_io.read_gguf(p)


def test_cli_synth_and_info(tmp_path, capsys):
    out = tmp_path / "s.gguf"
    assert main(["gguf", "synth", "--model", "qwen3.6-27b", "--layers", "4", "--dtype", "F16", "--width-scale", "8",
                 "--vocab", "512", "-o", str(out)]) == 0
    assert "4 layers, hidden 512" in capsys.readouterr().out
    assert main(["gguf", "info", str(out), "--json"]) == 0
    assert '"vocab": 512' in capsys.readouterr().out
    assert main(["gguf", "info", str(tmp_path / "nope.gguf")]) == 2
    assert "no such GGUF file" in capsys.readouterr().err
    assert main(["gguf", "synth", "--layers", "3", "-o", str(out)]) == 2


def _exit_code(argv) -> int:
    """main's return value, or the code of the SystemExit argparse raises for a bad flag."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("flags,message", [
    (["--width-scale", "nan"], "--width-scale"), (["--width-scale", "0.25"], "--width-scale"),
    (["--vocab", "-5"], "--vocab"), (["--vocab", "100"], "--vocab"), (["--dtype", "INT4-G128"], "--dtype"),
    (["--layers", "-4"], "--layers")])
def test_cli_synth_rejects_bad_numbers(tmp_path, capsys, flags, message):
    out = tmp_path / "x.gguf"
    assert _exit_code(["gguf", "synth", *flags, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_synth_rejects_bad_output_paths(tmp_path, capsys):
    assert _exit_code(["gguf", "synth", "--layers", "4", "--width-scale", "32", "--vocab", "260",
                       "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert _exit_code(["gguf", "synth", "--layers", "4", "--width-scale", "32", "--vocab", "260",
                       "-o", str(f / "m.gguf")]) == 2
    assert "which is a file" in capsys.readouterr().err


def test_cli_synth_refuses_a_file_larger_than_the_free_disk_up_front(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 10**9, 10**9))
    assert main(["gguf", "synth", "--dtype", "F16", "-o", str(tmp_path / "full.gguf")]) == 2
    err = capsys.readouterr().err
    assert "would be 53.8" in err and "1.00 GB of disk is free" in err
    assert list(tmp_path.iterdir()) == []


def test_synth_size_estimate_matches_the_file(tmp_path):
    cfg = QWEN36_27B.width_scaled(32, vocab=300).sliced(4)
    for dtype in ("Q4_K_M", "F16"):
        p = gguf_io.write_synthetic_gguf(tmp_path / f"{dtype}.gguf", cfg, dtype)
        assert gguf_io.gguf_nbytes(cfg, dtype) == pytest.approx(p.stat().st_size, rel=0.01)


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".m.gguf.{int(dead.stdout)}.abcd.tmp"
    live = tmp_path / f".m.gguf.{__import__('os').getpid()}.efgh.tmp"   # a writer still running: kept
    other = tmp_path / ".n.gguf.1.x.tmp"                                 # another file's: not ours to judge
    for f in (stale, live, other):
        f.write_bytes(b"partial")
    gguf_io.write_synthetic_gguf(tmp_path / "m.gguf", QWEN36_27B.width_scaled(32, vocab=260).sliced(4), "Q8_0")
    assert not stale.exists() and live.exists() and other.exists()


def test_sigterm_during_synth_leaves_no_temp_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "big.gguf"
    proc = subprocess.Popen([sys.executable, "-m", "qlab", "gguf", "synth", "--layers", "8", "--width-scale", "2",
                             "--dtype", "F16", "-o", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".big.gguf.*.tmp")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "synth ended before it could be interrupted"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and not out.exists()
    assert list(tmp_path.iterdir()) == []
