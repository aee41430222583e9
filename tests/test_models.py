"""Model presets: every model id loads, shapes give the published parameter counts, layer patterns,
validation errors name the file and field, and nothing imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qlab.errors import QlabError
from qlab.models import all_presets, get_model, load_preset
from qlab.models.tensors import active_param_count, param_count

DESIGN_IDS = ["qwen3.6-27b", "qwen3.5-27b", "qwen3.6-35b-a3b", "qwen3.5-397b-a17b", "llama-2-7b", "llama-2-13b",
              "llama-30b", "llama-65b", "llama-3-8b", "llama-3-70b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b",
              "qwen2.5-72b", "qwen3-4b", "qwen3-8b", "qwen3-32b", "qwen3-30b-a3b", "gemma-3-27b", "gpt-oss-20b",
              "gpt-oss-120b", "mistral-small-24b"]


def test_every_design_id_has_a_sourced_preset():
    presets = all_presets()
    assert sorted(presets) == sorted(DESIGN_IDS)
    for m in presets.values():
        assert m.sources.get("config"), m.id


@pytest.mark.parametrize("model_id", DESIGN_IDS)
def test_param_count_matches_shapes_and_publication(model_id):
    m = get_model(model_id)
    p = param_count(m) / 1e9
    assert p == pytest.approx(m.params_derived_b, rel=0.005), (model_id, p)   # the CSV's exact-shape count
    assert p == pytest.approx(m.params_published_b, rel=0.05), (model_id, p)  # the headline number


def test_qwen36_layout():
    m = get_model("qwen3.6-27b")
    assert m.n_layers == 64 and m.count("attention") == 16 and m.count("deltanet") == 48
    assert all((m.layer_types[i] == "attention") == ((i + 1) % 4 == 0) for i in range(64))
    a, d = m.attention, m.deltanet
    assert (a.heads, a.kv_heads, a.head_dim, a.output_gate) == (24, 4, 256, True)
    assert (d.key_heads, d.value_heads, d.key_head_dim, d.value_head_dim, d.conv_kernel) == (16, 48, 128, 128, 4)
    assert d.conv_dim == 10240 and m.ffn.intermediate_size == 17408
    assert m.vocab_size == 248320 and not m.tied_embeddings and m.mtp_layers == 1 and m.max_context == 262144


def test_gemma_and_gpt_oss_patterns():
    g = get_model("gemma-3-27b")
    assert [i for i, t in enumerate(g.layer_types) if t == "attention"] == list(range(5, 62, 6))
    assert g.count("sliding") == 52 and g.attention.sliding_window == 1024
    o = get_model("gpt-oss-20b")
    assert o.layer_types[0] == "sliding" and o.layer_types[1] == "attention" and o.count("sliding") == 12


def test_moe_active_params():
    m = get_model("qwen3-30b-a3b")
    assert active_param_count(m) / 1e9 == pytest.approx(3.35, rel=0.02)
    assert active_param_count(get_model("qwen3.6-35b-a3b")) / 1e9 == pytest.approx(3.45, rel=0.02)


def test_unknown_model_names_closest():
    with pytest.raises(QlabError, match=r"unknown model 'qwen3\.6-28b'; closest: .*qwen3\.6-27b"):
        get_model("qwen3.6-28b")


def _write(tmp_path, text, name="bad-model.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _preset_text(model_id):
    from qlab.models.loader import PRESET_DIR

    return (PRESET_DIR / f"{model_id}.toml").read_text()


def test_validation_names_file_and_field(tmp_path):
    text = _preset_text("llama-2-7b").replace('id = "llama-2-7b"', 'id = "bad-model"')
    assert load_preset(_write(tmp_path, text)).n_layers == 32
    with pytest.raises(QlabError, match=r"bad-model\.toml: field n_layers: expected int"):
        load_preset(_write(tmp_path, text.replace("n_layers = 32", 'n_layers = "32"')))
    with pytest.raises(QlabError, match=r"bad-model\.toml: field attention\.kv_heads: 7 does not divide heads 32"):
        load_preset(_write(tmp_path, text.replace("kv_heads = 32", "kv_heads = 7")))
    with pytest.raises(QlabError, match=r"bad-model\.toml: field ffn\.intermediate_size: missing"):
        load_preset(_write(tmp_path, text.replace("intermediate_size = 11008", "")))
    with pytest.raises(QlabError, match=r"bad-model\.toml: field id: 'llama-2-7b' differs"):
        load_preset(_write(tmp_path, _preset_text("llama-2-7b")))
    with pytest.raises(QlabError, match=r"field layers\.other"):
        load_preset(_write(tmp_path, text.replace("full_attention_every = 1", "full_attention_every = 4")))


def test_models_cli(capsys):
    from qlab.cli import main

    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == set(DESIGN_IDS)
    assert main(["models", "show", "qwen3.6-27b", "--json", "--quant", "Q4_K_M"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["layer_types"] == {"attention": 16, "deltanet": 48}
    assert d["quant"]["file_gb"] == pytest.approx(16.5, rel=0.03)
    assert main(["models", "show", "qwen9"]) == 2
    assert "unknown model 'qwen9'" in capsys.readouterr().err


def test_no_torch_import():
    code = ("import sys, qlab.models, qlab.predict; from qlab.predict import predict; "
            "predict('rtx-3090', 'qwen3.6-27b', 'Q4_K_M', 4096); "
            "import qlab.models.commands, qlab.predict.commands; "
            "bad = [m for m in ('torch', 'triton', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_hf_repo_and_display_name_aliases():
    assert get_model("Qwen/Qwen3.6-27B").id == "qwen3.6-27b"
    assert get_model("Qwen3.6-27B").id == "qwen3.6-27b"
    assert get_model("openai/gpt-oss-20b").id == "gpt-oss-20b"
