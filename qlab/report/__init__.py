"""The HTML report (`qlab report`): jinja2 templates in `templates/`, matplotlib figures inlined as SVG.

    from qlab.report.build import build_report, write_report

Importing this package imports nothing heavy; `build` pulls in matplotlib and jinja2 when used.
"""
