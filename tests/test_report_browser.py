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
from test_report_helpers import assert_ranked_devices_fit, parse, sample_profile

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


# Measures horizontal overflow: the page's scroll width against the window's, and the widest offenders.
WIDTH_PROBE = """<script>
(function () {
  var vw = document.documentElement.clientWidth, bad = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.right > vw + 1 && !e.closest('.tw')) bad.push(e.tagName + '.' + e.className + ':' + Math.round(r.right));
  });
  var host = window.parent !== window ? window.parent.document : document;  // framed: report to the parent
  var pre = host.createElement('pre');
  pre.id = 'qlab-width';
  pre.textContent = document.documentElement.scrollWidth + ' ' + vw + ' ' + bad.slice(0, 8).join(' ');
  host.body.appendChild(pre);
})();
</script>"""


def chromium(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(tmp_path, page, png, height=4000, width=1280):
    res = chromium(tmp_path, f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri())
    assert png.exists(), res.stderr[-2000:]


def framed(html: str, width: int, height: int = 3000) -> str:
    """The page inside a `width`-px iframe (srcdoc: same origin, so the parent can measure it). Chromium will
    not open a window narrower than 500 px, and a phone is 390."""
    import html as html_mod

    return (f'<!DOCTYPE html><html><body style="margin:0"><iframe id="f" style="border:0;width:{width}px;'
            f'height:{height}px" srcdoc="{html_mod.escape(html, quote=True)}"></iframe></body></html>')


def overflow(tmp_path, html: str, width: int) -> tuple[int, int, str]:
    """(document scrollWidth, viewport width, elements sticking out) of the page laid out `width` px wide."""
    probe = tmp_path / f"width{width}.html"
    probe.write_text(framed(html.replace("</body>", WIDTH_PROBE + "</body>"), width))
    res = chromium(tmp_path, "--dump-dom", "--window-size=1400,3000", probe.as_uri())
    m = re.search(r'<pre id="qlab-width">(\d+) (\d+) ?([^<]*)</pre>', res.stdout)
    assert m, f"no width in the dumped DOM; stderr: {res.stderr[-2000:]}"
    return int(m.group(1)), int(m.group(2)), m.group(3)


def assert_no_overflow(tmp_path, html: str) -> None:
    for width in (1280, 390):
        scroll, viewport, offenders = overflow(tmp_path, html, width)
        assert viewport <= width and scroll <= viewport, (width, scroll, viewport, offenders)


def keep(png, name: str) -> None:
    """QLAB_KEEP_SCREENSHOTS=DIR keeps the screenshots, to look at them."""
    out = os.environ.get("QLAB_KEEP_SCREENSHOTS")
    if out:
        os.makedirs(out, exist_ok=True)
        shutil.copy(png, os.path.join(out, name))


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
    keep(png, "profile-1280.png")
    phone = tmp_path / "phone.png"
    phone_page = tmp_path / "phone.html"
    phone_page.write_text(framed(html, 390))
    screenshot(tmp_path, phone_page, phone, height=3000, width=500)
    keep(phone, "profile-390.png")

    sizes = figure_sizes(tmp_path, html)
    assert len(sizes) == len(parse(html).figures) >= 10
    assert all(w > 100 and h > 60 for w, h in sizes), sizes
    assert_no_overflow(tmp_path, html)
    assert_ranked_devices_fit(html)


@pytest.mark.slow  # ~25 s idle, ~50 s on a loaded 2-core box: build, three Chromium renders, two width probes
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
    keep(png, "all-1280.png")
    print(f"all-devices report: build + render wall {wall:.1f} s, load {os.getloadavg()[0]:.1f}")
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        assert wall < 30.0
    phone = tmp_path / "all-phone.png"
    phone_page = tmp_path / "all-phone.html"
    phone_page.write_text(framed(html, 390))
    screenshot(tmp_path, phone_page, phone, height=3000, width=500)
    keep(phone, "all-390.png")
    assert_no_overflow(tmp_path, html)
    assert_ranked_devices_fit(html)
