"""Build the HTML report: ask the predictor every scenario the report shows, draw the figures, render the
template. Every number in a table is a field of a `predict()` result (or a device spec); the HTML carries
the scenario next to each such number (data-* attributes) so a test can ask predict() the same question."""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import time
from pathlib import Path

from qlab.errors import QlabError
from qlab.report import grid, multigpu, sections, setups
from qlab.report.grid import MODEL, Predictions
from qlab.report.select import select_devices

TEMPLATES = Path(__file__).with_name("templates")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _environment():
    import jinja2

    from qlab.report.fmt import FILTERS

    # lenient undefined: a profile may lack any optional field, and the page must still render
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    env.globals.update(F=FILTERS, field=field)
    return env


def field(p: dict, name: str):
    """`field(p, "memory.total_gb")`: a (nested) field of a prediction, as the template and tests name it."""
    for part in name.split("."):
        p = p[part]
    return p


def _profile_devices(profiles) -> tuple[list, dict]:
    """The devices the profiles were measured on: from the hwdb, or, for a device the hwdb does not know (a
    GPU seen only through NVML), rebuilt from the specs the profile recorded, so it is predicted like the rest."""
    import dataclasses

    from qlab import hwdb

    names = {f.name for f in dataclasses.fields(hwdb.Device)}
    out, adhoc = [], {}
    for p in profiles:
        rec = p["device"]
        try:
            out.append(hwdb.get_device(rec["id"]))
            continue
        except QlabError:
            pass
        specs = {k: tuple(v) if isinstance(v, list) else v for k, v in (rec.get("specs") or {}).items() if k in names}
        specs.update(id=rec["id"], name=rec.get("name") or rec["id"], kind=rec.get("kind") or "gpu")
        specs.setdefault("vendor", "unknown")
        specs.setdefault("architecture", "")
        try:
            out.append(hwdb.Device(**specs))
        except TypeError:  # too little recorded to predict: the profile is still shown in its own section
            continue
        adhoc[rec["id"]] = out[-1]
    return out, adhoc


def _priced(devices) -> tuple[list, dict]:
    """Each device with the price of the memory configuration it is shown at (qlab/hwdb/prices.toml), or
    none; and id -> Price, so the page can say which price (kind, date, source) every per-dollar figure used."""
    from dataclasses import replace

    from qlab.hwdb.prices import price_for

    out, prices = [], {}
    for d in devices:
        p = price_for(d)
        if p is not None:
            prices[d.id] = p
        out.append(replace(d, price_usd=p.usd if p else None) if d.price_usd != (p.usd if p else None) else d)
    return out, prices


def build_report(hw_ids: list[str] | None = None, vendor: str | None = None, all_devices: bool = False,
                 model: str = MODEL, profiles=(), budget_usd: float | None = None) -> str:
    """The report as one self-contained HTML string. Raises QlabError on a bad selection, model or budget."""
    started = time.perf_counter()
    if budget_usd is not None and not budget_usd > 0:
        raise QlabError(f"--budget must be a positive amount in USD, got {budget_usd}")
    profiles = list(profiles)
    devices = select_devices(hw_ids, vendor, all_devices)
    known = {d.id for d in devices}
    measured_on, adhoc = _profile_devices(profiles)
    devices += [d for d in measured_on if d.id not in known and not known.add(d.id)]
    devices, prices = _priced(devices)

    # a profile calibrates the predictor only where it carries efficiencies; others are shown, not used
    preds = Predictions(profiles_by_hw={p["device"]["id"]: p for p in profiles
                                        if isinstance((p.get("calibration") or {}).get("efficiencies"), dict)},
                        devices=adhoc)

    from qlab.models.loader import get_model

    m = get_model(model)  # an unknown model is an error naming the closest ids, before any work
    arch = {"name": m.name, "n_layers": m.n_layers, "n_deltanet": m.layer_types.count("deltanet"),
            "n_attention": sum(1 for t in m.layer_types if "attention" in t), "hidden": m.hidden_size,
            "max_context": m.max_context, "max_context_scaled": m.max_context_scaled}
    summary = sections.summary(devices, preds, model, budget_usd)
    multi = sections.multi(devices, preds, model, budget_usd)
    context = {
        "model": model,
        "arch": arch,
        "dense_model": grid.DENSE_CONTRAST,
        "devices": devices,
        "budget": budget_usd,
        "prices": prices,
        "grid": grid,
        "summary": summary,
        "picks": sections.picks(summary, preds, model, budget_usd),
        "overview_svg": sections.overview(devices, summary, preds, model),
        "fit": sections.fit_matrix(devices, preds, model),
        "curves": sections.curves(summary["order"], preds, model),
        "step_svg": sections.step_breakdown(summary["order"], preds, model),
        "prefill": sections.prefill(summary["order"], preds, model),
        "multi": multi,
        "setups": setups.build(summary["order"], model, preds.profiles_by_hw),
        "value": sections.value(summary["order"], preds, model, budget_usd, multi["rows"]),
        "measured": [sections.measured(p, preds, model) for p in profiles],
        "methods": sections.methods(devices, preds, model),
        "meta": {
            "version": _version(),
            "git_commit": _git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": _command(hw_ids, vendor, all_devices, model, profiles, budget_usd),
        },
        "split": {"hop_latency_us": multigpu.HOP_LATENCY_S * 1e6, "imbalance": multigpu.IMBALANCE},
    }
    context["meta"]["n_predictions"] = len(preds.cache)
    context["meta"]["build_s"] = time.perf_counter() - started
    context["css"] = (TEMPLATES / "report.css").read_text()
    return _environment().get_template("report.html.j2").render(**context)


def _command(hw_ids, vendor, all_devices, model, profiles, budget_usd) -> str:
    """The `qlab report` line that selects the same devices (profiles are named by their directory)."""
    parts = ["qlab report"]
    if hw_ids is not None:
        parts.append("--hw " + ",".join(h.strip() for h in hw_ids if h and h.strip()))
    elif vendor is not None:
        parts.append(f"--vendor {vendor}")
    elif all_devices:
        parts.append("--all")
    if model != MODEL:
        parts.append(f"--model {model}")
    if profiles:
        parts.append("--profiles DIR")
    if budget_usd is not None:
        parts.append(f"--budget {budget_usd:g}")
    return " ".join(parts)


def _version() -> str:
    from qlab import __version__

    return __version__


def write_report(path: str | os.PathLike, hw_ids: list[str] | None = None, vendor: str | None = None,
                 all_devices: bool = False, model: str = MODEL, profiles=(), budget_usd: float | None = None) -> Path:
    """Build the report and write it atomically to `path`: the file is either the whole new report or left
    as it was. An unwritable path is a QlabError, checked before the (slow) build."""
    from qlab.io import write_atomic

    path = Path(path)
    if path.is_dir():
        raise QlabError(f"cannot write report to {str(path)!r}: it is a directory")
    parent = path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise QlabError(f"cannot write report to {str(path)!r}: {str(existing)!r} is not a writable directory")
    html = build_report(hw_ids, vendor, all_devices, model, profiles, budget_usd)
    try:
        written = write_atomic(path, html)
    except OSError as e:
        raise QlabError(f"cannot write report to {str(path)!r}: {e.strerror or e}") from None
    return written
