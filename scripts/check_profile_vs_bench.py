"""Check a profile's calibrated prediction for this machine against a separate decode-loop run.

    python scripts/check_profile_vs_bench.py profiles/cpu-host-....json [--quant Q8_0] [--context 4096]

Runs `qlab bench decode` on the same slice the profile ran (a fresh process state, fresh synthetic
weights), scales it to 64 layers as the profile does, and compares with `qlab predict --profile`.
Exit 1 when they differ by more than --tolerance (default 15 %).
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("--quant", default=None, help="default: the first quant the profile measured")
    ap.add_argument("--context", type=int, default=None, help="default: the first context the profile measured")
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=0.15)
    args = ap.parse_args()

    from qlab.engine.bench import run_decode_bench
    from qlab.predict import predict
    from qlab.profile.schema import load_profile

    doc = load_profile(args.profile)
    rows = [r for r in doc.get("decode") or [] if "error" not in r]
    if not rows or "calibration" not in doc:
        print(f"{args.profile}: no decode measurements or calibration to check", file=sys.stderr)
        return 2
    quant = args.quant or rows[0]["quant"]
    context = args.context if args.context is not None else rows[0]["context"]
    layers = rows[0]["layers_run"]
    predicted = predict(doc["device"]["id"], doc["options"].get("model", "qwen3.6-27b"), quant, context,
                        profile=doc)["decode_tok_s"]
    run = run_decode_bench(layers=layers, quant=quant, context=context, tokens=args.tokens,
                           threads=doc.get("microbench", {}).get("threads"))
    measured = run["scaled_decode_tok_s"]
    err = predicted / measured - 1
    print(f"{doc['device']['id']} {quant} @ {context}: bench decode ({layers}-layer slice scaled to 64) "
          f"{measured:.3f} tok/s; predicted from the profile {predicted:.3f} tok/s; error {100 * err:+.1f} %")
    return 0 if abs(err) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
