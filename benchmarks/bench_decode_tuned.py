"""Decode tok/s with the tuned choices against the defaults, on this machine, in one run.

1. `qlab tune --op decode` (qlab.tune.decode.tune_decode) on a Qwen3.6-27B slice: threads, impl per op and
   configs, with the decode step as the objective; the answer goes into a tune cache in a temporary QLAB_HOME
   (your own cache is not touched).
2. `qlab bench decode` on the same slice, alternating default (tuned=False, torch's thread count) and tuned
   (what the kernel registry resolves from that cache), `--rounds` times each; the median of each is reported.

    python benchmarks/bench_decode_tuned.py [--layers 4] [--quant Q4_K_M] [--width-scale 4] [--vocab 32768]
                                            [--context 256] [--budget 60] [--rounds 3] [--json out.json]

Timings on a shared machine are noisy: compare only the ratio of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--quant", default="Q4_K_M")
    ap.add_argument("--width-scale", type=float, default=4.0, help="divide every width by F (1: full width)")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=8, help="tokens per bench decode run")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for the decode tuner")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    os.environ["QLAB_HOME"] = tempfile.mkdtemp(prefix="qlab-bench-tuned-")
    import torch

    from qlab.engine.bench import run_decode_bench
    from qlab.tune.decode import tune_decode

    base_threads = torch.get_num_threads()
    common = dict(layers=a.layers, quant=a.quant, width_scale=a.width_scale, vocab=a.vocab)
    tuned = tune_decode(**common, context=a.context, budget_s=a.budget)
    print(f"# tuner: default {tuned['default_ms_per_token']:.2f} ms -> tuned {tuned['tuned_ms_per_token']:.2f} ms "
          f"per token ({tuned['speedup']:.2f}x paired); threads {tuned['default_threads']} -> {tuned['threads']}, "
          f"impls {tuned['impls']}, configs {tuned['configs'] or 'defaults'}", flush=True)
    runs = {"default": [], "tuned": []}
    for r in range(a.rounds):
        for name in (("default", "tuned") if r % 2 == 0 else ("tuned", "default")):
            rec = run_decode_bench(**common, context=a.context, tokens=a.tokens,
                                   threads=base_threads if name == "default" else None,
                                   backend_overrides={"tuned": name == "tuned"})
            cached = sum(x["from_cache"] for x in rec["resolved"])
            runs[name].append(rec["decode_tok_s"])
            print(f"{name:8s} {rec['decode_tok_s']:8.2f} tok/s  threads {rec['threads']}  "
                  f"({cached}/{len(rec['resolved'])} op shapes from the tune cache)", flush=True)
    d, t = statistics.median(runs["default"]), statistics.median(runs["tuned"])
    print(f"median of {a.rounds}: default {d:.2f} tok/s, tuned {t:.2f} tok/s, tuned/default {t / d:.2f}x "
          f"({a.layers} layers {a.quant}, width 1/{a.width_scale:g}, vocab {a.vocab}, depth {a.context}; "
          "noisy on a shared machine)")
    if a.json:
        from qlab.io import write_json_atomic

        write_json_atomic(a.json, {"tuner": tuned, "default_tok_s": runs["default"], "tuned_tok_s": runs["tuned"],
                                   "ratio": t / d})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
