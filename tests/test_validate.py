"""qlab.validate: numbers from files and flags are finite, in range and of the right type; output paths usable."""

from __future__ import annotations

import argparse
import math

import pytest

from qlab.errors import QlabError
from qlab.validate import (check_output_dir, check_output_file, field_source, flag_source, float_arg, int_arg,
                           integer, number, output_file, parse_integer, parse_number, positive)

SRC = field_source("dev.toml", "mem_bandwidth_gbs", "device file")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "700", None, True, [1], 10**400])
def test_number_rejects_non_finite_and_wrong_types(bad):
    with pytest.raises(QlabError) as e:
        number(bad, SRC)
    msg = str(e.value)
    assert msg.startswith("device file dev.toml: field 'mem_bandwidth_gbs': expected a finite number")
    assert "\n" not in msg


def test_number_ranges_and_message():
    assert number(3, SRC, minimum=0) == 3.0 and isinstance(number(3, SRC), float)
    assert positive(0.5, SRC) == 0.5
    with pytest.raises(QlabError, match=r"expected a finite number > 0, got 0"):
        positive(0, SRC)
    with pytest.raises(QlabError, match=r"expected a finite number >= 1 and <= 2, got 2.5"):
        number(2.5, SRC, minimum=1, maximum=2)
    with pytest.raises(QlabError, match=r"< 1"):
        number(1, SRC, maximum=1, max_exclusive=True)


def test_integer_rejects_fractions_strings_and_bools():
    assert integer(4, SRC) == 4 and integer(4.0, SRC) == 4
    for bad in (4.5, "4", True, math.nan, None):
        with pytest.raises(QlabError, match="expected an integer"):
            integer(bad, SRC)
    with pytest.raises(QlabError, match=">= 1, got 0"):
        integer(0, SRC, minimum=1)


@pytest.mark.parametrize("text", ["", " ", "nan", "NaN", "inf", "-Infinity", "1.0e400", "abc", ","])
def test_parse_number_rejects_text_that_is_not_a_finite_number(text):
    with pytest.raises(QlabError, match=r"^flag --context: expected a finite number"):
        parse_number(text, flag_source("--context"))


def test_parse_number_and_integer_accept_ordinary_text():
    assert parse_number(" 1e3 ", "x") == 1000.0
    assert parse_integer("1_000", "x", minimum=1) == 1000
    with pytest.raises(QlabError, match="expected an integer"):
        parse_integer("1.5", "x")


def _parser():
    p = argparse.ArgumentParser(prog="t", exit_on_error=True)
    p.add_argument("--threads", type=int_arg(minimum=1))
    p.add_argument("--scale", type=float_arg(minimum=1.0))
    p.add_argument("-o", type=output_file)
    return p


@pytest.mark.parametrize("argv, expected", [
    (["--threads", "-1"], "argument --threads: expected an integer >= 1, got -1"),
    (["--threads", "x"], "argument --threads: expected an integer >= 1, got 'x'"),
    (["--scale", "nan"], "argument --scale: expected a finite number >= 1, got 'nan'"),
    (["--scale", "0.25"], "argument --scale: expected a finite number >= 1, got 0.25"),
])
def test_flag_types_are_usage_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2
    assert expected in capsys.readouterr().err


def test_flag_types_pass_good_values():
    a = _parser().parse_args(["--threads", "2", "--scale", "1.5"])
    assert a.threads == 2 and a.scale == 1.5


def test_output_file_rejects_directory_and_path_through_a_file(tmp_path, capsys):
    f = tmp_path / "a.json"
    f.write_text("{}")
    with pytest.raises(QlabError, match="is a directory"):
        check_output_file(tmp_path, "-o")
    with pytest.raises(QlabError, match="which is a file"):
        check_output_file(f / "x.json", "-o")
    with pytest.raises(QlabError, match="expected a file path"):
        check_output_file("", "-o")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.json") == tmp_path / "new" / "deeper" / "x.json"
    with pytest.raises(SystemExit):
        _parser().parse_args(["-o", str(tmp_path)])
    assert "argument -o:" in capsys.readouterr().err


def test_output_dir_rejects_a_file(tmp_path):
    f = tmp_path / "a"
    f.write_text("")
    with pytest.raises(QlabError, match="is a file"):
        check_output_dir(f)
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"


def test_write_atomic_names_a_bad_output_path(tmp_path):
    from qlab.io import write_atomic, write_json_atomic

    f = tmp_path / "a.json"
    write_json_atomic(f, {"x": 1})
    with pytest.raises(QlabError, match="is a directory"):
        write_atomic(tmp_path, "x")
    with pytest.raises(QlabError, match="which is a file"):
        write_atomic(f / "b.json", "x")
    assert list(tmp_path.iterdir()) == [f]  # nothing half-written left behind


def test_write_atomic_full_disk_is_one_line(tmp_path, monkeypatch):
    import errno
    import os

    from qlab.io import write_atomic

    def full(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(QlabError, match="No space left on device"):
        write_atomic(tmp_path / "x.json", "x")
    assert list(tmp_path.iterdir()) == []  # the temp file is removed


def test_output_path_errors_are_also_oserrors(tmp_path):
    """Callers that fall back on a write failure (the tune cache keeps results in memory) still catch them."""
    from qlab.io import write_atomic

    with pytest.raises(OSError):
        write_atomic(tmp_path, "x")


def test_write_atomic_into_a_fifo_writes_in_place_and_keeps_it(tmp_path):
    """`-o /dev/null` or `/dev/stdout` must not rename a regular file over the device (it did: /dev/null became a
    file). A FIFO stands in for the device here, so a regression cannot harm the machine running the test."""
    import os
    import stat
    import threading

    from qlab.io import write_atomic

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    write_atomic(fifo, "hello")
    reader.join(timeout=10)
    assert got == ["hello"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_write_atomic_through_a_symlink_keeps_the_link(tmp_path):
    from qlab.io import write_atomic

    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_gguf_writer_refuses_a_device_or_pipe(tmp_path):
    import os

    from qlab.validate import check_replaceable_file

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(QlabError, match="is not a regular file"):
        check_replaceable_file(fifo, "-o")
    with pytest.raises(QlabError, match="is not a regular file"):
        check_replaceable_file("/dev/null", "-o")
    assert check_replaceable_file(tmp_path / "m.gguf") == tmp_path / "m.gguf"


def test_integer_bounds_are_printed_exactly():
    with pytest.raises(QlabError, match=r"<= 9223372036854775807, got 99999999999999999999999"):
        integer(99999999999999999999999, "x", minimum=0, maximum=2**63 - 1)
