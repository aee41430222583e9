"""`qlab predict`: comma lists expand into every combination; `--scenarios FILE.csv` reads a list.

    qlab predict --hw rtx-3090,m4-max-40c --model qwen3.6-27b --quant Q4_K_M,Q8_0 --context 4096,32768
    qlab predict --scenarios runs.csv --json       # columns hw, model, quant, context[, batch, kv_dtype]

Nothing heavy is imported at module level (no torch): the command answers in well under a second.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict decode/prefill speed and memory for devices x quants x contexts",
                       description="Predict tokens/s, time to first token and memory. Comma-separated lists "
                                   "expand into every combination.")
    p.add_argument("--hw", help="device ids or names, comma-separated (e.g. rtx-3090,m4-max-40c)")
    p.add_argument("--model", default="qwen3.6-27b", help="model ids, comma-separated (default qwen3.6-27b)")
    p.add_argument("--quant", default="Q4_K_M", help="quant ids, comma-separated (default Q4_K_M)")
    p.add_argument("--context", default="4096", help="tokens already in the cache, comma-separated; 32k/1M ok")
    p.add_argument("--batch", default="1", help="concurrent sequences, comma-separated (default 1)")
    p.add_argument("--kv-dtype", default="F16", help="KV cache type: F16, BF16, Q8_0, Q4_0, FP8 (comma list ok)")
    p.add_argument("--profile", help="a profile JSON measured by `qlab profile`: its efficiencies replace the fitted ones")
    p.add_argument("--scenarios", help="CSV with columns hw, model, quant, context[, batch, kv_dtype]")
    p.add_argument("--json", action="store_true", help="print DESIGN.md's JSON contract (one object, or a list)")
    p.set_defaults(func=run)


def _split(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


def parse_int(value: str, what: str, line: str = "") -> int:
    """'4096', '32k', '1M' -> int; errors name the option (and the CSV line)."""
    from qlab.errors import QlabError

    s = str(value).strip().lower().replace("_", "")
    mult = 1
    if s.endswith("k"):
        s, mult = s[:-1], 1024
    elif s.endswith("m"):
        s, mult = s[:-1], 1024 * 1024
    try:
        n = int(float(s) * mult) if "." in s else int(s) * mult
    except ValueError:
        raise QlabError(f"{line}{what}: expected an integer (e.g. 4096 or 32k), got {value!r}") from None
    return n


def _load_profile(path: str) -> dict:
    import json

    from qlab.errors import QlabError

    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise QlabError(f"--profile {path}: cannot read a JSON profile: {e}") from None


def read_scenarios(path: str) -> list[dict]:
    """Rows of a scenarios CSV -> predict() keyword dicts, validated; errors name the line (predict/scenarios.py)."""
    from qlab.predict.scenarios import read_scenarios as read

    return read(path, parse_int)


def scenarios_from_args(args) -> list[dict]:
    import itertools

    from qlab.errors import QlabError

    if args.scenarios:
        return read_scenarios(args.scenarios)
    if not args.hw:
        raise QlabError("predict: give --hw IDS (e.g. --hw rtx-3090) or --scenarios FILE.csv")
    return [{"hw": hw, "model": m, "quant": q, "context": parse_int(c, "--context"), "batch": parse_int(b, "--batch"),
             "kv_dtype": kv}
            for hw, m, q, c, b, kv in itertools.product(_split(args.hw), _split(args.model), _split(args.quant),
                                                          _split(args.context), _split(args.batch),
                                                          _split(args.kv_dtype))]


def run(args: argparse.Namespace) -> int:
    import json

    from qlab.errors import QlabError
    from qlab.predict.core import predict

    profile = _load_profile(args.profile) if args.profile else None
    results, kv_dtypes = [], []
    for s in scenarios_from_args(args):
        where = s.pop("_where", "")
        try:
            results.append(predict(**s, profile=profile))
        except QlabError as e:
            raise QlabError(f"{where}{e}", e.exit_code) from None
        kv_dtypes.append(s.get("kv_dtype", "F16").upper())
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=1))
        return 0
    _print_table([{**r, "kv_dtype": kv} for r, kv in zip(results, kv_dtypes)])
    return 0


def _print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = ("hw", "model", "quant", "context", "batch", "kv_dtype")
    varying = [k for k in keys if len({r[k] for r in results}) > 1] or ["hw"]
    fixed = {k: results[0][k] for k in keys if k not in varying}
    t = Table(*varying, "decode tok/s", "prefill tok/s", "TTFT s", "weights GB", "KV GB", "state GB", "total GB",
              "fits", "bound", "basis", title=", ".join(f"{k} {v}" for k, v in fixed.items()) or None)
    for col in t.columns:
        col.no_wrap = True
    for r in results:
        m = r["memory"]
        t.add_row(*(str(r[k]) for k in varying), f"{r['decode_tok_s']:.1f}", f"{r['prefill_tok_s']:.0f}",
                  f"{r['ttft_s']:.2f}", f"{m['weights_gb']:.2f}", f"{m['kv_cache_gb']:.2f}", f"{m['state_gb']:.3f}",
                  f"{m['total_gb']:.2f}", "yes" if r["fits"] else "[red]no[/red]", r["bound"], r["basis"])
    import sys

    c = Console() if sys.stdout.isatty() else Console(width=200)  # pipes: never truncate the numbers
    c.print(t)
    for r in results:
        for w in r.get("warnings", []):
            c.print(f"[yellow]note[/yellow] {r['hw']} {r['model']}: {w}")
