"""User device files in $QLAB_HOME/devices: add, override, extend, and clear errors for malformed files."""

from __future__ import annotations

import pytest

from qlab.cli import main
from qlab.errors import QlabError
from qlab.hwdb import get_device
from qlab.paths import user_devices_dir

GOOD = '''
id = "my-gpu"
name = "ACME Tensor 9000"
vendor = "nvidia"
kind = "gpu"
architecture = "Ada Lovelace"
memory_gb = 20
mem_bandwidth_gbs = 700
fp16_tflops = 100
aliases = ["ACME T9000"]

[sources]
default = "ACME datasheet rev 3"
fp16_tflops = "measured with qlab profile"
'''


def write(name: str, text: str):
    d = user_devices_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    path.write_text(text)
    return path


def test_user_device_added():
    write("my-gpu.toml", GOOD)
    d = get_device("acme t9000")
    assert d.id == "my-gpu" and d.memory_gb == 20 and d.peak_tflops == 100
    assert d.sources["mem_bandwidth_gbs"] == "ACME datasheet rev 3"
    assert d.sources["fp16_tflops"] == "measured with qlab profile"


def test_user_device_overrides_packaged_and_extends():
    write("rtx-3090.toml", 'extends = "rtx-3090"\noverride = true\nmem_bandwidth_gbs = 900\n[sources]\n'
                           'mem_bandwidth_gbs = "my card, memory underclocked"\n')
    d = get_device("NVIDIA GeForce RTX 3090")
    assert d.mem_bandwidth_gbs == 900 and d.sources["mem_bandwidth_gbs"] == "my card, memory underclocked"
    assert d.bf16_tflops == 71.2 and "whitepaper" in d.sources["bf16_tflops"].lower()  # the rest is the base's


def test_user_cpu_host_file_wins_over_detection():
    write("cpu-host.toml", GOOD.replace('"my-gpu"', '"cpu-host"').replace('"nvidia"', '"cpu"')
          .replace('kind = "gpu"', 'kind = "cpu"').replace('aliases = ["ACME T9000"]', ''))
    assert get_device("cpu-host").mem_bandwidth_gbs == 700


@pytest.mark.parametrize("edit, field, expected", [
    (lambda t: t.replace('mem_bandwidth_gbs = 700\n', ''), "mem_bandwidth_gbs", "peak memory bandwidth"),
    (lambda t: t.replace("mem_bandwidth_gbs = 700", 'mem_bandwidth_gbs = "fast"'), "mem_bandwidth_gbs",
     "expected a finite number > 0"),
    (lambda t: t.replace("mem_bandwidth_gbs = 700", "mem_bandwidth_gbs = nan"), "mem_bandwidth_gbs",
     "expected a finite number > 0"),
    (lambda t: t.replace("mem_bandwidth_gbs = 700", "mem_bandwidth_gbs = inf"), "mem_bandwidth_gbs",
     "expected a finite number > 0"),
    (lambda t: t.replace("mem_bandwidth_gbs = 700", "mem_bandwidth_gbs = 7e11"), "mem_bandwidth_gbs",
     "<= 100000"),
    (lambda t: t.replace("mem_bandwidth_gbs = 700", "mem_bandwidth_gbs = true"), "mem_bandwidth_gbs",
     "expected a finite number > 0"),
    (lambda t: t.replace("fp16_tflops = 100", "fp16_tflops = -nan"), "fp16_tflops", "a finite number"),
    (lambda t: t.replace("memory_gb = 20", "memory_gb = -1"), "memory_gb", "expected a finite number > 0"),
    (lambda t: t.replace("memory_gb = 20", "memory_options_gb = [16, nan]"), "memory_options_gb[1]",
     "a finite number"),
    (lambda t: t.replace("fp16_tflops = 100", "fp16_tflops = 100\ncompute_units = 1.5"), "compute_units",
     "an integer"),
    (lambda t: t.replace("memory_gb = 20", "memory_gb = 20\ngpu_memory_fraction = 1.5"), "gpu_memory_fraction",
     "<= 1"),
    (lambda t: t.replace('vendor = "nvidia"', 'vendor = "acme"'), "vendor", "one of nvidia"),
    (lambda t: t.replace("fp16_tflops = 100\n", ""), "fp32_tflops", "at least one compute rate"),
    (lambda t: t.replace('default = "ACME datasheet rev 3"\n', ""), "sources.name", "a source"),
    (lambda t: t.replace("fp16_tflops = 100", "fp16_tflopz = 100"), "fp16_tflopz", "a known field"),
    (lambda t: t.replace('id = "my-gpu"', 'id = "My GPU"'), "id", "lowercase slug"),
    (lambda t: t.replace('id = "my-gpu"', 'id = "my-gpu"\noverride = "yes"'), "override", "true or false"),
    (lambda t: t + "\n[estimates]\nbogus = 'est'\n", "estimates.bogus", "the name of a device field"),
])
def test_malformed_user_file_is_skipped_with_a_warning_naming_file_field_and_expectation(edit, field, expected,
                                                                                          capsys):
    path = write("bad.toml", edit(GOOD))
    assert get_device("rtx-3090").mem_bandwidth_gbs == 936  # built-in devices still work
    msg = capsys.readouterr().err
    assert msg.startswith("qlab: warning: ") and msg.count("\n") == 1
    assert str(path) in msg and repr(field) in msg and expected in msg and "file skipped" in msg
    with pytest.raises(QlabError, match="unknown device"):
        get_device("my-gpu")


