"""The HTML report: self-contained, every table number equal to what the predictor says for the same scenario,
the "best setup" logic, multi-GPU predictions, measured profiles, and bad input."""

from __future__ import annotations

import json
import os
import re

import pytest

from qlab.errors import QlabError
from qlab.predict import predict
from qlab.report import fmt
from qlab.report.build import build_report, write_report
from qlab.report.grid import BEST_QUANTS, KV_DTYPES, SUMMARY_CONTEXTS, Predictions
from test_report_helpers import SMALL_SELECTION, parse, sample_profile

FORMAT = {"decode_tok_s": fmt.tok_s, "prefill_tok_s": fmt.tok_s, "ttft_s": fmt.seconds, "memory.total_gb": fmt.gb,
          "margin": fmt.margin}


@pytest.fixture(scope="module")
def small_html() -> str:
    return build_report(SMALL_SELECTION, None, False)


@pytest.fixture(scope="module")
def profiled_html() -> str:
    return build_report(["rtx-3090", "rtx-5090"], None, False, profiles=[sample_profile()], budget_usd=2500)


def _scenario(n: dict) -> tuple:
    return n["data-hw"], n["data-model"], n["data-quant"], int(n["data-context"]), n["data-kv"]


def _check_numbers(html: str, profiles_by_hw: dict | None = None) -> int:
    profiles_by_hw = profiles_by_hw or {}
    numbers = parse(html).numbers
    assert numbers, "the report carries no checkable numbers"
    cache: dict[tuple, dict] = {}
    for n in numbers:
        hw, model, quant, context, kv = _scenario(n)
        key = (hw, model, quant, context, kv)
        if key not in cache:
            cache[key] = predict(hw, model, quant, context, kv_dtype=kv, profile=profiles_by_hw.get(hw))
        p = cache[key]
        name = n["data-field"]
        if name == "margin":
            from qlab.hwdb import get_device

            expected = get_device(hw).usable_memory_gb - p["memory"]["total_gb"]
            assert n["data-fits"] == str(p["fits"]).lower(), (key, "fits")
            assert (expected >= 0) == p["fits"], (key, "margin sign disagrees with fits")
        else:
            expected = p
            for part in name.split("."):
                expected = expected[part]
        assert float(n["data-value"]) == pytest.approx(expected, rel=1e-12, abs=1e-12), (key, name)
        assert n["text"].strip() == FORMAT[name](expected), (key, name, n["text"])
    return len(numbers)


