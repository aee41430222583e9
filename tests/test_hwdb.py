"""The packaged hardware database: coverage, lookups, memory options, Apple's GPU share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qlab.errors import QlabError
from qlab.hwdb import all_devices, device_ids, get_device
from qlab.hwdb.loader import RATES

DESIGN_IDS = [
    "rtx-3090", "rtx-3090-ti", "rtx-4090", "rtx-5090", "rtx-4060-ti-16gb", "rtx-a6000", "rtx-6000-ada",
    "rtx-pro-6000-blackwell", "l40s", "a100-40gb-pcie", "a100-40gb-sxm", "a100-80gb-pcie", "a100-80gb-sxm",
    "h100-pcie", "h100-sxm", "h200-sxm", "b200", "dgx-spark", "rx-7900-xtx", "mi300x", "m1", "m1-pro", "m1-ultra",
    "m2", "m2-pro", "m3", "m3-pro", "m3-ultra", "m4", "m5", "m3-max-30c", "m3-max-40c", "m4-max-32c", "m4-max-40c",
]


def test_at_least_60_devices_each_with_bandwidth_memory_rate_and_sources():
    devices = all_devices()
    assert len(devices) >= 60
    for d in devices:
        assert d.mem_bandwidth_gbs > 0 and d.memory_gb > 0, d.id
        rates = [getattr(d, r) for r in RATES if getattr(d, r)]
        assert rates, f"{d.id} has no compute rate"
        for field in ("mem_bandwidth_gbs", "memory_gb", *[r for r in RATES if getattr(d, r)]):
            assert d.sources.get(field, "").strip(), f"{d.id}: no source for {field}"


def test_design_ids_present():
    ids = set(device_ids())
    missing = [i for i in DESIGN_IDS if i not in ids]
    assert not missing


@pytest.mark.parametrize("alias, expected", [
    ("NVIDIA GeForce RTX 3090", "rtx-3090"),
    ("nvidia geforce rtx 3090", "rtx-3090"),
    ("Apple M4 Max", "m4-max-40c"),
    ("m4-max", "m4-max-40c"),
    ("m3-max", "m3-max-40c"),
    ("M3-MAX-30C", "m3-max-30c"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
    ("a100-80gb", "a100-80gb-sxm"),  # published benchmarks that do not say PCIe or SXM
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000-blackwell"),
])
def test_aliases(alias, expected):
    assert get_device(alias).id == expected


def test_apple_variants_differ_in_bandwidth():
    assert get_device("m4-max-40c").mem_bandwidth_gbs == 546
    assert get_device("m4-max-32c").mem_bandwidth_gbs == 410
    assert get_device("m3-max-30c").mem_bandwidth_gbs == 300


def test_memory_option_pick():
    d = get_device("m4-max-40c@64")
    assert d.memory_gb == 64 and d.id == "m4-max-40c"
    assert d.usable_memory_gb == pytest.approx(48.0)
    assert get_device("rtx-4060-ti@8").memory_gb == 8
    assert get_device("m4-max-40c").memory_gb == max(get_device("m4-max-40c").memory_options_gb)
    with pytest.raises(QlabError, match="no 32 GB option"):
        get_device("m4-max-40c@32")
    with pytest.raises(QlabError, match="ID@GB"):
        get_device("m4-max-40c@lots")


def test_apple_gpu_share_follows_memory_size():
    assert get_device("m4-max-32c@36").gpu_memory_fraction == pytest.approx(2 / 3)
    assert get_device("m4-max-40c@128").gpu_memory_fraction == pytest.approx(0.75)
    assert "recommendedMaxWorkingSetSize" in get_device("m1").sources["gpu_memory_fraction"]
    assert get_device("rtx-3090").gpu_memory_fraction == 1.0


def test_unknown_device_names_closest():
    with pytest.raises(QlabError) as e:
        get_device("rtx-4091")
    assert "rtx-4091" in str(e.value) and "rtx-4090" in str(e.value)


def test_estimates_are_marked():
    m4 = get_device("m4")
    assert m4.estimates.get("fp32_tflops") == "est"
    assert get_device("m5").estimates.get("fp32_tflops") == "est"


def test_import_does_not_pull_torch():
    code = "import sys, qlab.hwdb as h; h.all_devices(); h.get_device('rtx-3090'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


DATA = Path(__file__).resolve().parent.parent / "qlab" / "hwdb" / "research"


def test_every_csv_row_is_a_device_and_the_script_reproduces_the_ids(tmp_path):
    """Each CSV row maps to a packaged device (plain Apple rows to the top variant's aliases)."""
    import csv

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    try:
        import hwdb_from_csv as gen
    finally:
        sys.path.pop(0)
    assert gen.main(["--data", str(DATA), "--out", str(tmp_path)]) == 0
    generated = {p.stem for p in tmp_path.glob("*.toml")}
    assert generated <= set(device_ids())
    for name in ("hwdb_research.csv", "hwdb_extra.csv"):
        with open(DATA / name, newline="") as f:
            for row in csv.DictReader(f):
                assert get_device(row["device"]).mem_bandwidth_gbs > 0, row["device"]


def test_commands_module_is_light():
    code = "import sys, qlab.hwdb.commands, qlab.hwdb.detect; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
