"""`qlab models list|show ID [--json]`: the model presets (torch-free; imports inside run())."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model presets: list, show one (shapes, parameters, sources)")
    msub = p.add_subparsers(dest="models_command", metavar="COMMAND")
    lp = msub.add_parser("list", help="every model id with its size and layer mix")
    lp.add_argument("--json", action="store_true", help="print JSON")
    sp = msub.add_parser("show", help="one preset: shapes, layer types, parameters, sources")
    sp.add_argument("id", help="model id, e.g. qwen3.6-27b")
    sp.add_argument("--quant", help="also list per-tensor types and the file size at this quant, e.g. Q4_K_M")
    sp.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _summary(m) -> dict:
    from dataclasses import asdict

    from qlab.models.tensors import active_param_count, param_count

    d = asdict(m)
    d["layer_types"] = {k: m.count(k) for k in ("attention", "sliding", "deltanet") if m.count(k)}
    d["params"] = param_count(m)
    d["active_params"] = active_param_count(m)
    return d


def run(args: argparse.Namespace) -> int:
    import json

    from qlab.models import all_presets, get_model

    cmd = getattr(args, "models_command", None) or "list"
    if cmd == "list":
        rows = [_summary(m) for m in all_presets().values()]
        if getattr(args, "json", False):
            print(json.dumps(rows, indent=1))
            return 0
        from rich.console import Console
        from rich.table import Table

        t = Table("id", "layers", "mix", "ffn", "params B", "active B", "max ctx")
        for r, m in zip(rows, all_presets().values()):
            mix = " + ".join(f"{n} {k}" for k, n in r["layer_types"].items())
            ffn = (f"MoE {m.ffn.active_experts}/{m.ffn.experts}" if m.is_moe else f"dense {m.ffn.intermediate_size}")
            t.add_row(m.id, str(m.n_layers), mix, ffn, f"{r['params'] / 1e9:.2f}", f"{r['active_params'] / 1e9:.2f}",
                      str(m.max_context))
        import sys

        (Console() if sys.stdout.isatty() else Console(width=160)).print(t)
        return 0
    m = get_model(args.id)
    d = _summary(m)
    if args.quant:
        from qlab.models.quant_mix import quantize

        mix = quantize(m, args.quant)
        d["quant"] = {"id": mix.quant, "file_bytes": mix.file_bytes, "file_gb": mix.file_bytes / 1e9,
                      "tensors": [{"name": t.name, "shape": list(t.shape), "type": t.type} for t in mix.tensors]}
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    print(f"{m.name} ({m.id}), {m.hf_repo}, llama.cpp arch {m.gguf_arch}")
    print(f"  layers {m.n_layers}: " + ", ".join(f"{n} {k}" for k, n in d["layer_types"].items())
          + f"; hidden {m.hidden_size}; vocab {m.vocab_size}; tied embeddings {m.tied_embeddings}")
    a = m.attention
    print(f"  attention: {a.heads} q / {a.kv_heads} kv heads x {a.head_dim}; output gate {a.output_gate}; "
          f"qk norm {a.qk_norm}" + (f"; sliding window {a.sliding_window}" if a.sliding_window else ""))
    if m.deltanet:
        dn = m.deltanet
        print(f"  Gated DeltaNet: {dn.key_heads} key / {dn.value_heads} value heads, dims {dn.key_head_dim}/"
              f"{dn.value_head_dim}, conv kernel {dn.conv_kernel}")
    f = m.ffn
    print("  ffn: " + (f"MoE {f.experts} experts, {f.active_experts} active, width {f.expert_intermediate_size}, "
                       f"{f.shared_experts} shared" if f.is_moe else f"dense, width {f.intermediate_size}"))
    print(f"  params {d['params'] / 1e9:.3f} B (published {m.params_published_b} B), active "
          f"{d['active_params'] / 1e9:.3f} B; max context {m.max_context}"
          + (f" ({m.max_context_scaled} with RoPE scaling)" if m.max_context_scaled else "") + f"; MTP layers {m.mtp_layers}")
    if args.quant:
        q = d["quant"]
        print(f"  {q['id']}: {q['file_gb']:.2f} GB")
        for t in q["tensors"]:
            print(f"    {t['name']:40s} {str(tuple(t['shape'])):24s} {t['type']}")
    for k, v in m.sources.items():
        print(f"  source {k}: {v}")
    return 0
