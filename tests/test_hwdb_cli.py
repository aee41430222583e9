"""`qlab hw list|show|detect` through qlab.cli.main, for people and with --json."""

from __future__ import annotations

import json

import pytest

from qlab.errors import QlabError

from qlab.cli import main


def test_list_json_has_60_devices_with_bandwidth_memory_rate_and_sources(capsys):
    assert main(["hw", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 60
    rates = ("fp16_tflops", "bf16_tflops", "fp8_tflops", "int8_tops", "fp4_tflops", "fp32_tflops")
    for r in rows:
        assert r["mem_bandwidth_gbs"] > 0 and r["memory_gb"] > 0, r["id"]
        assert any(r[k] for k in rates), r["id"]
        assert r["sources"]["mem_bandwidth_gbs"] and r["sources"]["memory_gb"], r["id"]


def test_list_vendor_filter(capsys):
    assert main(["hw", "list", "--vendor", "apple", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["vendor"] for r in rows} == {"apple"}
    assert main(["hw", "list", "--vendor", "acme"]) == 2
    assert "unknown vendor 'acme'" in capsys.readouterr().err


def test_list_table_for_people(capsys):
    assert main(["hw", "list"]) == 0
    out = capsys.readouterr().out
    assert "rtx-3090" in out and "m4-max-40c" in out and "GB/s" in out


def test_show_apple_m4_max_alias(capsys):
    assert main(["hw", "show", "Apple M4 Max"]) == 0
    out = capsys.readouterr().out
    assert "m4-max-40c" in out and "546" in out and "default source" in out


def test_show_rtx_5090_json(capsys):
    assert main(["hw", "show", "rtx-5090", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["id"] == "rtx-5090" and d["mem_bandwidth_gbs"] == 1792 and d["memory_gb"] == 32
    assert d["bf16_tflops"] == 209.5 and d["compute_capability"] == "12.0"
    assert "whitepaper" in d["sources"]["mem_bandwidth_gbs"].lower()
    assert d["peak_tflops"] == 209.5 and d["usable_memory_gb"] == 32


def test_show_memory_option(capsys):
    assert main(["hw", "show", "m4-max-40c@64", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["memory_gb"] == 64 and d["usable_memory_gb"] == 48


def test_show_unknown_id_exits_2_naming_closest(capsys):
    assert main(["hw", "show", "rtx-4091"]) == 2
    err = capsys.readouterr().err
    assert "rtx-4091" in err and "rtx-4090" in err and "Traceback" not in err


def test_detect_here_reports_cpu_host(capsys):
    assert main(["hw", "detect", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["id"] == "cpu-host" and d["source"] == "cpu"
    assert d["device"]["vendor"] == "cpu" and d["device"]["kind"] == "cpu"
    assert d["details"]["cores"] >= 1 and d["device"]["fp32_tflops"] > 0
    assert main(["hw", "detect"]) == 0
    assert "cpu-host" in capsys.readouterr().out


def test_every_price_names_configuration_source_date_and_kind():
    """prices.toml is the only home of prices: each quote is for a real device at one of its memory options,
    with a source, a date and a kind; the device files carry none."""
    from pathlib import Path

    from qlab.hwdb import get_device
    from qlab.hwdb.prices import KINDS, PRICES_FILE, load_prices

    quotes = load_prices()
    assert len(quotes) >= 20
    for p in quotes:
        dev = get_device(p.device)
        assert p.memory_gb in (dev.memory_options_gb or (dev.memory_gb,)), p
        assert p.source and p.date and p.kind in KINDS and p.usd > 0, p
    devices_dir = Path(PRICES_FILE).with_name("devices")
    assert not [f.name for f in devices_dir.glob("*.toml") if "\nprice_usd" in f.read_text()]


def test_price_belongs_to_its_memory_configuration():
    from qlab.hwdb import get_device
    from qlab.hwdb.prices import price_for

    assert price_for(get_device("m4@16")).usd == 599       # the $599 Mac mini is the 16 GB one
    assert price_for(get_device("m4@32")) is None           # nobody quoted the 32 GB one: unpriced, not guessed
    used = price_for(get_device("p40"))
    assert used.kind == "used" and used.usd < 1000         # the most recent quote wins over the 2016 list price


def test_bad_price_entry_names_entry_and_field(tmp_path):
    from qlab.hwdb.prices import load_prices

    f = tmp_path / "prices.toml"
    f.write_text('[[price]]\ndevice = "rtx-3090"\nmemory_gb = 24\nusd = 700\nkind = "cheap"\ndate = "2026-01"\n'
                 'source = "x"\n')
    with pytest.raises(QlabError, match=r"entry 1 \(rtx-3090\): field 'kind'"):
        load_prices(f)
