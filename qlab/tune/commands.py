"""`qlab tune`: tune kernels on this machine and print the chosen configurations with their speedup over each
kernel's default configuration. Imports nothing heavy until it runs."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="autotune kernel configurations on this machine (cached per device and shape)",
                       description="Search each tunable impl's configurations within a time budget, check every "
                                   "candidate against the reference, and cache the answers.")
    p.add_argument("--op", required=True,
                   help="op to tune: deltanet, attention_decode, attention_prefill, dequant_matmul (those present), "
                        "a comma list, 'all', the self-test op blocked_matmul, or 'decode': the decode loop's own "
                        "choices (threads, impl and config per op) with the decode step as the objective")
    p.add_argument("--shapes", default="qwen3.6-27b",
                   help="the preset qwen3.6-27b (default) or SPEC: dim=value,... overrides of the Qwen3.6-27B "
                        "shape, several separated by ';' (e.g. 'T=1;T=4096', 'S=32768,dtype=bf16')")
    p.add_argument("--device", default="auto", help="auto (default: cuda if present), cpu or cuda[:N]")
    p.add_argument("--budget", type=float, default=30.0, help="total seconds for the whole run (default 30)")
    p.add_argument("--strategy", default="budgeted", help="budgeted (default), exhaustive, bayes (optuna), random")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the tune cache")
    p.add_argument("--json", action="store_true", help="print the results as a JSON list")
    d = p.add_argument_group("--op decode", "the model slice whose decode step is the objective")
    d.add_argument("--layers", type=int, default=4, help="first N layers (a multiple of 4; default 4)")
    d.add_argument("--quant", default="Q4_K_M", help="synthetic weight quant (default Q4_K_M)")
    d.add_argument("--gguf", default=None, help="a qwen35 GGUF instead of synthetic weights")
    d.add_argument("--context", type=int, default=256, help="tokens in the cache while timing (default 256)")
    d.add_argument("--width-scale", type=float, default=1.0, help="divide every width by F (quick runs)")
    d.add_argument("--vocab", type=int, default=None, help="vocabulary size for synthetic weights")
    p.set_defaults(func=run)


def _run_decode(args, device: str) -> int:
    from qlab.errors import QlabError
    from qlab.tune.decode import tune_decode

    if args.context < 1 or (args.layers is not None and args.layers < 1):
        raise QlabError(f"--context {args.context} / --layers {args.layers}: expected positive numbers")
    rec = tune_decode(layers=args.layers, quant=args.quant, gguf=args.gguf, width_scale=args.width_scale,
                      vocab=args.vocab, context=args.context, device=device, budget_s=args.budget,
                      cache=not args.no_cache)
    if args.json:
        print(json.dumps(rec, indent=1))
        return 0
    print(f"decode step, {rec['layers']} layers {rec['quant']} at depth {rec['context']} on {rec['device']}: "
          f"default {rec['default_ms_per_token']:.2f} ms/token -> tuned {rec['tuned_ms_per_token']:.2f} ms/token "
          f"({rec['speedup']:.2f}x, paired re-measurement; noisy on a shared machine)")
    print(f"threads {rec['default_threads']} -> {rec['threads']}; impls: "
          + ", ".join(f"{k}={v}" for k, v in rec["impls"].items())
          + "; configs: " + (json.dumps(rec["configs"]) if rec["configs"] else "defaults"))
    print("written to the tune cache: the next decode runs this" if rec["written"] else "not written (--no-cache)")
    if rec["written"] and not rec["threads_cached"]:
        print(f"thread count not cached: other processes took {100 * rec['others_cpu_share']:.0f} % of the CPUs "
              "while it was tuned (a neighbour makes fewer threads win); the next decode uses torch's default")
    return 0


def _fmt_time(t) -> str:
    if t is None:
        return "-"
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.2f} s"


def _fmt_shape(r: dict, op_cls) -> str:
    """The bucketed dims always, the others where they differ from the Qwen3.6-27B default."""
    parts = [f"{k}={v}" for k, v in r["shape"].items()
             if k != "dtype" and (k in op_cls.seq_dims or op_cls.dims.get(k) != v)]
    return ",".join(parts + [str(r["shape"].get("dtype", ""))]) or "default"


def _print_table(results: list[dict], classes: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="qlab tune: chosen configurations (speedup over the kernel's default)")
    for col in ("op", "impl", "shape", "config", "time", "default", "speedup", "GB/s", "evals", "rejected",
                "source"):
        table.add_column(col, justify="right" if col in ("time", "default", "speedup", "GB/s", "evals") else "left")
    for r in results:
        cfg = ",".join(f"{k}={v}" for k, v in (r["config"] or {}).items()) or "(none passed)"
        rejected = ",".join(f"{k}:{v}" for k, v in r["failures"].items()) or "-"
        table.add_row(r["op"], r["impl"], _fmt_shape(r, classes[r["op"]]), cfg, _fmt_time(r["time_s"]),
                      _fmt_time(r["default_time_s"]), f"{r['speedup']:.2f}x" if r["speedup"] else "-",
                      f"{r['gbs']:.1f}" if r["gbs"] else "-", str(r["evaluations"]), rejected,
                      "cache" if r["from_cache"] else "measured")
    console = Console()
    if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)


def run(args) -> int:
    import warnings

    from qlab.errors import QlabError, unknown
    from qlab.tune.ops import SELF_TEST_OPS, _load, all_names, available_ops
    from qlab.tune.shapes import parse_spec
    from qlab.tune.strategies import STRATEGIES
    from qlab.tune.tuner import resolve_device, tune_shapes

    if not args.budget > 0:
        raise QlabError(f"--budget {args.budget:g}: expected a positive number of seconds")
    if args.strategy not in STRATEGIES:
        raise unknown("strategy", args.strategy, STRATEGIES)
    if args.op.strip() == "decode":
        return _run_decode(args, resolve_device(args.device))
    ops = list(available_ops()) if args.op == "all" else [o.strip() for o in args.op.split(",") if o.strip()]
    if not ops:
        raise QlabError("--op: no op given" if args.op != "all" else "--op all: no kernel op is present yet")
    for op in ops:
        if op not in all_names():
            raise unknown("op", op, list(available_ops()) + list(SELF_TEST_OPS) + ["decode"])
    device = resolve_device(args.device)
    plan = [(op, parse_spec(op, args.shapes)) for op in ops]   # all specs checked before any timing

    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import time

        t_end = time.monotonic() + args.budget
        for i, (op, shapes) in enumerate(plan):
            share = max((t_end - time.monotonic()) / (len(plan) - i), 0.05)
            results += [r.to_dict() for r in tune_shapes(op, shapes, device, share, args.strategy,
                                                         cache=not args.no_cache)]
    seen = set()
    for w in caught:  # warnings (corrupt cache, unwritable cache, rejected shapes) as one line each
        msg = str(w.message)
        if msg not in seen and not issubclass(w.category, (DeprecationWarning, FutureWarning)):
            seen.add(msg)
            print(f"qlab: warning: {msg}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        _print_table(results, {op: _load(op)[0] for op in ops})
    return 0
