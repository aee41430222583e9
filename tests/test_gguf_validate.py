"""Named regressions for hand-made bad GGUF files: each is a clear QlabError, one line per problem naming the file
and the metadata key or tensor, raised before anything is built from the bad value (each case runs in a worker
process with a timeout, so a hang fails the test instead of stalling it)."""

from __future__ import annotations

import pytest

import gguf_cases

K = "qwen35."


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return gguf_cases.write_tiny(tmp_path_factory.mktemp("valid") / "tiny.gguf", "Q8_0")


@pytest.fixture(scope="module")
def worker():
    w = gguf_cases.Worker()
    yield w
    w.stop()


def _expect(worker, path, *fragments):
    out = worker.run(path, timeout=60)
    assert out.startswith("clear "), out
    for f in (path.name,) + fragments:
        assert f in out, f"{f!r} not in {out!r}"


def test_base_file_is_valid(base, worker):
    assert worker.run(base, timeout=120) == "ok"


@pytest.mark.parametrize("value", [0xFFFFFFFF, 0, 5, 3])
def test_block_count_must_match_the_blocks_present(base, worker, tmp_path, value):
    """0xFFFFFFFF used to hang `gguf info` while memory grew without bound."""
    p = gguf_cases.patch_value(base, tmp_path / f"blocks{value}.gguf", K + "block_count", value)
    _expect(worker, p, K + "block_count", "4 blocks" if value else "out of range")


@pytest.mark.parametrize("value", [0, 2, 4, 128])
def test_ssm_group_count(base, worker, tmp_path, value):
    p = gguf_cases.patch_value(base, tmp_path / f"groups{value}.gguf", K + "ssm.group_count", value)
    _expect(worker, p, K + "ssm.group_count")


def test_ssm_time_step_rank_zero(base, worker, tmp_path):
    p = gguf_cases.patch_value(base, tmp_path / "rank0.gguf", K + "ssm.time_step_rank", 0)
    _expect(worker, p, K + "ssm.time_step_rank", "out of range")


@pytest.mark.parametrize("value", [0, 1 << 30, 0xFFFFFFFF])
def test_head_count_kv(base, worker, tmp_path, value):
    p = gguf_cases.patch_value(base, tmp_path / f"kv{value}.gguf", K + "attention.head_count_kv", value)
    _expect(worker, p, K + "attention.head_count_kv")


@pytest.mark.parametrize("value", [0, 1, 3, 63, 257])
def test_rope_dimension_count(base, worker, tmp_path, value):
    p = gguf_cases.patch_value(base, tmp_path / f"rope{value}.gguf", K + "rope.dimension_count", value)
    _expect(worker, p, K + "rope.dimension_count")


@pytest.mark.parametrize("key,value", [("attention.layer_norm_rms_epsilon", float("nan")),
                                       ("rope.freq_base", float("inf")), ("rope.freq_base", -1.0)])
def test_non_finite_or_negative_floats(base, worker, tmp_path, key, value):
    p = gguf_cases.patch_value(base, tmp_path / "float.gguf", K + key, value)
    _expect(worker, p, K + key)


def test_flipped_bit_in_a_token_string(base, worker, tmp_path):
    import gguf

    f = gguf.GGUFReader(base).fields["tokenizer.ggml.tokens"]
    p = gguf_cases.patch_value(base, tmp_path / "token.gguf", "tokenizer.ggml.tokens", 0xFF, part=int(f.data[300 % len(f.data)]))
    _expect(worker, p, "tokenizer.ggml.tokens", "not valid UTF-8")


def test_tensor_type_changed_so_it_overlaps_the_next(base, worker, tmp_path):
    import gguf

    p = gguf_cases.patch_tensor(base, tmp_path / "type.gguf", "blk.0.attn_qkv.weight", "type",
                                int(gguf.GGMLQuantizationType.F32))
    _expect(worker, p, "blk.0.attn_qkv.weight")
    assert "overlaps" in worker.run(p) or "outside the file" in worker.run(p)


def test_tensor_offset_moved_onto_another(base, worker, tmp_path):
    at = gguf_cases.tensor_offset(base, "blk.1.ffn_down.weight")
    p = gguf_cases.patch_tensor(base, tmp_path / "offset.gguf", "blk.1.ffn_up.weight", "offset", at + 32)
    _expect(worker, p, "overlaps", "blk.1.ff")


def test_tensor_past_the_end_of_the_file(base, worker, tmp_path):
    p = gguf_cases.patch_tensor(base, tmp_path / "past.gguf", "output.weight", "offset", base.stat().st_size)
    _expect(worker, p, "'output.weight'", "outside the file")


def test_several_problems_one_line_each(base, worker, tmp_path):
    p = gguf_cases.patch_value(base, tmp_path / "two.gguf", K + "rope.dimension_count", 3)
    p = gguf_cases.patch_value(p, tmp_path / "two2.gguf", K + "ssm.time_step_rank", 0)
    out = worker.run(p)
    assert out.count(" | ") == 1 and K + "rope.dimension_count" in out and K + "ssm.time_step_rank" in out, out


def test_cli_gguf_info_exit_2_one_line(base, tmp_path, capsys):
    from qlab.cli import main

    p = gguf_cases.patch_value(base, tmp_path / "blocks.gguf", K + "block_count", 0xFFFFFFFF)
    assert main(["gguf", "info", str(p)]) == 2
    err = capsys.readouterr().err
    assert "blocks.gguf: qwen35.block_count: 4294967295, but the file holds tensors of 4 blocks" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("key", ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                                 "qwen35.rope.dimension_sections"])
@pytest.mark.parametrize("count", [2**62, 10**9])
def test_array_count_past_the_file_is_rejected_at_once(base, worker, tmp_path, key, count):
    """gguf-py's reader visits array items one by one: a flipped count kept it busy for minutes."""
    p = gguf_cases.patch_value(base, tmp_path / "count.gguf", key, count, part=4)
    _expect(worker, p, key, "cannot fit" if "tokens" in key else "past the end of the file")


@pytest.mark.parametrize("at,what", [(8, "tensor infos"), (16, "metadata entries")])
def test_header_counts_past_the_file(base, worker, tmp_path, at, what):
    p = gguf_cases._patch(base, tmp_path / "hdr.gguf", at, (2**63).to_bytes(8, "little"))
    _expect(worker, p, what, "cannot fit")
