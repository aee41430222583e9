"""Memory accounting: KV per token, DeltaNet state, sliding-window caps, batch scaling, fits."""

from __future__ import annotations

import pytest

from qlab.models import get_model
from qlab.models.memory import fits, kv_bytes_per_token, memory, state_bytes


def test_qwen36_kv_64_kib_per_token_at_f16():
    m = get_model("qwen3.6-27b")
    assert kv_bytes_per_token(m, 1, "F16") == 64 * 1024
    assert kv_bytes_per_token(m, 1000, "BF16") == 1000 * 64 * 1024
    assert kv_bytes_per_token(m, 1, "Q8_0") == pytest.approx(64 * 1024 / 2 * 34 / 32)  # 1.0625 bytes per value vs 2
    assert kv_bytes_per_token(m, 1, "Q4_0") == pytest.approx(64 * 1024 / 2 * 18 / 32)


def test_qwen36_deltanet_state_about_147_mib():
    mib = state_bytes(get_model("qwen3.6-27b")) / 2**20
    print(f"DeltaNet state per sequence: {mib:.2f} MiB")
    assert mib == pytest.approx(147, rel=0.01)
    assert state_bytes(get_model("llama-3-8b")) == 0


def test_sliding_layers_capped_at_window():
    g = get_model("gemma-3-27b")
    per = 2 * 16 * 128 * 2
    assert kv_bytes_per_token(g, 100_000) == per * (10 * 100_000 + 52 * 1024)
    assert kv_bytes_per_token(g, 500) == per * 62 * 500


def test_breakdown_scales_with_batch_and_fits():
    from qlab.hwdb import get_device

    one = memory("qwen3.6-27b", "Q4_K_M", 32768, batch=1)
    four = memory("qwen3.6-27b", "Q4_K_M", 32768, batch=4)
    assert four.weights_gb == one.weights_gb
    assert four.kv_cache_gb == pytest.approx(4 * one.kv_cache_gb)
    assert four.state_gb == pytest.approx(4 * one.state_gb)
    assert one.total_gb == pytest.approx(one.weights_gb + one.kv_cache_gb + one.state_gb + one.overhead_gb)
    assert fits(one, get_device("rtx-3090")) and not fits(memory("qwen3.6-27b", "Q8_0", 4096), get_device("rtx-3090"))
    mac = get_device("m4-max-40c@48")  # Apple: only the default GPU share of unified memory counts
    assert mac.usable_memory_gb < 48
    assert fits(memory("qwen3.6-27b", "Q4_K_M", 4096, runtime="apple"), mac)


def test_bad_arguments():
    with pytest.raises(ValueError):
        memory("qwen3.6-27b", "Q4_K_M", -1)
