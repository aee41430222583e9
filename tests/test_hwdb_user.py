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
    write("rtx-3090.toml", 'extends = "rtx-3090"\nmem_bandwidth_gbs = 900\n[sources]\n'
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
     "a positive number"),
    (lambda t: t.replace("memory_gb = 20", "memory_gb = -1"), "memory_gb", "a positive number"),
    (lambda t: t.replace('vendor = "nvidia"', 'vendor = "acme"'), "vendor", "one of nvidia"),
    (lambda t: t.replace("fp16_tflops = 100\n", ""), "fp32_tflops", "at least one compute rate"),
    (lambda t: t.replace('default = "ACME datasheet rev 3"\n', ""), "sources.name", "a source"),
    (lambda t: t.replace("fp16_tflops = 100", "fp16_tflopz = 100"), "fp16_tflopz", "a known field"),
    (lambda t: t.replace('id = "my-gpu"', 'id = "My GPU"'), "id", "lowercase slug"),
    (lambda t: t + "\n[estimates]\nbogus = 'est'\n", "estimates.bogus", "the name of a device field"),
])
def test_malformed_user_file_names_file_field_and_expectation(edit, field, expected):
    path = write("bad.toml", edit(GOOD))
    with pytest.raises(QlabError) as e:
        get_device("rtx-3090")
    msg = str(e.value)
    assert str(path) in msg and repr(field) in msg and expected in msg


def test_invalid_toml_and_cli_exit_code(capsys):
    path = write("broken.toml", "id = 'x\n")
    assert main(["hw", "list"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not valid TOML" in err and "Traceback" not in err


def test_cache_reloads_when_user_files_change():
    assert get_device("rtx-3090").mem_bandwidth_gbs == 936
    write("rtx-3090.toml", 'extends = "rtx-3090"\nmem_bandwidth_gbs = 800\n[sources]\ndefault = "mine"\n')
    assert get_device("rtx-3090").mem_bandwidth_gbs == 800
