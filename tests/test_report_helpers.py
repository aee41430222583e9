"""Shared helpers for the report tests: a parsed view of the report's HTML, and a measured profile fixture."""

from __future__ import annotations

from html.parser import HTMLParser

SMALL_SELECTION = ["rtx-3090", "rtx-4060-ti-16gb", "rtx-3060-12gb", "m4-max-40c", "h100-sxm"]


class ReportParser(HTMLParser):
    """Collects what the tests look at: every start tag with its attributes, the numbers (elements carrying
    data-field) with their text, and figure/svg nesting."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "col", "source", "wbr", "area", "base", "embed", "param", "track"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.numbers: list[dict] = []
        self.figures: list[dict] = []
        self.errors: list[str] = []
        self._open: list[str] = []
        self._num: dict | None = None
        self._num_depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "figure":
            self.figures.append({"svgs": [], "imgs": []})
        if tag == "svg" and "figure" in self._open and self.figures:
            self.figures[-1]["svgs"].append(a)
        if tag == "img" and "figure" in self._open and self.figures:
            self.figures[-1]["imgs"].append(a)
        if self._num is not None:
            self._num_depth += 1
        elif "data-field" in a:
            self._num = {**a, "text": ""}
            self._num_depth = 0
        if tag not in self.VOID and not tag.endswith("/"):
            self._open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if self._num is not None:
            if self._num_depth == 0:
                self.numbers.append(self._num)
                self._num = None
            else:
                self._num_depth -= 1
        if tag in self.VOID:
            return
        if not self._open or self._open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self._open[-1] if self._open else None}>")
            if tag in self._open:
                while self._open and self._open.pop() != tag:
                    pass
            return
        self._open.pop()

    def handle_data(self, data):
        if self._num is not None:
            self._num["text"] += data


def parse(html: str) -> ReportParser:
    p = ReportParser()
    p.feed(html)
    p.close()
    return p


def sample_profile(device_id: str = "rtx-3090", with_calibration: bool = True) -> dict:
    """A profile document as `qlab profile` writes it (schema v1), with made-up but plausible measurements."""
    doc = {
        "schema_version": 1,
        "qlab_version": "0.1.0",
        "created": "2026-11-22T06:00:00Z",
        "git_commit": "abc1234",
        "device": {"id": device_id, "name": "NVIDIA GeForce RTX 3090", "kind": "gpu", "source": "hwdb", "known": True,
                   "specs": {"mem_bandwidth_gbs": 936.0, "memory_gb": 24.0, "bf16_tflops": 71.2, "fp32_tflops": 35.6}},
        "software": {"python": "3.11.7", "torch": "2.13.0"},
        "options": {"mode": "quick", "quants": ["Q4_K_M", "Q8_0"], "contexts": [4096, 32768]},
        "stages": {"microbench": {"status": "done", "seconds": 12.0}, "decode": {"status": "done", "seconds": 60.0}},
        "microbench": {"read_gbs": 850.0, "copy_gbs": 790.0, "matmul_tflops": {"bfloat16": 61.5, "float32": 30.2},
                       "launch": {"name": "launch", "time_s": 4.5e-6, "repeats": 200}},
        "kernels": [
            {"op": "dequant_matmul", "impl": "triton_q4k", "shape": {"M": 1, "N": 17408, "K": 5120},
             "config": {"BLOCK_N": 64, "BLOCK_K": 256, "num_warps": 4}, "time_s": 6.1e-5,
             "default_config": {"BLOCK_N": 32, "BLOCK_K": 128, "num_warps": 4}, "speedup": 1.37, "bytes": 5.0e7, "flops": 1.78e8,
             "achieved_gbs": 820.0, "achieved_tflops": 2.9, "pct_of_peak_bw": 87.6, "pct_of_peak_flops": 4.1},
            {"op": "attention", "impl": "triton_decode", "shape": {"context": 32768, "kv_heads": 4, "head_dim": 256},
             "config": {"SPLIT_K": 16}, "time_s": 9.0e-5, "bytes": 6.7e7, "flops": 4.0e8,
             "achieved_gbs": 745.0, "achieved_tflops": 4.4, "pct_of_peak_bw": 79.6, "pct_of_peak_flops": None},
        ],
        "decode": [
            {"quant": "Q4_K_M", "context": 4096, "layers_run": 64, "tok_s": 33.0, "scaled_tok_s": 33.0,
             "breakdown": {"matmul": 0.024, "deltanet": 0.004, "attention": 0.001, "other": 0.001}, "peak_rss_gb": 19.5},
            {"quant": "Q4_K_M", "context": 32768, "layers_run": 64, "tok_s": 31.0, "scaled_tok_s": 31.0,
             "breakdown": {"matmul": 0.024, "deltanet": 0.004, "attention": 0.003, "other": 0.001}, "peak_rss_gb": 21.4},
            {"quant": "Q8_0", "context": 4096, "layers_run": 8, "tok_s": 150.0, "scaled_tok_s": 18.75},
        ],
    }
    if with_calibration:
        doc["calibration"] = {"efficiencies": {"weights": 0.9, "kv": 0.8, "layer_overhead_us": 50.0}}
    return doc


def _section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}">')
    return html[start:html.index("</section>", start)]


def _svg_texts(html: str, label_start: str) -> list[str]:
    """The text elements of the inline figure whose aria-label starts with `label_start`."""
    import re

    m = re.search(r'<svg [^>]*aria-label="' + re.escape(label_start) + r'.*?</svg>', html, re.S)
    assert m, f"no figure labelled {label_start!r}"
    return [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", m.group(0))]


def assert_ranked_devices_fit(html: str, model: str = "qwen3.6-27b") -> None:
    """No device is ranked (a pick, a per-dollar/per-watt row or bar, a TTFT bar) where its setup does not
    fit; the picks name only calibrated or measured predictions."""
    from qlab.hwdb import device_ids
    from qlab.predict import predict

    ids = set(device_ids())
    for section in ("glance", "value"):
        for n in parse(_section(html, section)).numbers:
            if "data-quant" not in n:
                continue
            p = predict(n["data-hw"], n["data-model"], n["data-quant"], int(n["data-context"]), kv_dtype=n["data-kv"])
            assert p["fits"], (section, n["data-hw"], n["data-quant"], n["data-context"])
    picks = _section(html, "glance").split('<div class="pick-line small guess">')[0]
    for n in parse(picks).numbers:
        if n.get("data-field") == "decode_tok_s":
            basis = predict(n["data-hw"], model, n["data-quant"], int(n["data-context"]), kv_dtype=n["data-kv"])["basis"]
            assert basis in ("calibrated", "measured"), (n["data-hw"], basis)
    charts = (("Time to first token per device", 4096), ("decode tok/s per $1000", 32768),
              ("decode tok/s per W", 32768))
    for label, context in charts:
        if f'aria-label="{label}' not in html:
            continue
        names = [t for t in _svg_texts(html, label) if t in ids]
        assert names, f"no device names found in the {label!r} figure"
        for hw in names:
            assert predict(hw, model, "Q4_K_M", context)["fits"], (label, hw)
