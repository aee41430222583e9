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
    p.add_argument("--json", action="store_true", help="print JSON: one object per combination (a list when several), fields in qlab/predict/README.md")
    g = p.add_argument_group("setups (extra fields in --json: setup, terms, per_gpu_gb, concurrency)")
    g.add_argument("--mtp", action="store_true", help="MTP speculative decoding with the model's own MTP layer")
    g.add_argument("--draft", type=_int_in(1, 16), default=None, help="MTP draft tokens per step (default 2)")
    g.add_argument("--acceptance", type=_float_in(0.0, 1.0), default=None,
                   help="MTP acceptance, accepted/drafted (default: from published runs per draft count)")
    g.add_argument("--gpus", type=_int_in(1, 16), default=1, help="identical GPUs (default 1)")
    g.add_argument("--split", choices=("layer", "tensor"), default=None,
                   help="layer (llama.cpp default, pipeline) or tensor (tensor parallel, all-reduce per layer)")
    g.add_argument("--link", choices=("pcie3", "pcie4", "pcie5", "nvlink"), default=None,
                   help="link between the GPUs (default: the card's PCIe generation)")
    g.add_argument("--gpu-layers", default=None, help="llama.cpp -ngl: layers on the GPU, the rest on the host; 'auto' = as many as fit")
    g.add_argument("--offload-layers", type=_int_in(0, 1000), default=None, help="layers kept on the host (the rest on the GPU)")
    g.add_argument("--host-bw", type=_float_in(0.1, 10000.0), default=None,
                   help="host RAM bandwidth in GB/s for offloaded layers (default 83.2, dual-channel DDR5-5200)")
    g.add_argument("--host-threads", type=_int_in(1, 1024), default=None,
                   help="host cores running the offloaded layers (llama.cpp -t; default 8, its default being the "
                        "physical performance cores)")
    g.add_argument("--concurrency", action="store_true",
                   help="how many sequences fit at --context, and their aggregate and per-user tok/s")
    g.add_argument("--terms", action="store_true", help="--json: add seconds per term with its basis")
    from qlab.tables import add_table_options

    add_table_options(p)  # --wide, --format table|csv|json|md for the table (--json stays the full contract)
    p.set_defaults(func=run)


def _int_in(lo: int, hi: int):
    from qlab.validate import int_arg

    return int_arg(minimum=lo, maximum=hi)


def _float_in(lo: float, hi: float):
    from qlab.validate import float_arg

    return float_arg(minimum=lo, maximum=hi)


def _split(value: str, flag: str = "") -> list[str]:
    """'a,b' -> ['a', 'b']; an empty list (``--hw ,`` or ``--quant ""``) is one clear error naming the flag."""
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    if flag and not items:
        from qlab.errors import QlabError

        raise QlabError(f"{flag}: expected one or more comma-separated values, got {value!r}")
    return items


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
        if "." not in s and "e" not in s:
            return int(s) * mult
        f = float(s) * mult          # "1.5k" is 1536; "4.5", "1.0e400" and "nan" are not token counts
    except ValueError:
        f = float("nan")
    if f != f or f in (float("inf"), float("-inf")) or not f.is_integer():
        raise QlabError(f"{line}{what}: expected an integer (e.g. 4096 or 32k), got {value!r}")
    return int(f)


def _load_profile(path: str) -> dict:
    """Checked by the profile package: schema, finite numbers, and made on this machine (a host profile)."""
    from qlab.profile.schema import load_profile_for_prediction

    return load_profile_for_prediction(path, "--profile")


def read_scenarios(path: str) -> list[dict]:
    """Rows of a scenarios CSV -> predict() keyword dicts, validated; errors name the line (predict/scenarios.py)."""
    from qlab.predict.scenarios import read_scenarios as read

    return read(path, parse_int)


def scenarios_from_args(args) -> list[dict]:
    import itertools

    from qlab.errors import QlabError

    if args.scenarios:
        return read_scenarios(args.scenarios)
    if args.hw is None:
        raise QlabError("predict: give --hw IDS (e.g. --hw rtx-3090) or --scenarios FILE.csv")
    return [{"hw": hw, "model": m, "quant": q, "context": parse_int(c, "--context"), "batch": parse_int(b, "--batch"),
             "kv_dtype": kv}
            for hw, m, q, c, b, kv in itertools.product(
                _split(args.hw, "--hw"), _split(args.model, "--model"), _split(args.quant, "--quant"),
                _split(args.context, "--context"), _split(args.batch, "--batch"), _split(args.kv_dtype, "--kv-dtype"))]


