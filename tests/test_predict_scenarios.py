"""`qlab predict --scenarios FILE.csv` with everyday bad files: one clear line (exit 2), never a traceback."""

from __future__ import annotations

import json

import pytest

from qlab.cli import main

ROW = "rtx-3090,qwen3.6-27b,Q4_K_M,4096\n"
HEADER = "hw,model,quant,context\n"


@pytest.mark.parametrize("content, expected", [
    (HEADER.encode(), "no scenarios: the file has a header but no rows"),
    (b"", "empty file; expected a header line"),
    ((HEADER + "rtx-3090,qwen3.6-27b,Q4_K_M,4096,9\n").encode(), "line 2: 5 fields, but the header names 4"),
    ((HEADER + ROW + "rtx-3090,qwen3.6-27b,Q4_K_\xe9,4096\n").encode("latin-1"),
     "line 3: not UTF-8 text (byte 0xe9)"),
    (b"hw,model,quant,context,bacth\n" + ROW.encode(), "line 1: unknown column 'bacth'"),
    (b"hw,model,quant,context,hw\n" + ROW.encode(), "column 'hw' appears more than once"),
    ((HEADER + "rtx-3090,qwen3.6-27b,,4096\n").encode(), "line 2: empty quant"),
    ((HEADER + 'rtx-3090,qwen3.6-27b,"Q4_K_M\n').encode(), "not valid CSV"),
])
def test_bad_scenarios_file_is_one_line_exit_2(tmp_path, capsys, content, expected):
    f = tmp_path / "s.csv"
    f.write_bytes(content)
    assert main(["predict", "--scenarios", str(f), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and expected in err and str(f) in err and "Traceback" not in err
    assert expected in json.loads(out)["error"]["message"]


def test_utf8_bom_and_blank_lines_are_fine(tmp_path, capsys):
    f = tmp_path / "s.csv"
    f.write_bytes(b"\xef\xbb\xbf" + (HEADER + ROW + ",,,\n\n" + ROW.replace("4096", "32k")).encode())
    assert main(["predict", "--scenarios", str(f), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["context"] for r in rows] == [4096, 32768]


def test_missing_file_is_one_line(tmp_path, capsys):
    assert main(["predict", "--scenarios", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read: No such file or directory" in capsys.readouterr().err
