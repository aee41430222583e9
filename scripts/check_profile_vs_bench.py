"""Check a profile's calibrated prediction for this machine against a separate decode-loop run.

    python scripts/check_profile_vs_bench.py profiles/cpu-host-....json [--quant Q4_K_M] [--context 4096] [--whole]

Runs the decode loop again in this process (fresh synthetic weights): the slice the profile ran, scaled to
64 layers as the profile does, or with --whole the whole model (the synthetic GGUF `qlab profile` writes
under $QLAB_HOME/models/, written first if missing), and compares with `qlab predict --profile`. With
--whole it also prints how far the slice's extrapolation lands from the whole model. Exit 1 when the
prediction differs from the run by more than --tolerance (default 15 %); 2 on bad input.
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
    ap.add_argument("--whole", action="store_true", help="decode the whole model (its GGUF), not the slice")
    ap.add_argument("--tolerance", type=float, default=0.15)
    args = ap.parse_args()

    from qlab.engine.bench import run_decode_bench
    from qlab.errors import QlabError
    from qlab.predict import predict
    from qlab.profile.schema import load_profile_for_prediction

    try:
        doc = load_profile_for_prediction(args.profile, "profile")
    except QlabError as e:
        print(e, file=sys.stderr)
        return 2
    rows = [r for r in doc.get("decode") or [] if "error" not in r and not r.get("whole_model")]
    if not rows or "calibration" not in doc:
        print(f"{args.profile}: no decode measurements or calibration to check", file=sys.stderr)
        return 2
    quant = args.quant or rows[0]["quant"]
    context = args.context if args.context is not None else rows[0]["context"]
    layers = rows[0]["layers_run"]
    model = doc["options"].get("model", "qwen3.6-27b")
    threads = doc.get("microbench", {}).get("threads")
    pred = predict(doc["device"]["id"], model, quant, context, profile=doc)
    slice_run = run_decode_bench(model=model, layers=layers, quant=quant, context=context, tokens=args.tokens,
                                 threads=threads)
    measured, what = slice_run["scaled_decode_tok_s"], f"{layers}-layer slice scaled to 64"
    if args.whole:
        from qlab.profile.whole_model import ensure_model_file

        path = ensure_model_file(model, quant)
        whole = run_decode_bench(model=model, layers=None, quant=quant, context=context, tokens=args.tokens,
                                 threads=threads, gguf=str(path), prefill_tokens=16)
        print(f"whole model ({path.name}): {whole['decode_tok_s']:.3f} tok/s, peak RSS {whole['peak_rss_gb']:.1f} GB; "
              f"slice extrapolation {measured:.3f} tok/s ({100 * (measured / whole['decode_tok_s'] - 1):+.1f} %)")
        measured, what = whole["decode_tok_s"], "whole model"
    err = pred["decode_tok_s"] / measured - 1
    print(f"{doc['device']['id']} {quant} @ {context}: bench decode ({what}) {measured:.3f} tok/s; predicted from "
          f"the profile {pred['decode_tok_s']:.3f} tok/s (basis {pred['basis']}); error {100 * err:+.1f} %")
    return 0 if abs(err) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
