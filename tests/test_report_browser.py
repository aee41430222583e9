"""The report in a real browser (headless Chromium): the page renders, is not blank, and every figure has a
size. Skipped with a reason where Chromium is missing; `.ci/run` installs Debian's `chromium`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from qlab.report.build import build_report
from test_report_helpers import parse, sample_profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)")

# Appended to a copy of the report only: the report itself carries no script. It runs after the page is
# parsed and forces layout, so the sizes are what the browser drew.
PROBE = """<script>
(function () {
  var out = [];
  document.querySelectorAll('figure').forEach(function (f) {
    var g = f.querySelector('svg, img');
    var r = g ? g.getBoundingClientRect() : {width: 0, height: 0};
    out.push(Math.round(r.width) + 'x' + Math.round(r.height));
  });
  var pre = document.createElement('pre');
  pre.id = 'qlab-figure-sizes';
  pre.textContent = out.join(' ');
  document.body.appendChild(pre);
})();
</script>"""


def chromium(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(tmp_path, page, png, height=4000):
    res = chromium(tmp_path, f"--screenshot={png}", f"--window-size=1280,{height}", page.as_uri())
    assert png.exists(), res.stderr[-2000:]


def figure_sizes(tmp_path, html: str) -> list[tuple[int, int]]:
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    res = chromium(tmp_path, "--dump-dom", "--window-size=1280,4000", probe.as_uri())
    m = re.search(r'<pre id="qlab-figure-sizes">([^<]*)</pre>', res.stdout)
    assert m, f"no sizes in the dumped DOM; stderr: {res.stderr[-2000:]}"
    return [tuple(int(v) for v in s.split("x")) for s in m.group(1).split()]


def not_blank(png) -> None:
    import numpy as np
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1280, 4000)
    rgb = np.asarray(img.resize((320, 1000)), dtype=np.int32)
    ink = float((rgb.sum(axis=2) < 600).mean())
    colours = len(np.unique(np.asarray(img.resize((320, 1000)).quantize(64))))
    assert ink > 0.03, f"page looks blank: {ink:.1%} of pixels are not near-white"
    assert colours > 8, f"page looks flat: {colours} colours"


def test_report_renders_in_chromium(tmp_path):
    html = build_report(["rtx-3090", "rtx-5090", "rtx-4060-ti-16gb", "m4-max-40c", "rx-7900-xtx"], None, False,
                        profiles=[sample_profile()])
    page = tmp_path / "report.html"
    page.write_text(html)
    png = tmp_path / "shot.png"
    screenshot(tmp_path, page, png)
    not_blank(png)
    if os.environ.get("QLAB_KEEP_SCREENSHOT"):  # to look at it: QLAB_KEEP_SCREENSHOT=/tmp/shot.png pytest ...
        shutil.copy(png, os.environ["QLAB_KEEP_SCREENSHOT"])

    sizes = figure_sizes(tmp_path, html)
    assert len(sizes) == len(parse(html).figures) >= 10
    assert all(w > 100 and h > 60 for w, h in sizes), sizes


def test_all_devices_report_renders_in_under_30s(tmp_path):
    """Every device in the hwdb (>= 60): built, written and painted by a browser within the issue's 30 s
    (test_report.py holds the build alone to it). Shared box: where it is oversubscribed (load above its
    cores) the wall-clock bound is printed, not held."""
    wall0 = time.perf_counter()
    html = build_report(None, None, True)
    page = tmp_path / "all.html"
    page.write_text(html)
    png = tmp_path / "all.png"
    screenshot(tmp_path, page, png)
    wall = time.perf_counter() - wall0
    not_blank(png)
    print(f"all-devices report: build + render wall {wall:.1f} s, load {os.getloadavg()[0]:.1f}")
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        assert wall < 30.0
