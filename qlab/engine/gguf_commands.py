"""`qlab gguf synth`: write a synthetic Qwen3.6-27B (or a slice / narrow copy of it) as a GGUF llama.cpp loads,
so that qlab and llama.cpp can run the very same weights. Nothing heavy is imported until `run`."""

from __future__ import annotations

import argparse

from qlab.validate import float_arg, int_arg, output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gguf", help="GGUF files: write a synthetic model (`gguf synth`), inspect one (`gguf info`)",
                       description="GGUF tools for the qwen35 architecture.")
    gsub = p.add_subparsers(dest="gguf_command", metavar="COMMAND")
    s = gsub.add_parser("synth", help="write a synthetic model as a GGUF llama.cpp loads")
    s.add_argument("--model", default="qwen3.6-27b", help="model id (default qwen3.6-27b)")
    s.add_argument("--layers", type=int_arg(minimum=1), default=None, help="first N layers only (a multiple of 4)")
    s.add_argument("--dtype", default="F16", help="F16 (default), F32, BF16, Q8_0, Q4_K_M, ...: the type of the "
                   "weight matrices; llama.cpp can re-quantize an F16 file itself")
    s.add_argument("--width-scale", type=float_arg(minimum=1), default=1.0, help="divide every width by F >= 1 "
                   "(head dims and the layer pattern kept), for quick tests")
    s.add_argument("--vocab", type=int_arg(minimum=260), default=None, help="vocabulary size, >= 260 (the synthetic "
                   "tokenizer's control and byte tokens; default: the model's, 248320)")
    s.add_argument("--seed", type=int_arg(minimum=0, maximum=2**63 - 1), default=0)  # torch.manual_seed range
    s.add_argument("--mtp", action="store_true", help="add the MTP block (blk.N.nextn.*) for qlab's speculative "
                   "decoding; llama.cpp's qwen35 loader does not read such a file")
    s.add_argument("-o", "--output", required=True, type=output_file, help="the GGUF file to write")
    s.set_defaults(func=run_synth)
    i = gsub.add_parser("info", help="check a qwen35 GGUF and print its shape, tensor types and size")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_synth(args) -> int:
    import shutil
    import signal
    from pathlib import Path

    from qlab.engine.gguf_io import default_synth_config, file_type, gguf_nbytes, write_synthetic_gguf
    from qlab.errors import QlabError

    dtype = args.dtype.upper()
    file_type(dtype)   # an unknown --dtype fails before anything else
    cfg = default_synth_config(args.model, args.layers, args.width_scale, args.vocab)
    size = gguf_nbytes(cfg, dtype, args.mtp)
    out = Path(args.output)
    where = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(where).free
    if size > free:
        raise QlabError(f"{out}: this file would be {size / 1e9:.2f} GB but only {free / 1e9:.2f} GB of disk is free "
                        f"there; use --layers, --width-scale or a smaller --dtype")
    # a plain kill (SIGTERM) unwinds like Ctrl-C, so the writer removes its temp file
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        write_synthetic_gguf(out, cfg, dtype, args.seed, mtp=args.mtp)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"wrote {out}: {cfg.name}, {cfg.n_layers} layers, hidden {cfg.hidden}, ffn {cfg.ffn}, vocab {cfg.vocab}, "
          f"{dtype}{', with the MTP block' if args.mtp else ''}, {out.stat().st_size / 1e9:.3f} GB")
    return 0


def run_info(args) -> int:
    import json

    from qlab.engine.gguf_io import read_gguf

    w = read_gguf(args.file, check_memory=False)
    c = w.cfg
    info = {"file": args.file, "layers": c.n_layers, "hidden": c.hidden, "ffn": c.ffn, "vocab": c.vocab,
            "heads": [c.n_heads, c.n_kv_heads, c.head_dim], "deltanet_heads": [c.lin_k_heads, c.lin_v_heads],
            "mtp_block": any(n.endswith(".nextn.eh_proj.weight") for n in w.tensors),
            "formats": w.formats(), "weights_gb": w.nbytes() / 1e9}
    print(json.dumps(info, indent=2) if args.json else
          "\n".join(f"{k:>15}: {v}" for k, v in info.items()))
    return 0