def test_html_parses_and_is_self_contained(small_html):
    p = parse(small_html)
    assert not p.errors, p.errors[:5]
    assert small_html.lstrip().startswith("<!DOCTYPE html>")
    tags = {t for t, _ in p.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed"}, tags & {"script", "link", "iframe"}
    for tag, attrs in p.tags:
        for attr in ("src", "href", "xlink:href", "action", "poster", "srcset"):
            value = attrs.get(attr)
            if value is None:
                continue
            if tag == "a" and attr == "href" and value.startswith("https://"):
                continue  # a link to a source is followed only by a reader's click: nothing is fetched
            assert value.startswith(("#", "data:")), f"<{tag} {attr}={value!r}> is not inline"
    assert "url(http" not in small_html and "@import" not in small_html
    assert len(p.figures) >= 8
    for fig in p.figures:
        inline = fig["svgs"] or [i for i in fig["imgs"] if i.get("src", "").startswith("data:image/")]
        assert inline, "a figure without an inline SVG or data-URI image"
        for svg in fig["svgs"][:1]:  # the figure's outer svg: a real size, so a browser lays it out
            w, h = (float(re.match(r"[\d.]+", svg[k]).group()) for k in ("width", "height"))
            assert w > 50 and h > 50


def test_table_numbers_equal_predict(small_html):
    assert _check_numbers(small_html) > 300


def test_numbers_match_qlab_predict_json(small_html, capsys):
    """The CLI contract itself: a few scenarios from the tables, asked through `qlab predict --json`."""
    from qlab.cli import main

    numbers = [n for n in parse(small_html).numbers if n["data-field"] == "decode_tok_s"]
    for n in numbers[:: max(1, len(numbers) // 6)]:
        hw, model, quant, context, kv = _scenario(n)
        assert main(["predict", "--hw", hw, "--model", model, "--quant", quant, "--context", str(context),
                     "--kv-dtype", kv, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        out = out[0] if isinstance(out, list) else out
        assert float(n["data-value"]) == out["decode_tok_s"]
        assert n["text"] == fmt.tok_s(out["decode_tok_s"])


def test_summary_shows_the_best_quant_that_fits():
    preds = Predictions()
    for hw in ("rtx-3090", "rtx-4060-ti-16gb", "m4-max-40c"):
        for c in SUMMARY_CONTEXTS:
            best = preds.best(hw, c)
            fitting = [(q, kv) for q in BEST_QUANTS for kv in KV_DTYPES
                       if predict(hw, "qwen3.6-27b", q, c, kv_dtype=kv)["fits"]]
            if not fitting:
                assert best is None
                continue
            assert (best[0]["quant"], best[1]) == fitting[0]


def test_summary_sections_present(small_html):
    for section in ("glance", "summary", "fit", "decode", "prefill", "value", "multi", "measured", "methods"):
        assert f'<section id="{section}">' in small_html
    # the 12 GB card cannot run the 27B model even at Q2_K: listed as such, with what it would need
    assert "Cannot run Qwen3.6-27B" in small_html and "NVIDIA GeForce RTX 3060 12GB" in small_html
    assert "qwen3-32b" in small_html  # the dense contrast line
    assert "Calibration error" in small_html  # the predictor's fit, per device class


def test_multi_gpu_split_by_layers():
    from qlab.hwdb import get_device
    from qlab.report.multigpu import best_split, split_by_layers

    from dataclasses import replace

    from qlab.hwdb.prices import price_for

    d, preds = get_device("rtx-3090"), Predictions()
    d = replace(d, price_usd=price_for(d).usd)  # the report attaches the configuration's price this way
    one = predict("rtx-3090", "qwen3.6-27b", "Q8_0", 32768)
    assert not one["fits"]  # Q8_0 (28.6 GB of weights) does not fit in 24 GB ...
    two = split_by_layers(d, 2, "Q8_0", 32768, preds)
    assert two["fits"] and two["n_devices"] == 2  # ... and does across two
    assert two["per_device_gb"] < one["memory"]["total_gb"] * 0.6
    assert 0.9 * one["decode_tok_s"] < two["decode_tok_s"] < one["decode_tok_s"]  # a small hand-off cost
    assert two["ttft_s"] > one["ttft_s"]
    assert two["price_usd"] == 2 * d.price_usd
    same = split_by_layers(d, 1, "Q8_0", 32768, preds)
    assert same["decode_tok_s"] == one["decode_tok_s"] and same["fits"] == one["fits"]
    assert best_split(d, 2, 4096, preds)[0]["quant"] == "Q8_0"
    with pytest.raises(ValueError):
        split_by_layers(d, 0, "Q8_0", 4096, preds)


def test_multi_gpu_section_marks_predictions(small_html):
    section = small_html[small_html.index('<section id="multi">'):small_html.index('<section id="measured">')]
    assert "2× NVIDIA GeForce RTX 3090" in section and "prediction" in section


def test_measured_profile_section(profiled_html):
    from qlab.profile.schema import validate_profile

    validate_profile(sample_profile())  # the fixture is a valid profile document
    section = profiled_html[profiled_html.index('<section id="measured">'):profiled_html.index('<section id="methods">')]
    assert "measured" in section and "triton_q4k" in section and "BLOCK_N=64" in section
    assert "88%" in section  # kernel % of peak bandwidth (87.6)
    assert "1.37×" in section and "BLOCK_K=128" in section  # tuned against default config
    assert re.search(r"matmul bfloat16</td><td[^>]*>61\.5 TFLOPS</td><td[^>]*>71\.2 TFLOPS</td><td[^>]*>86%", section)
    assert re.search(r"memory read</td><td[^>]*>850 GB/s</td><td[^>]*>936 GB/s</td><td[^>]*>91%", section)
    assert section.count("<svg") >= 3  # measured vs predicted, breakdown, kernel efficiency
    # predictions next to measurements use the profile's calibration, and equal predict(profile=...)
    _check_numbers(profiled_html, {"rtx-3090": sample_profile()})


def test_profile_without_optional_sections():
    doc = sample_profile(with_calibration=False)
    for key in ("microbench", "kernels", "decode", "git_commit"):
        doc.pop(key)
    html = build_report(["rtx-3090"], None, False, profiles=[doc])
    assert not parse(html).errors
    assert "NVIDIA GeForce RTX 3090" in html[html.index('<section id="measured">'):]


def test_budget_marks_devices_over_it(profiled_html):
    section = profiled_html[profiled_html.index('<section id="glance">'):profiled_html.index('<section id="summary">')]
    assert "within $2,500" in section
    assert "RTX PRO" not in section


def test_write_report_is_atomic_and_readable(tmp_path):
    out = tmp_path / "sub" / "r.html"
    path = write_report(out, ["rtx-3090"])
    assert path == out and out.read_text().startswith("<!DOCTYPE html>")
    assert os.stat(out).st_mode & 0o044  # readable by others, unlike the private temp file it was written as
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]


@pytest.mark.parametrize("kwargs, message", [
    ({"hw_ids": ["rtx-3091"]}, "unknown device 'rtx-3091'; closest: rtx-3090"),
    ({"hw_ids": [" ", ""]}, "empty device selection"),
    ({"vendor": "acme"}, "no devices for vendor 'acme'"),
    ({"hw_ids": ["rtx-3090"], "vendor": "amd"}, "not --hw and --vendor"),
    ({"hw_ids": ["rtx-3090"], "model": "qwen9-1t"}, "unknown model"),
    ({"hw_ids": ["rtx-3090"], "budget_usd": 0}, "--budget must be a positive amount"),
])
def test_bad_input_is_a_clear_error_and_keeps_the_old_file(tmp_path, kwargs, message):
    out = tmp_path / "report.html"
    out.write_text("previous report")
    with pytest.raises(QlabError, match=re.escape(message)):
        write_report(out, **kwargs)
    assert out.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_unwritable_output_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(QlabError, match="cannot write report"):
        write_report(blocker / "report.html", ["rtx-3090"])
    with pytest.raises(QlabError, match="is a directory"):
        write_report(tmp_path, ["rtx-3090"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _cli(argv, capsys):
    from qlab.cli import main

    rc = main(argv)
    return rc, capsys.readouterr()


def test_cli_bad_input_exits_2_without_a_file(tmp_path, capsys):
    out = tmp_path / "r.html"
    bad_profile_dir = tmp_path / "profiles"
    bad_profile_dir.mkdir()
    (bad_profile_dir / "broken.json").write_text("{not json")
    cases = [
        (["report", "--hw", "rtx-9999"], "unknown device 'rtx-9999'"),
        (["report", "--hw", ","], "empty device selection"),
        (["report", "--profiles", str(tmp_path / "missing")], "profiles directory"),
        (["report", "--profiles", str(out.parent / "nofile.json")], "profiles directory"),
        (["report", "--hw", "rtx-3090", "--profiles", str(bad_profile_dir)], "broken.json"),
        (["report", "--hw", "rtx-3090", "--budget", "-100"], "--budget"),
    ]
    for argv, message in cases:
        rc, cap = _cli([*argv, "--out", str(out)], capsys)
        assert rc == 2, argv
        assert message in cap.err and "Traceback" not in cap.err, (argv, cap.err)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles"]


def test_cli_writes_report_with_profiles(tmp_path, capsys):
    pdir = tmp_path / "profiles"
    pdir.mkdir()
    (pdir / "rtx-3090.json").write_text(json.dumps(sample_profile()))
    out = tmp_path / "r.html"
    rc, cap = _cli(["report", "--hw", "rtx-3090,NVIDIA GeForce RTX 4090", "--profiles", str(pdir), "--out", str(out)],
                   capsys)
    assert rc == 0 and str(out) in cap.out
    html = out.read_text()
    assert "NVIDIA GeForce RTX 4090" in html and "triton_q4k" in html


def test_format_helpers():
    assert fmt.sig(31.234) == "31.2" and fmt.sig(1234.5) == "1234" and fmt.sig(0.04512) == "0.0451"
    assert fmt.sig(0.09996) == "0.100" and fmt.sig(99.96) == "100"
    assert fmt.seconds(0.5) == "500 ms" and fmt.seconds(2.345) == "2.35 s" and fmt.seconds(600) == "10.0 min"
    assert fmt.margin(3.14) == "+3.1" and fmt.margin(-12.4) == "\u221212" and fmt.margin(None) == "–"
    assert fmt.context(4096) == "4K" and fmt.context(262144) == "256K" and fmt.context(1000) == "1000"


def test_other_model_says_where_its_context_ends():
    html = build_report(["rtx-3090"], None, False, model="qwen3-32b")
    assert "Which hardware for Qwen3-32B?" in html
    assert "beyond the model&#39;s context" in html or "beyond the model's context" in html
    assert "Gated DeltaNet layers read" not in html  # hybrid-only text is left out for a dense model
    _check_numbers(html)


def test_memory_options_are_separate_rows():
    """`m4-max-40c@48` and `@128` are one chip with two memory sizes: two rows, each predicted with its own memory."""
    html = build_report(["m4-max-40c@48", "m4-max-40c"], None, False)
    assert "Apple M4 Max (40-core GPU), 48 GB" in html
    hws = {n["data-hw"] for n in parse(html).numbers}
    assert {"m4-max-40c@48", "m4-max-40c"} <= hws
    _check_numbers(html)
    small = predict("m4-max-40c@48", "qwen3.6-27b", "Q8_0", 262144)
    big = predict("m4-max-40c", "qwen3.6-27b", "Q8_0", 262144)
    assert small["memory"] == big["memory"] and not small["fits"] and big["fits"]  # only the fit differs


def test_profile_of_a_device_the_hwdb_does_not_know():
    """A GPU seen only through NVML: the report predicts it from the specs its profile recorded."""
    doc = sample_profile("nvml-geforce-rtx-9999")
    doc["device"].update(name="NVIDIA GeForce RTX 9999", known=False, source="nvml")
    doc["device"]["specs"].update(vendor="nvidia", architecture="future", memory_gb=48.0, mem_bandwidth_gbs=2000.0)
    html = build_report(["rtx-3090"], None, False, profiles=[doc])
    rows = [n for n in parse(html).numbers if n["data-hw"] == "nvml-geforce-rtx-9999"]
    assert len(rows) > 50  # in every table, like any hwdb device
    from qlab.hwdb import Device

    dev = Device(id="nvml-geforce-rtx-9999", name="x", vendor="nvidia", kind="gpu", architecture="future",
                 memory_gb=48.0, mem_bandwidth_gbs=2000.0, bf16_tflops=71.2, fp32_tflops=35.6)
    decode = [n for n in rows if n["data-field"] == "decode_tok_s"]
    assert len(decode) >= 10
    for n in decode[:10]:
        p = predict(dev, n["data-model"], n["data-quant"], int(n["data-context"]), kv_dtype=n["data-kv"], profile=doc)
        assert float(n["data-value"]) == p["decode_tok_s"]


def test_all_devices_report_builds_in_under_30s():
    """The issue's bound for every device in the hwdb (>= 60). The box that runs the tests is shared: where it
    is oversubscribed (load above its cores) only the build's CPU time is held to the bound, wall time printed."""
    import time

    from qlab import hwdb

    assert len(hwdb.all_devices()) >= 60
    wall0, cpu0 = time.perf_counter(), time.process_time()
    html = build_report(None, None, True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"all-devices report: {len(html) / 1e6:.1f} MB, CPU {cpu:.1f} s, wall {wall:.1f} s")
    from html import escape

    assert all(escape(d.name) in html for d in hwdb.all_devices())
    assert cpu < 30.0
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        assert wall < 30.0


def test_buyer_picks_respect_fit_basis_and_price_configuration():
    """The $599 16 GB Mac mini cannot hold the model: never ranked; a roofline guess (MI300X) is shown under
    the fastest card, not picked; every price shown says its kind and date."""
    from test_report_helpers import assert_ranked_devices_fit

    # no B200 here: since the 2026-08 recalibration it is calibrated and faster than the MI300X guess
    html = build_report(["m4@16", "mi300x", "h100-sxm", "p40", "rtx-3090", "m3-ultra@96"], None, False)
    assert_ranked_devices_fit(html)
    glance = html[html.index('<section id="glance">'):html.index('<section id="summary">')]
    assert "Roofline guess, not picked: mi300x" in glance
    value = html[html.index('<section id="value">'):html.index('<section id="multi">')]
    assert 'data-hw="m4@16"' not in value
    assert "used price 2026-06" in value and "launch MSRP 2025-03" in value  # the P40's used price, the M3 Ultra's MSRP


def test_profile_calibration_is_a_table_not_a_dump(profiled_html):
    measured = profiled_html[profiled_html.index('<section id="measured">'):profiled_html.index('<section id="methods">')]
    assert "Calibration from this profile" in measured
    assert "\\u00" not in profiled_html and "{" not in re.sub(r"<style>.*?</style>|<svg.*?</svg>", "", measured, flags=re.S)
    assert not re.search(r"\d\.\d{8,}", re.sub(r"<svg.*?</svg>|data-[a-z]+=\"[^\"]*\"", "", profiled_html, flags=re.S))
    methods = profiled_html[profiled_html.index('<section id="methods">'):]
    assert methods.count('<ul class="sources">') == 1 and "<table class=\"sources\"" not in methods


def test_axes_survive_an_absurd_value():
    """One value 10^6 times the rest must not stretch the axis or pile up its tick labels."""
    from qlab.report import figures

    rows = [{"name": f"d{i}", "vendor": "nvidia", "ttft_s": 0.5 + i} for i in range(6)]
    rows.append({"name": "broken", "vendor": "amd", "ttft_s": 5e6})
    svg = figures.ttft_bars(rows, 4096, "Q4_K_M")
    assert "beyond axis" in svg
    lo, hi = figures.robust_range([r["ttft_s"] for r in rows], log=True)
    assert hi < 100 and lo > 0
    bars = [{"name": f"d{i}", "vendor": "amd", "tok_s": 10.0 + i} for i in range(6)] + \
        [{"name": "broken", "vendor": "amd", "tok_s": 1e9}]
    assert "beyond axis" in figures.overview_bars(bars, "Q4_K_M", 32768)


def test_report_all_takes_this_machines_profiles_by_default(tmp_path, monkeypatch, capsys):
    """`qlab report --all` includes profiles/ and $QLAB_HOME/profiles without --profiles; a profile of another
    machine (here: a CPU profile without a fingerprint) is left out, and said so."""
    import qlab.report.build as build
    from qlab.cli import main

    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "rtx-3090.json").write_text(json.dumps(sample_profile()))
    foreign = sample_profile()
    foreign["device"].update(id="cpu-host", source="cpu", kind="cpu")
    foreign.pop("fingerprint", None)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "old-cpu.json").write_text(json.dumps(foreign))
    monkeypatch.setenv("QLAB_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(build, "build_report", lambda *a: seen.update(profiles=a[4]) or "<html></html>")
    assert main(["report", "--all", "--out", str(tmp_path / "r.html")]) == 0
    assert [p["device"]["id"] for p in seen["profiles"]] == ["rtx-3090"]
    assert "left out 1 profile(s) measured on another machine" in capsys.readouterr().err
    assert main(["report", "--all", "--no-profiles", "--out", str(tmp_path / "r.html")]) == 0
    assert seen["profiles"] == []
