"""`qlab models list|show ID [--json]`: the model presets (torch-free; imports inside run()).

    qlab models show qwen3.6-27b --quant Q4_K_M            # file size, bits per weight, tensors per type
    qlab models show qwen3.6-27b --quant Q4_K_M --tensors  # ... and every tensor (865 lines)
"""

from __future__ import annotations

import argparse

from qlab.tables import Column, add_table_options, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model presets: list, show one (shapes, parameters, sources)")
    msub = p.add_subparsers(dest="models_command", metavar="COMMAND")
    lp = msub.add_parser("list", help="every model id with its size and layer mix")
    lp.add_argument("--json", action="store_true", help="print JSON")
    add_table_options(lp)
    sp = msub.add_parser("show", help="one preset: shapes, layer types, parameters, sources")
    sp.add_argument("id", help="model id, e.g. qwen3.6-27b")
    sp.add_argument("--quant", help="the file at this quant: size, bits per weight, tensors per type, e.g. Q4_K_M")
    sp.add_argument("--tensors", action="store_true", help="with --quant: also every tensor's shape and type")
    sp.add_argument("--json", action="store_true", help="print JSON")
    add_table_options(sp)
    p.set_defaults(func=run)


LIST_COLUMNS = [Column("id", "id", keep=True), Column("layers", "layers", right=True, priority=3),
                Column("mix", "mix", wrap=True, priority=4, min_width=12), Column("ffn", "ffn", priority=5),
                Column("params_b", "params B", right=True, priority=1),
                Column("active_b", "active B", right=True, priority=2),
                Column("max_context", "max ctx", right=True, priority=2)]
TYPE_COLUMNS = [Column("type", "type", keep=True), Column("tensors", "tensors", right=True),
                Column("params_m", "params M", right=True), Column("gb", "GB", right=True),
                Column("bpw", "bits/weight", right=True, priority=2)]
TENSOR_COLUMNS = [Column("name", "tensor", keep=True), Column("shape", "shape", priority=2),
                  Column("type", "type", keep=True), Column("mb", "MB", right=True, priority=3)]


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
        table = [{"id": m.id, "layers": m.n_layers, "mix": " + ".join(f"{n} {k}" for k, n in r["layer_types"].items()),
                  "ffn": f"MoE {m.ffn.active_experts}/{m.ffn.experts}" if m.is_moe else f"dense {m.ffn.intermediate_size}",
                  "params_b": f"{r['params'] / 1e9:.2f}", "active_b": f"{r['active_params'] / 1e9:.2f}",
                  "max_context": m.max_context} for r, m in zip(rows, all_presets().values())]
        print_table(table, LIST_COLUMNS, args)
        return 0
    m = get_model(args.id)
    d = _summary(m)
    if args.quant:
        from qlab.models.quant_mix import quantize

        mix = quantize(m, args.quant)
        d["quant"] = _quant_summary(mix)
        if args.tensors:
            d["quant"]["tensors"] = [{"name": t.name, "shape": list(t.shape), "type": t.type, "bytes": t.nbytes}
                                     for t in mix.tensors]
    elif args.tensors:
        from qlab.errors import QlabError

        raise QlabError("--tensors lists the tensors of one quant: add --quant, e.g. --quant Q4_K_M")
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    if args.quant and getattr(args, "table_format", "table") != "table":  # csv/json/md: the table alone
        if args.tensors:
            print_table(_tensor_rows(d["quant"]), TENSOR_COLUMNS, args)
        else:
            print_table(d["quant"]["types"], TYPE_COLUMNS, args)
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
    import textwrap

    from qlab.tables import terminal_width

    for k, v in m.sources.items():
        print(textwrap.fill(f"  source {k}: {v}", terminal_width(), subsequent_indent="    "))
    if args.quant:
        q = d["quant"]
        print()
        print_table(q["types"], TYPE_COLUMNS, args,
                    title=f"{q['id']}: file {q['file_gb']:.2f} GB, {q['bpw']:.2f} bits per weight over "
                          f"{q['params'] / 1e9:.2f} B weights, {q['n_tensors']} tensors")
        if args.tensors:
            print()
            print_table(_tensor_rows(q), TENSOR_COLUMNS, args)
        else:
            print(f"(--tensors lists all {q['n_tensors']} tensors)")
    return 0


def _tensor_rows(q: dict) -> list[dict]:
    return [{"name": t["name"], "shape": "x".join(map(str, t["shape"])), "type": t["type"],
             "mb": f"{t['bytes'] / 1e6:.1f}"} for t in q["tensors"]]


def _quant_summary(mix) -> dict:
    """File size, bits per weight and, per tensor type, how many tensors, weights and bytes."""
    import math

    types: dict[str, dict] = {}
    for t in mix.tensors:
        n = math.prod(t.shape)
        row = types.setdefault(t.type, {"type": t.type, "tensors": 0, "params": 0, "bytes": 0})
        row["tensors"] += 1
        row["params"] += n
        row["bytes"] += t.nbytes
    for row in types.values():
        row.update(params_m=f"{row['params'] / 1e6:,.1f}", gb=f"{row['bytes'] / 1e9:.3f}",
                   bpw=f"{8 * row['bytes'] / row['params']:.2f}")
    params = sum(r["params"] for r in types.values())
    return {"id": mix.quant, "file_bytes": mix.file_bytes, "file_gb": mix.file_bytes / 1e9, "params": params,
            "bpw": 8 * mix.file_bytes / params, "n_tensors": len(mix.tensors),
            "types": sorted(types.values(), key=lambda r: -r["bytes"])}
