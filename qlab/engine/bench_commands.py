"""`qlab bench decode`: the decode loop's throughput on this machine (see qlab/engine/README.md).
Nothing heavy is imported until `run`."""

from __future__ import annotations

import argparse

from qlab.validate import int_arg, output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode loop: prefill and decode tok/s, time per op kind, GB/s, peak memory",
                       description="Run Qwen3.6-27B's decode loop (the whole model or a slice of layers, synthetic "
                                   "weights or a GGUF) and report prefill/decode throughput, the time per token "
                                   "by op kind, achieved bandwidth and peak RSS, with a slice scaled to 64 layers.")
    p.add_argument("--model", default="qwen3.6-27b")
    p.add_argument("--layers", type=int, default=None, help="first N layers (a multiple of 4); default all")
    p.add_argument("--gguf", default=None, help="read weights from this qwen35 GGUF instead of synthetic ones")
    p.add_argument("--quant", default="Q8_0", help="synthetic weight quant (Q8_0, Q4_K_M, F16, ...)")
    p.add_argument("--context", type=int, default=4096, help="tokens already in the cache when decoding")
    p.add_argument("--tokens", type=int, default=16, help="tokens to decode")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    p.add_argument("--threads", type=int_arg(minimum=1), default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--fill", default="auto", choices=["auto", "prefill", "synthetic"],
                   help="how caches reach --context: run the model (prefill) or write random values (synthetic; "
                        "auto: prefill up to 512 tokens)")
    p.add_argument("--width-scale", type=float, default=1.0, help="divide every width by F (quick runs)")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary size for synthetic weights")
    p.add_argument("--json", action="store_true", help="print the result record as JSON")
    p.add_argument("--dump-logits", default=None, metavar="FILE.npy", type=output_file,
                   help="save the logits of every position of --prompt-tokens to FILE.npy, [T, vocab] float32")
    p.add_argument("--prompt-tokens", default=None, help="comma-separated token ids, e.g. 1,2,3")
    p.set_defaults(func=run)


def _tokens(text: str) -> list[int]:
    from qlab.errors import QlabError

    try:
        toks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise QlabError(f"--prompt-tokens {text!r}: expected comma-separated integers like 1,2,3") from None
    if not toks:
        raise QlabError("--prompt-tokens: no tokens given")
    return toks


def run(args) -> int:
    import json

    from qlab.errors import QlabError

    if args.dump_logits:
        if not args.prompt_tokens:
            raise QlabError("--dump-logits needs --prompt-tokens 1,2,3")
        from qlab.engine.bench import dump_logits

        path = dump_logits(args.model, args.layers, args.quant, args.gguf, _tokens(args.prompt_tokens),
                           args.dump_logits, device=args.device, threads=args.threads,
                           width_scale=args.width_scale, vocab=args.vocab)
        print(f"wrote {path}")
        return 0
    from qlab.engine.bench import format_record, run_decode_bench
    from qlab.engine.memory import DoesNotFitError

    gguf = args.gguf
    try:
        rec = run_decode_bench(args.model, args.layers, args.quant, args.context, args.tokens, args.device,
                               args.threads, gguf, width_scale=args.width_scale, vocab=args.vocab, fill=args.fill)
    except DoesNotFitError:
        # The whole model drawn in memory holds two layouts of each K-quant matrix (GGUF and x8); read from a
        # memory-mapped GGUF it holds about one (qlab/profile/whole_model.py). Where that fits, use the file.
        from qlab.profile import whole_model

        fit = whole_model.plan(args.model, args.quant, args.context, args.width_scale, args.vocab)
        if args.layers is not None or gguf or not fit["fits"]:
            raise
        import sys

        gguf = str(whole_model.ensure_model_file(args.model, args.quant, args.width_scale, args.vocab,
                                                 log=lambda m: print(m, file=sys.stderr)))
        rec = run_decode_bench(args.model, None, args.quant, args.context, args.tokens, args.device,
                               args.threads, gguf, fill=args.fill)
    print(json.dumps(rec, indent=2) if args.json else format_record(rec))
    return 0
