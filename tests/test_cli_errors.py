"""Exit codes of the `qlab` command: 0 ok, 1 a check failed, 2 bad input/usage, 3 internal error (traceback to a
log file whose path is printed in one line); with --json every error is also a JSON object on stdout."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import qlab.hwdb
from qlab.cli import main
from qlab.errors import QlabError
from qlab.paths import qlab_home


def _boom(*_a, **_k):
    raise RuntimeError("boom: an unexpected bug")


def test_unexpected_exception_exits_3_with_log_path_and_no_traceback(monkeypatch, capsys):
    monkeypatch.setattr(qlab.hwdb, "all_devices", _boom)
    assert main(["hw", "list"]) == 3
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "internal error (RuntimeError: boom: an unexpected bug)" in lines[0]
    log = re.search(r"the traceback is in (\S+)$", lines[0]).group(1)
    assert log.startswith(str(qlab_home() / "logs"))
    text = open(log).read()
    assert "Traceback" in text and "boom: an unexpected bug" in text and "hw list" in text


def test_internal_error_with_json_prints_error_object(monkeypatch, capsys):
    monkeypatch.setattr(qlab.hwdb, "all_devices", _boom)
    assert main(["hw", "list", "--json"]) == 3
    out, err = capsys.readouterr()
    obj = json.loads(out)
    assert obj["error"]["exit_code"] == 3 and obj["error"]["kind"] == "internal"
    assert obj["error"]["log"] in err and "Traceback" not in err


def test_log_falls_back_to_temp_dir_when_home_is_not_writable(monkeypatch, capsys, tmp_path):
    home = tmp_path / "file-not-dir"
    home.write_text("")  # $QLAB_HOME is a file: logs/ cannot be made under it
    monkeypatch.setenv("QLAB_HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(qlab.hwdb, "all_devices", _boom)
    assert main(["hw", "list"]) == 3
    err = capsys.readouterr().err
    assert str(tmp_path / "tmp" / "qlab-logs") in err and "Traceback" not in err


def test_bad_input_exits_2_one_line_and_json_object(capsys):
    assert main(["hw", "show", "no-such-device", "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("qlab: error: unknown device 'no-such-device'")
    obj = json.loads(out)
    assert obj == {"error": {"message": obj["error"]["message"], "exit_code": 2, "kind": "bad_input"}}
    assert "no-such-device" in obj["error"]["message"]


def test_check_failed_exits_1(monkeypatch, capsys):
    def failed(*_a, **_k):
        raise QlabError("3 of 5 checks failed", exit_code=1)

    monkeypatch.setattr(qlab.hwdb, "all_devices", failed)
    assert main(["hw", "list", "--json"]) == 1
    out, _ = capsys.readouterr()
    assert json.loads(out)["error"]["kind"] == "check_failed"


def test_usage_error_stays_exit_2_and_json_object_under_json(capsys):
    with pytest.raises(SystemExit) as e:
        main(["hw", "list", "--json", "--no-such-flag"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert "unrecognized arguments: --no-such-flag" in err
    assert json.loads(out)["error"]["exit_code"] == 2
    with pytest.raises(SystemExit) as e:
        main(["hw", "list", "--no-such-flag"])
    assert e.value.code == 2 and capsys.readouterr().out == ""


def test_crash_in_a_real_process_exits_3(tmp_path):
    """The installed entry point, not just main(): a crash shows one line and exits 3."""
    home = tmp_path / "home"
    (home / "devices").mkdir(parents=True)
    code = ("import sys, qlab.hwdb as h\n"
            "h.all_devices = lambda: 1/0\n"
            "from qlab.cli import main\n"
            "sys.exit(main(['hw', 'list']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "QLAB_HOME": str(home)})
    assert r.returncode == 3
    assert "Traceback" not in r.stderr and "ZeroDivisionError" in r.stderr
    assert str(home / "logs") in r.stderr


@pytest.mark.parametrize("argv, expected", [
    (["bench", "decode", "--threads", "-1"], "argument --threads: expected an integer >= 1, got -1"),
    (["bench", "decode", "--threads", "0"], "argument --threads: expected an integer >= 1, got 0"),
    (["profile", "--threads", "-1"], "argument --threads: expected an integer >= 1"),
    (["profile", "--budget", "nan"], "argument --budget: expected a finite number > 0, got 'nan'"),
    (["profile", "--out", __file__], "argument --out:"),
    (["bench", "decode", "--dump-logits", "/"], "argument --dump-logits: '/' is a directory"),
])
def test_bad_numbers_and_paths_in_flags_are_usage_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["gguf", "synth", "--layers", "4", "--width-scale", "16", "-o", "{dir}"],
    ["gguf", "synth", "--layers", "4", "--width-scale", "16", "-o", "{file}/x.gguf"],
    ["bench", "gate", "--save", "{dir}"],
    ["report", "--out", "{file}/r.html"],
    ["fleet", "report", "--profiles", "{dir}", "--out", "{dir}"],
    ["fleet", "profile", "--out", "{file}"],
])
def test_output_onto_a_directory_or_through_a_file_is_exit_2_at_once(argv, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    argv = [a.format(dir=tmp_path, file=f) for a in argv]
    from qlab.cli import COMMANDS
    pytest.importorskip(COMMANDS[argv[0]] if isinstance(COMMANDS[argv[0]], str) else "qlab")
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert ("is a directory" in err or "which is a file" in err or "is a file" in err
            or "not a writable directory" in err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, expected", [
    (["profile", "--quants", ""], "--quants '': expected one or more quant ids"),
    (["profile", "--quants", ","], "--quants ',': expected one or more quant ids"),
    (["profile", "--contexts", ""], "--contexts '': expected one or more token counts"),
])
def test_empty_selection_is_not_a_run_of_nothing(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_gguf_synth_onto_a_pipe_is_refused(tmp_path, capsys):
    """gguf synth renames a finished temp file over -o: onto /dev/null that would replace the device. A FIFO
    stands in for /dev/null so that a regression cannot harm the machine running the test."""
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["gguf", "synth", "--layers", "4", "--width-scale", "16", "-o", str(fifo)]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


DEEP = "[" * 100_000  # json's C decoder raises RecursionError, not JSONDecodeError, on this


@pytest.mark.parametrize("argv, expected", [
    (["predict", "--hw", "rtx-3090", "--profile", "{deep}"], "not JSON (nested too deeply)"),
    (["profile", "--resume", "{deep}"], "not JSON (nested too deeply)"),
    (["fleet", "report", "--profiles", "{dir}"], "not a readable fleet manifest"),
])
def test_deeply_nested_json_is_one_line_exit_2(argv, expected, tmp_path, capsys):
    pytest.importorskip("qlab.fleet.commands")
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    (tmp_path / "fleet.json").write_text(DEEP)
    assert main([a.format(deep=deep, dir=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "internal error" not in err


def test_deeply_nested_tune_cache_is_ignored_with_a_warning(tmp_path):
    from qlab.tune.cache import TuneCache, TuneCacheWarning

    path = tmp_path / "tune-cache.json"
    path.write_text(DEEP)
    with pytest.warns(TuneCacheWarning, match="corrupt"):
        assert TuneCache(path).get("any") is None


@pytest.mark.parametrize("argv, expected", [
    (["selftest", "--device", "cpu", "--only", ","], "--only ',': expected one or more steps"),
    (["selftest", "--device", "cpu", "--only", "kernels", "-o", "{file}/x"], "which is a file"),
])
def test_selftest_empty_selection_and_bad_out(argv, expected, tmp_path, capsys):
    pytest.importorskip("qlab.selftest.commands")
    f = tmp_path / "a-file"
    f.write_text("x")
    try:
        code = main([a.format(file=f) for a in argv])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert expected in capsys.readouterr().err


def test_tune_shape_too_large_to_allocate_is_exit_2(monkeypatch, capsys):
    """A --shapes value so large the inputs cannot be allocated (numpy raises MemoryError) is bad input."""
    from qlab.tune.ops.builtin import BlockedMatmulOp

    def huge(*_a, **_k):
        raise MemoryError("Unable to allocate 262. TiB for an array")

    monkeypatch.setattr(BlockedMatmulOp, "make_inputs", huge)
    assert main(["tune", "--op", "blocked_matmul", "--shapes", "M=64", "--budget", "1", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "cannot build inputs or the reference: Unable to allocate" in err and "internal error" not in err


def test_a_subcommand_module_that_fails_to_import_is_exit_3_not_a_traceback(monkeypatch, capsys):
    import qlab.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "broken", "qlab.errors_no_such_module_part")
    real = cli.importlib.import_module

    def fake(name):
        if name == "qlab.errors_no_such_module_part":
            raise SyntaxError("f-string: unterminated string")
        return real(name)

    monkeypatch.setattr(cli.importlib, "import_module", fake)
    assert main(["hw", "list"]) == 3
    err = capsys.readouterr().err
    assert "internal error (SyntaxError: f-string: unterminated string)" in err and "Traceback" not in err


def test_profile_path_with_markup_like_text_prints_as_is(monkeypatch, tmp_path, capsys):
    import qlab.profile.runner as runner
    import qlab.profile.summary as summary

    out = tmp_path / "runs[/]x"
    monkeypatch.setattr(runner, "run_profile", lambda opts, console: ({"stages": {}}, out / "p.json"))
    monkeypatch.setattr(summary, "print_summary", lambda doc, console: None)
    assert main(["profile", "--out", str(out)]) == 0
    assert "runs[/]x" in capsys.readouterr().out.replace("\n", "")
