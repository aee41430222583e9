"""`qlab tune`: a table or JSON of chosen configurations, answered from the cache the second time, and one-line
errors (exit 2, no traceback) for bad input."""

import json

import pytest

from qlab.cli import main

ARGS = ["tune", "--op", "blocked_matmul", "--shapes", "M=2,N=1024,K=256", "--budget", "2"]


def test_json_then_cache(capsys):
    assert main(ARGS + ["--json"]) == 0
    (first,) = json.loads(capsys.readouterr().out)
    assert first["op"] == "blocked_matmul" and first["shape"]["N"] == 1024 and not first["from_cache"]
    assert first["speedup"] >= 1.0 and first["default_config"]["block_n"] == 16
    assert main(ARGS + ["--json"]) == 0
    (again,) = json.loads(capsys.readouterr().out)
    assert again["from_cache"] and again["config"] == first["config"]


def test_table_names_the_chosen_config_and_speedup(capsys):
    assert main(ARGS + ["--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "blocked_matmul" in out and "block_n=" in out and "x" in out and "measured" in out


def test_two_shapes_in_one_spec(capsys):
    assert main(["tune", "--op", "blocked_matmul", "--shapes", "M=1,N=512,K=128;M=4,N=512,K=128", "--budget", "3",
                 "--json", "--no-cache"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["shape"]["M"] for r in rows] == [1, 4]


@pytest.mark.parametrize("argv, message", [
    (["tune", "--op", "deltanetz"], "unknown op 'deltanetz'; closest: deltanet"),
    (["tune", "--op", "blocked_matmul", "--budget", "0"], "--budget 0: expected a positive"),
    (["tune", "--op", "blocked_matmul", "--budget", "-1"], "--budget -1: expected a positive"),
    (["tune", "--op", "blocked_matmul", "--shapes", "M"], "is not dim=value"),
    (["tune", "--op", "blocked_matmul", "--shapes", "Z=4"], "unknown dimension"),
    (["tune", "--op", "blocked_matmul", "--shapes", "M=-4"], "positive integer"),
    (["tune", "--op", "blocked_matmul", "--shapes", ";"], "no shape given"),
    (["tune", "--op", "blocked_matmul", "--strategy", "genetic"], "unknown strategy"),
    (["tune", "--op", "blocked_matmul", "--device", "cuda:7"], "no CUDA device"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unwritable_cache_dir_warns_and_still_answers(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("QLAB_HOME", str(tmp_path / "file" / "home"))
    assert main(ARGS + ["--json"]) == 0
    captured = capsys.readouterr()
    assert "not writable" in captured.err and "in memory" in captured.err
    assert json.loads(captured.out)[0]["config"]


def test_a_shape_the_kernel_rejects_is_one_line(capsys):
    from qlab.tune import OPS

    if "dequant_matmul" not in OPS:
        pytest.skip("qlab.kernels.dequant_matmul is not in this tree")
    assert main(["tune", "--op", "dequant_matmul", "--shapes", "K=100", "--budget", "2"]) == 2
    err = capsys.readouterr().err
    assert "K=100 is not a multiple" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
