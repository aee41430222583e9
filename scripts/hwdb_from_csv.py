#!/usr/bin/env python3
"""Generate qlab/hwdb/devices/<id>.toml from the research tables in qlab/hwdb/research, ONCE.

    python scripts/hwdb_from_csv.py [--data DIR] [--out DIR] [--force]

The TOML files are the source of truth after generation (edit them, not the CSV); this script stays so that
the first version of every file can be reproduced. Each CSV cell such as "1470 (est)" becomes a number plus a
`[value_notes]` entry holding the parenthetical text, and an `[estimates]` entry when that text says the value
is recalled, estimated or derived rather than published. The CSV `source` column becomes `[sources] default`;
values this script derives itself (PCIe link rate, Apple estimates) get their own source line.

Apple plain rows ("Apple M4 Max") that the extra table splits into GPU variants ("Apple M4 Max (40-core GPU)")
are not written as devices of their own: their name and plain id become aliases of the top variant.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "qlab" / "hwdb" / "research"
DEFAULT_OUT = ROOT / "qlab" / "hwdb" / "devices"

# CSV device name -> (id, extra aliases). Extra aliases are names NVML/rocm-smi report and short forms.
IDS: dict[str, tuple[str, list[str]]] = {
    "NVIDIA GeForce RTX 3090": ("rtx-3090", ["RTX 3090", "GeForce RTX 3090"]),
    "NVIDIA GeForce RTX 3090 Ti": ("rtx-3090-ti", ["RTX 3090 Ti", "GeForce RTX 3090 Ti"]),
    "NVIDIA GeForce RTX 4090": ("rtx-4090", ["RTX 4090", "GeForce RTX 4090"]),
    "NVIDIA GeForce RTX 5090": ("rtx-5090", ["RTX 5090", "GeForce RTX 5090"]),
    "NVIDIA GeForce RTX 4060 Ti 16GB": ("rtx-4060-ti-16gb", ["rtx-4060-ti", "NVIDIA GeForce RTX 4060 Ti", "RTX 4060 Ti"]),
    "NVIDIA RTX A6000": ("rtx-a6000", ["RTX A6000"]),
    "NVIDIA RTX 6000 Ada Generation": ("rtx-6000-ada", ["RTX 6000 Ada"]),
    "NVIDIA RTX PRO 6000 Blackwell (Workstation Ed.)": (
        "rtx-pro-6000-blackwell",
        ["NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "RTX PRO 6000 Blackwell", "RTX PRO 6000"],
    ),
    "NVIDIA L40S": ("l40s", ["L40S"]),
    "NVIDIA A100 40GB PCIe": ("a100-40gb-pcie", ["NVIDIA A100-PCIE-40GB", "A100 40GB PCIe"]),
    "NVIDIA A100 40GB SXM4": ("a100-40gb-sxm", ["NVIDIA A100-SXM4-40GB", "A100 40GB SXM"]),
    "NVIDIA A100 80GB PCIe": ("a100-80gb-pcie", ["NVIDIA A100-PCIE-80GB", "A100 80GB PCIe"]),
    "NVIDIA A100 80GB SXM4": ("a100-80gb-sxm", ["NVIDIA A100-SXM4-80GB", "A100 80GB SXM", "a100"]),
    "NVIDIA H100 PCIe": ("h100-pcie", ["H100 PCIe", "NVIDIA H100 NVL PCIe"]),
    "NVIDIA H100 SXM5": ("h100-sxm", ["NVIDIA H100 80GB HBM3", "H100 SXM", "h100"]),
    "NVIDIA H200 SXM": ("h200-sxm", ["NVIDIA H200", "H200", "h200"]),
    "NVIDIA B200 (HGX, SXM)": ("b200", ["NVIDIA B200", "B200"]),
    "NVIDIA DGX Spark (GB10)": ("dgx-spark", ["NVIDIA GB10", "DGX Spark", "GB10"]),
    "AMD Radeon RX 7900 XTX": ("rx-7900-xtx", ["Radeon RX 7900 XTX", "RX 7900 XTX"]),
    "AMD Instinct MI300X": ("mi300x", ["MI300X", "AMD Instinct MI300X OAM"]),
    "Apple M1": ("m1", []),
    "Apple M1 Pro": ("m1-pro", []),
    "Apple M1 Ultra": ("m1-ultra", []),
    "Apple M2": ("m2", []),
    "Apple M2 Pro": ("m2-pro", []),
    "Apple M3": ("m3", []),
    "Apple M3 Pro": ("m3-pro", []),
    "Apple M3 Ultra": ("m3-ultra", []),
    "Apple M4": ("m4", []),
    "Apple M5": ("m5", []),
    # hwdb_extra.csv
    "NVIDIA GeForce RTX 3060 12GB": ("rtx-3060-12gb", ["NVIDIA GeForce RTX 3060", "RTX 3060", "rtx-3060"]),
    "NVIDIA GeForce RTX 3070": ("rtx-3070", ["RTX 3070", "GeForce RTX 3070"]),
    "NVIDIA GeForce RTX 3080 10GB": ("rtx-3080-10gb", ["NVIDIA GeForce RTX 3080", "RTX 3080", "rtx-3080"]),
    "NVIDIA GeForce RTX 3080 Ti": ("rtx-3080-ti", ["RTX 3080 Ti", "GeForce RTX 3080 Ti"]),
    "NVIDIA GeForce RTX 4070 Ti": ("rtx-4070-ti", ["RTX 4070 Ti", "GeForce RTX 4070 Ti"]),
    "NVIDIA GeForce RTX 4070 Ti SUPER": ("rtx-4070-ti-super", ["RTX 4070 Ti SUPER", "GeForce RTX 4070 Ti SUPER"]),
    "NVIDIA GeForce RTX 4080": ("rtx-4080", ["RTX 4080", "GeForce RTX 4080"]),
    "NVIDIA GeForce RTX 4080 SUPER": ("rtx-4080-super", ["RTX 4080 SUPER", "GeForce RTX 4080 SUPER"]),
    "NVIDIA GeForce RTX 5060 Ti 16GB": ("rtx-5060-ti-16gb", ["NVIDIA GeForce RTX 5060 Ti", "RTX 5060 Ti", "rtx-5060-ti"]),
    "NVIDIA GeForce RTX 5070 Ti": ("rtx-5070-ti", ["RTX 5070 Ti", "GeForce RTX 5070 Ti"]),
    "NVIDIA GeForce RTX 5080": ("rtx-5080", ["RTX 5080", "GeForce RTX 5080"]),
    "NVIDIA RTX A5000": ("rtx-a5000", ["RTX A5000"]),
    "NVIDIA RTX 4000 Ada Generation": ("rtx-4000-ada", ["RTX 4000 Ada"]),
    "NVIDIA RTX 5000 Ada Generation": ("rtx-5000-ada", ["RTX 5000 Ada"]),
    "NVIDIA L40": ("l40", ["L40"]),
    "NVIDIA A30": ("a30", ["A30"]),
    "NVIDIA A40": ("a40", ["A40"]),
    "NVIDIA Tesla V100 SXM2 32GB": ("v100-sxm2-32gb", ["Tesla V100-SXM2-32GB", "V100 SXM2 32GB", "v100"]),
    "NVIDIA Tesla V100 PCIe 32GB": ("v100-pcie-32gb", ["Tesla V100-PCIE-32GB", "V100 PCIe 32GB"]),
    "NVIDIA Tesla P40": ("p40", ["Tesla P40", "P40"]),
    "NVIDIA Jetson AGX Orin 64GB": ("jetson-agx-orin-64gb", ["Jetson AGX Orin", "Orin"]),
    "AMD Radeon PRO W7900": ("radeon-pro-w7900", ["Radeon PRO W7900", "W7900"]),
    "AMD Radeon RX 9070 XT": ("rx-9070-xt", ["Radeon RX 9070 XT", "RX 9070 XT"]),
    "AMD Radeon RX 9070": ("rx-9070", ["Radeon RX 9070", "RX 9070"]),
    "AMD Instinct MI100": ("mi100", ["MI100"]),
    "AMD Instinct MI210": ("mi210", ["MI210"]),
    "AMD Ryzen AI Max+ 395 (Strix Halo, Radeon 8060S)": (
        "ryzen-ai-max-395",
        ["AMD Ryzen AI Max+ 395", "Ryzen AI Max+ 395", "Strix Halo", "AMD Radeon 8060S", "Radeon 8060S Graphics"],
    ),
    "Intel Arc A770 16GB": ("arc-a770-16gb", ["Intel Arc A770", "Arc A770", "arc-a770"]),
    "Intel Arc B580": ("arc-b580", ["Arc B580", "Intel Arc B580 Graphics"]),
    "Apple M1 Max (24-core GPU)": ("m1-max-24c", []),
    "Apple M1 Max (32-core GPU)": ("m1-max-32c", ["m1-max", "Apple M1 Max"]),
    "Apple M2 Max (30-core GPU)": ("m2-max-30c", []),
    "Apple M2 Max (38-core GPU)": ("m2-max-38c", ["m2-max", "Apple M2 Max"]),
    "Apple M2 Ultra (60-core GPU)": ("m2-ultra-60c", []),
    "Apple M2 Ultra (76-core GPU)": ("m2-ultra-76c", ["m2-ultra", "Apple M2 Ultra"]),
    "Apple M3 Max (30-core GPU)": ("m3-max-30c", []),
    "Apple M3 Max (40-core GPU)": ("m3-max-40c", ["m3-max", "Apple M3 Max"]),
    "Apple M4 Pro (16-core GPU)": ("m4-pro-16c", []),
    "Apple M4 Pro (20-core GPU)": ("m4-pro-20c", ["m4-pro", "Apple M4 Pro"]),
    "Apple M4 Max (32-core GPU)": ("m4-max-32c", []),
    "Apple M4 Max (40-core GPU)": ("m4-max-40c", ["m4-max", "Apple M4 Max"]),
    "Apple M5 Pro (20-core GPU)": ("m5-pro", ["Apple M5 Pro", "m5-pro-20c"]),
    "Apple M5 Max (32-core GPU)": ("m5-max-32c", []),
    "Apple M5 Max (40-core GPU)": ("m5-max-40c", ["m5-max", "Apple M5 Max"]),
}
# Plain research rows that the extra table splits into GPU variants: not written (see module docstring).
SUPERSEDED = {"Apple M1 Max", "Apple M2 Max", "Apple M2 Ultra", "Apple M3 Max", "Apple M4 Pro", "Apple M4 Max"}

UNIFIED = {"dgx-spark", "jetson-agx-orin-64gb", "ryzen-ai-max-395"}
ESTIMATE_WORDS = ("recall", "est", "derived", "unverified", "likely", "computed")

# Values the CSV leaves blank for M5-family chips: FP32 from cores x 128 ALUs x 2 x 1.74 GHz.
M5_CLOCK_SOURCE = (
    "hmc-tech.com/gpu/apple-10-core-m4-fl-vs-apple-10-core-m5-fl (10-core M5 GPU at 1740 MHz, 4.45 TFLOPS FP32); "
    "variants scaled by GPU core count: cores x 128 FP32 ALUs x 2 FLOP x 1.74 GHz (est)"
)
# PCIe payload rate per direction for an x16 link, GB/s (PCI-SIG: 8/16/32 GT/s, 128b/130b encoding).
PCIE_X16_GBS = {"3.0": 15.75, "4.0": 31.5, "5.0": 63.0}
PCIE_SOURCE = "derived from host_interface: PCI-SIG PCIe 3.0/4.0/5.0 = 8/16/32 GT/s per lane, 128b/130b, one direction"
RYZEN_FRACTION_SOURCE = "hwdb_extra.csv memory_options_gb note: up to 96 GB of 128 GB GPU-allocatable under Windows VGM"

NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?")


def number(cell: str) -> tuple[float | None, str]:
    """'1470 (est)' -> (1470.0, 'est'); 'n/a' -> (None, 'n/a'); a range '15-60 (module)' -> its top."""
    cell = cell.strip()
    m = NUM.match(cell)
    if not m:
        return None, cell
    value = float(m.group(2) or m.group(1))
    rest = cell[m.end():].strip()
    if rest.startswith("(") and rest.endswith(")") and rest.count("(") == 1:
        rest = rest[1:-1]
    return value, rest


def intish(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def memory_options(cell: str) -> tuple[list[float], str]:
    head = re.sub(r"^up to\s+", "", cell.strip())
    m = re.match(r"^([\d./]+)\s*(.*)$", head)
    if not m:
        raise SystemExit(f"memory_options_gb: cannot parse {cell!r}")
    opts = sorted(float(x) for x in m.group(1).strip("/").split("/"))
    rest = m.group(2).strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    if cell.strip().startswith("up to"):
        rest = ("largest option only; smaller options not in the table" + (f"; {rest}" if rest else "")).strip()
    return [intish(o) for o in opts], rest


def host_link(interface: str) -> float | None:
    m = re.search(r"PCIe (?:Gen)?\s*(\d\.0|\d)\b.*?x(\d+)", interface)
    if not m:
        return None
    gen = m.group(1) if "." in m.group(1) else f"{m.group(1)}.0"
    return PCIE_X16_GBS[gen] * int(m.group(2)) / 16 if gen in PCIE_X16_GBS else None


def convert(row: dict[str, str], source_file: str) -> dict:
    name = row["device"]
    dev_id, extra_aliases = IDS[name]
    vendor = row["vendor"].strip().lower()
    out: dict = {"id": dev_id, "name": name, "vendor": vendor}
    out["kind"] = "unified" if vendor == "apple" or dev_id in UNIFIED else "gpu"
    out["architecture"] = row["architecture"]
    out["chip"] = row["chip"]
    notes: dict[str, str] = {}
    estimates: dict[str, str] = {}
    sources: dict[str, str] = {"default": f"{row['source']} [{source_file}]"}

    def put(field: str, cell: str, *, as_int: bool = False) -> None:
        if not cell.strip():
            return
        value, rest = number(cell)
        if value is None:
            if rest.lower() not in ("n/a", "none"):
                notes[field] = rest
            return
        out[field] = int(value) if as_int else intish(value)
        if rest:
            notes[field] = rest
            hit = [w for w in ESTIMATE_WORDS if re.search(rf"\b{w}", rest.lower())]
            if hit:
                estimates[field] = hit[0]

    cc = row["compute_capability"].strip()
    if re.fullmatch(r"\d+\.\d+", cc):
        out["compute_capability"] = cc
    elif cc:
        notes["compute_capability"] = cc
    opts, rest = memory_options(row["memory_options_gb"])
    out["memory_options_gb"] = opts
    if dev_id == "rtx-4060-ti-16gb":  # one NVML name covers both SKUs; the 8 GB card has the same bus
        out["memory_options_gb"] = [8, 16]
        rest = "8 GB SKU: same AD106 128-bit 288 GB/s board (recall)"
    if rest:
        notes["memory_options_gb"] = rest
        if any(w in rest.lower() for w in ESTIMATE_WORDS):
            estimates["memory_options_gb"] = "recall" if "recall" in rest.lower() else "est"
    out["memory_type"] = row["memory_type"]
    put("mem_bandwidth_gbs", row["mem_bandwidth_gbs"])
    put("compute_units", row["compute_units"], as_int=True)
    out["compute_unit_kind"] = row["compute_unit_kind"]
    put("boost_clock_mhz", row["boost_clock_mhz"])
    put("l2_cache_mb", row["l2_cache_mb"] or row["last_level_cache_mb"])
    if row["l2_cache_mb"] and row["last_level_cache_mb"]:
        notes["l2_cache_mb"] = (notes.get("l2_cache_mb", "") + f"; last-level cache {row['last_level_cache_mb']}").strip("; ")
    elif row["last_level_cache_mb"]:
        notes["l2_cache_mb"] = f"last-level cache: {row['last_level_cache_mb']}"
    put("fp16_tflops", row["fp16_tensor_dense_tflops_fp32acc"])
    put("fp16_fp16acc_tflops", row["fp16_tensor_dense_tflops_fp16acc"])
    put("bf16_tflops", row["bf16_tensor_dense_tflops"])
    put("fp8_tflops", row["fp8_dense_tflops"])
    put("int8_tops", row["int8_dense_tops"])
    put("fp4_tflops", row["fp4_dense_tflops"])
    put("fp32_tflops", row["fp32_tflops"])
    put("npu_tops", row["npu_tops"])
    put("tdp_w", row["tdp_w"])
    out["host_interface"] = row["host_interface"]
    link = host_link(row["host_interface"])
    if link is not None:
        out["host_link_gbs"] = intish(round(link, 2))
        sources["host_link_gbs"] = PCIE_SOURCE
        estimates["host_link_gbs"] = "derived"
    put("peer_link_gbs", row["peer_interconnect_gbs"])
    put("price_usd", row["launch_msrp_usd"])
    date = row["launch_date"].strip()
    m = re.match(r"^(\d{4}-\d{2}(?:-\d{2})?)\s*(.*)$", date)
    if m:
        out["launch_date"] = m.group(1)
        rest = m.group(2).strip()
        if rest.startswith("(") and rest.endswith(")"):
            rest = rest[1:-1]
        if rest:
            notes["launch_date"] = rest
            if "recall" in rest:
                estimates["launch_date"] = "recall"
    if vendor == "apple" and "fp32_tflops" not in out and dev_id.startswith("m5"):
        out["fp32_tflops"] = round(out["compute_units"] * 128 * 2 * 1.74e9 / 1e12, 2)
        sources["fp32_tflops"] = M5_CLOCK_SOURCE
        estimates["fp32_tflops"] = "est"
    if dev_id == "ryzen-ai-max-395":
        out["gpu_memory_fraction"] = 0.75
        sources["gpu_memory_fraction"] = RYZEN_FRACTION_SOURCE
    out["confidence"] = row["confidence"]
    aliases = [name, *extra_aliases]
    for prefix in ("NVIDIA ", "AMD ", "Intel "):
        if name.startswith(prefix) and "(" not in name:
            aliases.append(name[len(prefix):])
    mv = re.match(r"^Apple (M\d(?: \w+)?) \((\d+)-core GPU\)$", name)
    if mv:  # "Apple M4 Max 40-core", "M4 Max (40-core GPU)"
        aliases += [f"Apple {mv.group(1)} {mv.group(2)}-core", f"{mv.group(1)} ({mv.group(2)}-core GPU)"]
    elif name.startswith("Apple "):
        aliases.append(name[len("Apple "):])
    out["aliases"] = list(dict.fromkeys(a for a in aliases if a.lower() != dev_id))
    out["notes"] = row["notes"]
    out["sources"] = sources
    if notes:
        out["value_notes"] = notes
    if estimates:
        out["estimates"] = estimates
    return out


# ---- a small TOML writer: the files hold only strings, numbers, lists of those, and flat tables ----
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(dev: dict, origin: str) -> str:
    lines = [f"# Device {dev['id']}: generated once by scripts/hwdb_from_csv.py from {origin}.",
             "# This file is now the source of truth; keep each value's source in [sources] when you edit it.", ""]
    tables = {k: v for k, v in dev.items() if isinstance(v, dict)}
    for k, v in dev.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {toml_value(v)}")
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="overwrite files that exist (they may hold hand edits)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    seen: set[str] = set()
    for csv_name in ("hwdb_research.csv", "hwdb_extra.csv"):
        with open(args.data / csv_name, newline="") as f:
            for row in csv.DictReader(f):
                if row["device"] in SUPERSEDED:
                    continue
                if row["device"] not in IDS:
                    raise SystemExit(f"{csv_name}: no id for device {row['device']!r}; add it to IDS")
                dev = convert(row, csv_name)
                if dev["id"] in seen:
                    raise SystemExit(f"duplicate id {dev['id']}")
                seen.add(dev["id"])
                path = args.out / f"{dev['id']}.toml"
                if path.exists() and not args.force:
                    skipped += 1
                    continue
                path.write_text(to_toml(dev, f"{csv_name} row {row['device']!r}"))
                written += 1
    print(f"wrote {written} device files to {args.out} ({skipped} existed, kept)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
