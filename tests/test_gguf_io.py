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
