"""Quant mixes: llama.cpp's per-tensor type rules and file sizes against published GGUF sizes."""

from __future__ import annotations

import pytest

from qlab.errors import QlabError
from qlab.formats import get_format
from qlab.models import get_model
from qlab.models.quant_mix import GGUF_QUANTS, QUANT_IDS, quantize

# Published GGUF file sizes (GB = 1e9 bytes): the model card for Qwen3.6-27B; the others are the sizes listed
# for the well-known conversions (TheBloke Llama-2-7B-GGUF, QuantFactory/bartowski Llama-3-8B, ggml-org
# gpt-oss-20b-GGUF).
PUBLISHED = [("qwen3.6-27b", "Q8_0", 28.6), ("qwen3.6-27b", "Q4_K_M", 16.5), ("llama-2-7b", "Q4_0", 3.83),
             ("llama-2-7b", "Q8_0", 7.16), ("llama-3-8b", "Q4_K_M", 4.92), ("gpt-oss-20b", "MXFP4", 12.1)]


@pytest.mark.parametrize("model,quant,gb", PUBLISHED)
def test_file_size_within_3_percent(model, quant, gb):
    size = quantize(model, quant).file_bytes / 1e9
    print(f"{model} {quant}: {size:.3f} GB (published {gb} GB, {100 * (size / gb - 1):+.2f}%)")
    assert size == pytest.approx(gb, rel=0.03)


def _types(model, quant):
    return {t.name: t.type for t in quantize(model, quant).tensors}


def test_q4_k_m_rules_qwen36():
    ty = _types("qwen3.6-27b", "Q4_K_M")
    assert ty["output.weight"] == "Q6_K" and ty["token_embd.weight"] == "Q4_K"
    # attn_v-like tensors (attn_v of attention layers and attn_qkv of DeltaNet layers, 64 in all) in load order:
    # use_more_bits(i, 64): i < 8, i >= 56, (i - 8) % 3 == 2
    order = [n for n in ty if n.endswith(("attn_v.weight", "attn_qkv.weight"))]
    assert len(order) == 64
    for i, n in enumerate(order):
        more = i < 8 or i >= 56 or (i - 8) % 3 == 2
        assert ty[n] == ("Q6_K" if more else "Q4_K"), (i, n)
    assert ty["blk.0.ffn_down.weight"] == "Q6_K" and ty["blk.8.ffn_down.weight"] == "Q4_K"
    assert ty["blk.10.ffn_down.weight"] == "Q6_K"
    for n in ("blk.0.attn_gate.weight", "blk.0.ssm_out.weight", "blk.0.ssm_alpha.weight", "blk.3.attn_q.weight"):
        assert ty[n] == "Q4_K", n
    for n in ("blk.0.ssm_a", "blk.0.ssm_dt.bias", "blk.0.ssm_conv1d.weight", "blk.0.ssm_norm.weight",
              "blk.3.attn_q_norm.weight", "output_norm.weight"):
        assert ty[n] == "F32", n


def test_q8_0_output_stays_q8_0_and_f16_is_uniform():
    ty = _types("qwen3.6-27b", "Q8_0")
    assert ty["output.weight"] == "Q8_0" and ty["blk.0.attn_qkv.weight"] == "Q8_0"
    ty = _types("llama-3-8b", "F16")
    assert {t for n, t in ty.items() if n.endswith("weight") and "norm" not in n} == {"F16"}


def test_k_quant_fallback_when_row_not_multiple_of_256():
    ty = _types("gpt-oss-20b", "Q4_K_M")   # hidden 2880 = 11.25 x 256
    assert ty["blk.0.attn_q.weight"] == "Q5_0"            # Q4_K -> Q5_0
    assert ty["blk.1.attn_v.weight"] in ("Q8_0", "Q5_0")  # Q6_K -> Q8_0 on use_more_bits layers
    assert ty["output.weight"] == "Q8_0"                  # nx % 256 != 0 -> Q8_0
    mx = _types("gpt-oss-20b", "MXFP4")
    assert mx["blk.0.ffn_down_exps.weight"] == "MXFP4" and mx["blk.0.attn_q.weight"] == "Q8_0"
    assert mx["token_embd.weight"] == "Q8_0"


def test_every_quant_id_sizes_in_order():
    sizes = {q: quantize("qwen3.6-27b", q).file_bytes for q in QUANT_IDS}
    assert sizes["F32"] > sizes["BF16"] > sizes["Q8_0"] > sizes["Q6_K"] > sizes["Q5_K_M"] > sizes["Q4_K_M"]
    assert sizes["Q4_K_M"] > sizes["Q4_K_S"] > sizes["Q3_K_M"] > sizes["Q3_K_S"] > sizes["Q2_K"]
    # nominal bits x params would be wrong: Q4_K_M is more than 4.5 bits/weight on average
    n = 26.896e9
    assert sizes["Q4_K_M"] > n * get_format("Q4_K").bits_per_weight / 8 * 1.05


def test_case_insensitive_and_unknown():
    assert quantize("qwen3.6-27b", "q4_k_m").quant == "Q4_K_M"
    with pytest.raises(QlabError, match=r"unknown quant 'Q4_K_L'; closest: "):
        quantize("qwen3.6-27b", "Q4_K_L")


@pytest.mark.parametrize("quant", ["Q4_K_M", "Q8_0", "Q6_K", "Q3_K_M", "IQ4_XS", "F16", "INT4-G128"])
def test_engine_synthetic_weights_use_this_mix(quant):
    """One model description: the engine's synthetic weights of the full model have exactly this mix's types
    and bytes (Q4_K_M: 16.54 GB of tensor data, the published 16.5 GB file)."""
    from qlab.engine.config import QWEN36_27B
    from qlab.engine.tensors import format_for, model_specs
    from qlab.engine.weights import synthetic_nbytes

    mix = quantize("qwen3.6-27b", quant)
    assert {t.name for t in mix.tensors} == {s.name for s in model_specs(QWEN36_27B)}
    for t in mix.tensors:
        if len(t.shape) > 1 and t.type not in ("F32",):
            assert format_for(QWEN36_27B, quant, t.name) == t.type, t.name
    if quant in GGUF_QUANTS:   # server formats keep ssm_conv1d in BF16 where the engine keeps its small tensors F32
        assert synthetic_nbytes(QWEN36_27B, quant) == mix.weight_bytes


def test_mtp_block_walked_as_one_more_layer():
    m = get_model("qwen3.6-27b")
    plain, with_mtp = quantize(m, "Q4_K_M"), quantize(m, "Q4_K_M", include_mtp=True)
    extra = {t.name for t in with_mtp.tensors} - {t.name for t in plain.tensors}
    assert "blk.64.nextn.eh_proj.weight" in extra and "blk.64.attn_v.weight" in extra and len(extra) == 15
    ty = {t.name: t.type for t in with_mtp.tensors}
    assert ty["blk.64.ffn_down.weight"] == "Q6_K"          # the last of 65 layers: use_more_bits
    assert ty["blk.64.nextn.enorm.weight"] == "F32"
