"""Every CLI table at 80 columns: ids whole, lines within the width, dropped columns named; --wide and
--format csv|json|md; ambiguous device names say which variant was taken; one device option for profile."""

from __future__ import annotations

import csv
import io
import json

import pytest

from qlab.cli import main
from qlab.tables import Column, render


def run80(capsys, monkeypatch, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def first_words(out: str) -> set[str]:
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def assert_fits(out: str, width: int = 80) -> None:
    long = [line for line in out.splitlines() if len(line) > width]
    assert not long, long[:3]


def test_hw_list_at_80_columns_keeps_every_id(capsys, monkeypatch):
    from qlab.hwdb import device_ids

    out = run80(capsys, monkeypatch, "hw", "list")
    assert_fits(out)
    assert set(device_ids()) <= first_words(out)  # rtx-pro-6000-blackwell whole, not "rtx-pro-6000-blac…"
    assert "--wide shows every" in out


def test_models_tables_at_80_columns(capsys, monkeypatch):
    from qlab.models import all_presets

    out = run80(capsys, monkeypatch, "models", "list")
    assert_fits(out)
    assert set(all_presets()) <= first_words(out)
    out = run80(capsys, monkeypatch, "models", "show", "qwen3.6-27b", "--quant", "Q4_K_M")
    table = out[out.index("Q4_K_M: file"):]
    assert_fits(table)
    assert "bits per weight" in table and "Q4_K" in first_words(table) and "Q6_K" in first_words(table)
    assert len(out.splitlines()) < 60  # a summary, not 865 tensor lines
    out = run80(capsys, monkeypatch, "models", "show", "qwen3.6-27b", "--quant", "Q4_K_M", "--tensors")
    assert "output.weight" in first_words(out) and "blk.63.ffn_down.weight" in first_words(out)


def test_predict_at_80_columns_keeps_scenario_and_verdict(capsys, monkeypatch):
    out = run80(capsys, monkeypatch, "predict", "--hw", "rtx-pro-6000-blackwell,rtx-4060-ti-16gb,m4-max-40c",
                "--quant", "Q4_K_M,Q8_0", "--context", "4096,131072")
    assert_fits(out)
    assert {"rtx-pro-6000-blackwell", "rtx-4060-ti-16gb", "m4-max-40c"} <= first_words(out)
    header = out.splitlines()[1]
    for col in ("quant", "context", "decode tok/s", "fits", "total GB"):
        assert col in header, header
    assert "…" not in out and "Q…" not in out


def test_formats_and_wide(capsys, monkeypatch):
    out = run80(capsys, monkeypatch, "predict", "--hw", "rtx-3090,h100-sxm", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["hw"] for r in rows] == ["rtx-3090", "h100-sxm"] and "prefill_tok_s" in rows[0]
    rows = json.loads(run80(capsys, monkeypatch, "hw", "list", "--vendor", "amd", "--format", "json"))
    assert rows and all(r["id"] for r in rows)
    md = run80(capsys, monkeypatch, "models", "list", "--format", "md")
    assert md.splitlines()[1].startswith("|---")
    wide = run80(capsys, monkeypatch, "hw", "list", "--wide")
    assert "launch" in wide.splitlines()[1] and "--wide shows" not in wide


def test_render_never_cuts_a_kept_column_and_names_dropped_ones():
    cols = [Column("id", "id", keep=True), Column("name", "name", wrap=True, priority=2, min_width=6),
            Column("a", "aaaa", right=True, priority=1), Column("b", "bbbbbbbb", priority=3)]
    rows = [{"id": "a-very-long-device-id-x", "name": "A Long Marketing Name", "a": 1, "b": "x"}]
    text = render(rows, cols, width=40)
    assert "a-very-long-device-id-x" in text
    table, note = text.split("(not shown")
    assert "bbbbbbbb" in note and "bbbbbbbb" not in table and "--wide" in note  # dropped, and said so
    assert all(len(line) <= 40 for line in text.splitlines())
    assert "A Long" in text and "Name" in text and "ing" in text  # wrapped onto more lines, nothing cut
    with pytest.raises(ValueError):
        render(rows, cols, fmt="xml")


def test_ambiguous_names_say_which_variant(capsys, monkeypatch):
    out = run80(capsys, monkeypatch, "predict", "--hw", "a100-80gb,Apple M4 Max,rtx-3090")
    assert_fits(out)
    flat = " ".join(out.split())
    assert "'a100-80gb' could be a100-80gb-sxm or a100-80gb-pcie; using a100-80gb-sxm" in flat
    assert "'Apple M4 Max' could be m4-max-40c or m4-max-32c; using m4-max-40c" in flat
    assert "rtx-3090' could" not in out
    out = run80(capsys, monkeypatch, "hw", "show", "a100-80gb")
    assert "using a100-80gb-sxm" in out


def test_profile_takes_device_like_tune_and_bench():
    import argparse

    from qlab.profile.commands import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    parser = sub.choices["profile"]
    assert parser.parse_args(["--device", "cpu"]).gpu == "cpu"
    assert parser.parse_args(["--gpu", "cpu"]).gpu == "cpu"  # the old name stays an alias


def test_stage_progress_moves_within_stages_and_prints_lines_off_a_terminal():
    from rich.console import Console

    from qlab.progress import StageProgress

    now = [0.0]
    out = io.StringIO()
    con = Console(file=out, width=200)  # not a terminal: plain lines
    with StageProgress({"detect": 1, "microbench": 5, "tune": 25, "decode": 60}, con, clock=lambda: now[0]) as p:
        p.begin("detect")
        now[0] = 1.0
        p.finish("detect")
        assert p.eta() is None and "ETA estimating" in p.status()  # 1 weight says nothing about tuning
        p.begin("microbench")
        now[0] = 6.0
        p.finish("microbench")                    # 6 weights in 6 s: 1 s per weight
        p.begin("tune")
        now[0] = 16.0
        first = p.eta(), p.done_weight()
        now[0] = 26.0
        second = p.eta(), p.done_weight()
        assert first[0] == pytest.approx(15 + 60) and second[0] == pytest.approx(5 + 60)  # the ETA moves
        assert 6 < first[1] < second[1] <= 6 + 0.9 * 25                                    # so does the bar
        now[0] = 100.0
        assert p.done_weight() == pytest.approx(6 + 0.9 * 25)  # capped until the stage really ends
        p.finish("tune", "failed")
        p.finish("decode", "skipped (budget spent)")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("qlab profile: detect: started (stage 1/4 detect")
    assert any("tune: failed in 1:34" in line for line in lines)
    assert lines[-1].startswith("qlab profile: finished")