def test_invalid_toml_and_latin1_file_do_not_break_commands(capsys):
    broken = write("broken.toml", "id = 'x\n")
    latin1 = user_devices_dir() / "latin1.toml"
    latin1.write_bytes(GOOD.replace("ACME Tensor 9000", "ACME Tensor \xe9").encode("latin-1"))
    assert main(["hw", "list"]) == 0
    err = capsys.readouterr().err
    assert str(broken) in err and "not valid TOML" in err and "Traceback" not in err
    assert str(latin1) in err and "not UTF-8" in err
    assert main(["predict", "--hw", "rtx-3090", "--json"]) == 0  # predictions for built-in devices still work


def test_replacing_a_builtin_id_needs_override(capsys):
    write("rtx-3090.toml", 'extends = "rtx-3090"\nmem_bandwidth_gbs = 800\n[sources]\ndefault = "mine"\n')
    assert get_device("rtx-3090").mem_bandwidth_gbs == 936
    err = capsys.readouterr().err
    assert "rtx-3090.toml" in err and "override = true" in err and "file skipped" in err


def test_user_alias_cannot_silently_take_a_builtin_name(capsys):
    write("my-gpu.toml", GOOD.replace('aliases = ["ACME T9000"]', 'aliases = ["ACME T9000", "rtx 4090"]'))
    assert get_device("rtx 4090").id == "rtx-4090"
    assert get_device("ACME T9000").id == "my-gpu" and get_device("my-gpu").aliases == ("ACME T9000",)
    err = capsys.readouterr().err
    assert "alias 'rtx 4090' is a name of built-in device 'rtx-4090'" in err and "override = true" in err


def test_user_id_that_is_a_builtin_alias_needs_override(capsys):
    write("m4-max.toml", GOOD.replace('"my-gpu"', '"m4-max"'))
    assert get_device("m4-max").id == "m4-max-40c"
    assert "'m4-max' is a name of built-in device 'm4-max-40c'" in capsys.readouterr().err


def test_override_true_takes_over_alias_and_id_without_warning(capsys):
    write("my-gpu.toml", GOOD.replace('aliases = ["ACME T9000"]', 'aliases = ["rtx 4090"]\noverride = true'))
    write("rtx-3090.toml", 'extends = "rtx-3090"\noverride = true\nmem_bandwidth_gbs = 800\n'
                           '[sources]\ndefault = "mine"\n')
    assert get_device("rtx 4090").id == "my-gpu"
    assert get_device("rtx-3090").mem_bandwidth_gbs == 800
    assert capsys.readouterr().err == ""


def test_two_user_files_with_one_id_keep_the_first(capsys):
    write("a.toml", GOOD)
    write("b.toml", GOOD.replace("memory_gb = 20", "memory_gb = 40"))
    assert get_device("my-gpu").memory_gb == 20
    assert "b.toml" in capsys.readouterr().err


def test_cache_reloads_when_user_files_change():
    assert get_device("rtx-3090").mem_bandwidth_gbs == 936
    write("rtx-3090.toml", 'extends = "rtx-3090"\noverride = true\nmem_bandwidth_gbs = 800\n[sources]\n'
                           'default = "mine"\n')
    assert get_device("rtx-3090").mem_bandwidth_gbs == 800


def test_dangling_link_and_directory_named_toml_are_skipped(capsys):
    d = user_devices_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "gone.toml").symlink_to(d / "nowhere.toml")
    (d / "dir.toml").mkdir()
    write("my-gpu.toml", GOOD)
    assert get_device("my-gpu").memory_gb == 20
    err = capsys.readouterr().err
    assert "gone.toml: cannot read" in err and "dir.toml: cannot read" in err and "Traceback" not in err


def test_deeply_nested_toml_is_skipped_not_a_recursion_error(capsys):
    path = write("deep.toml", "a = " + "[" * 5000 + "\n")
    assert get_device("rtx-3090").mem_bandwidth_gbs == 936
    err = capsys.readouterr().err
    assert str(path) in err and "nested too deeply" in err


def test_markup_like_text_in_a_user_file_prints_as_is(capsys):
    write("my-gpu.toml", GOOD.replace("ACME Tensor 9000", "ACME [/] 9000").replace(
        'default = "ACME datasheet rev 3"', 'default = "ACME [bold]datasheet"'))
    assert main(["hw", "show", "my-gpu"]) == 0
    out = capsys.readouterr().out
    assert "ACME [/] 9000" in out and "ACME [bold]datasheet" in out