def setup_from_args(args):
    """The Setup the flags ask for, or None for plain single-device decode; flags that need another flag
    are one clear line."""
    from qlab.errors import QlabError
    from qlab.predict.setups import AUTO, Setup

    gpus = getattr(args, "gpus", 1) or 1
    if gpus == 1 and (args.split or args.link):
        raise QlabError(f"--{'split' if args.split else 'link'}: only meaningful with --gpus 2 or more")
    if not args.mtp and (args.draft is not None or args.acceptance is not None):
        raise QlabError(f"--{'draft' if args.draft is not None else 'acceptance'}: only meaningful with --mtp")
    if args.gpu_layers is not None and args.offload_layers is not None:
        raise QlabError("--gpu-layers and --offload-layers say the same thing; give one")
    gpu_layers = None
    if args.gpu_layers is not None:
        gpu_layers = AUTO if str(args.gpu_layers).strip().lower() == "auto" else parse_int(args.gpu_layers, "--gpu-layers")
    elif args.offload_layers is not None:
        gpu_layers = ("offload", args.offload_layers)     # resolved per model below (n_layers + 1 - N)
    for flag, value in (("--host-bw", args.host_bw), ("--host-threads", getattr(args, "host_threads", None))):
        if value is not None and gpu_layers is None:
            raise QlabError(f"{flag}: only meaningful with --gpu-layers or --offload-layers")
    if gpus == 1 and not args.mtp and gpu_layers is None:
        return None
    return Setup(gpus=gpus, split=args.split or "layer", link=args.link, mtp=args.mtp,
                 draft=args.draft if args.draft is not None else 2, acceptance=args.acceptance,
                 gpu_layers=gpu_layers, host_bw_gbs=args.host_bw, host_cores=getattr(args, "host_threads", None))


def _setup_for(setup, model: str):
    """--offload-layers N counts host layers; the Setup counts GPU layers (llama.cpp -ngl)."""
    if setup is None or not isinstance(setup.gpu_layers, tuple):
        return setup
    import dataclasses

    from qlab.errors import QlabError
    from qlab.models.loader import get_model

    n = get_model(model).n_layers
    host = setup.gpu_layers[1]
    if host > n:
        raise QlabError(f"--offload-layers: {model} has {n} layers, got {host}")
    return dataclasses.replace(setup, gpu_layers=n + 1 - host if host else n + 1)


def run(args: argparse.Namespace) -> int:
    import json

    from qlab.errors import QlabError
    from qlab.predict.core import predict

    profile = _load_profile(args.profile) if args.profile else None
    scenarios = scenarios_from_args(args)
    setup = setup_from_args(args)
    extra = {}
    if setup is not None or args.concurrency or args.terms:
        extra = {"concurrency": args.concurrency, "terms": args.terms}
    results, kv_dtypes = [], []
    cache: dict = {}
    for s in scenarios:
        where = s.pop("_where", "")
        key = (s["hw"], s["model"], s["quant"], s["context"], s.get("batch", 1), s.get("kv_dtype", "F16"))
        try:
            r = cache.get(key)
            if r is None:   # a scenarios file repeats rows: predict each distinct one once
                r = cache[key] = predict(**s, profile=profile, setup=_setup_for(setup, s["model"]), **extra)
        except QlabError as e:
            raise QlabError(f"{where}{e}", e.exit_code) from None
        results.append(r)
        kv_dtypes.append(s.get("kv_dtype", "F16").upper())
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=None if len(results) > 1000 else 1))
        return 0
    if len(results) > PLAIN_ROWS:
        _print_plain([{**r, "kv_dtype": kv} for r, kv in zip(results, kv_dtypes)])
        return 0
    _print_table([{**r, "kv_dtype": kv} for r, kv in zip(results, kv_dtypes)], args)
    if results and results[0].get("setup"):
        print("setup: " + ", ".join(f"{k} {v}" for k, v in results[0]["setup"].items())
              + "  (--json --terms: seconds per term and its basis)")
    for r in results if args.concurrency else []:
        c = r["concurrency"]
        print(f"{r['hw']} {r['quant']} at {r['context']} tokens: {c['max_sequences']} sequences fit"
              + (f", {c['aggregate_tok_s']:.0f} tok/s in all, {c['per_user_tok_s']:.1f} per user" if c.get("batch") else ""))
    return 0


PLAIN_ROWS = 2000   # beyond this a rich table takes minutes to lay out: tab-separated lines instead


def _print_plain(results: list[dict]) -> None:
    """Many rows: one tab-separated line each (header first), written in one go."""
    import sys

    head = "hw\tmodel\tquant\tcontext\tbatch\tkv_dtype\tdecode_tok_s\tprefill_tok_s\tttft_s\ttotal_gb\tfits\tbound\tbasis"
    lines = [head]
    for r in results:
        lines.append(f"{r['hw']}\t{r['model']}\t{r['quant']}\t{r['context']}\t{r['batch']}\t{r['kv_dtype']}\t"
                     f"{r['decode_tok_s']:.1f}\t{r['prefill_tok_s']:.0f}\t{r['ttft_s']:.2f}\t{r['memory']['total_gb']:.2f}\t"
                     f"{'yes' if r['fits'] else 'no'}\t{r['bound']}\t{r['basis']}")
    sys.stdout.write("\n".join(lines) + "\n")


def _print_table(results: list[dict], args=None) -> None:
    """The shared CLI table (qlab/tables.py): fits the terminal, ids never cut, --wide, --format csv|json|md."""
    from qlab.tables import print_predictions

    print_predictions(results, args, asked_hw=_split(args.hw) if getattr(args, "hw", None) else [])
