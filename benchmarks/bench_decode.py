"""qlab's decode loop against llama.cpp on the same file, same machine, same threads, in one run.

The file: a synthetic Qwen3.6-27B slice of 4 full-width layers (3 DeltaNet + 1 attention) with the real
embedding and head (vocab 248320), written as F16 by `qlab gguf synth` and quantized by llama.cpp itself to
Q8_0 and Q4_K_M. Each engine runs in its own process (so each has its own peak RSS): it fills the context with
a prompt, then decodes `--tokens` tokens one at a time; the median step time is its decode speed.

    python benchmarks/bench_decode.py --threads 2 [--quants Q8_0,Q4_K_M] [--context 32] [--tokens 8]
                                      [--width-scale 1] [--vocab N] [--dir ~/.cache/qlab/bench] [--json out.json]

The files (8.1 GB F16, 4.3 GB Q8_0, 2.6 GB Q4_K_M at full width) are kept in --dir and reused. Timings on a
shared machine are noisy: the two engines alternate (llama.cpp, qlab, llama.cpp, qlab), each process reports its
fastest step, and the ratio is each engine's best over the repeats. `qlab bench gate` runs this on a slice at
width 1/4 with a 32K vocabulary (`--width-scale 4 --vocab 32768`: 182 MB at Q8_0, made in ~30 s) and gates the
ratio (qlab.gates.peer).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def make_files(d: Path, quants: list[str], threads: int, width_scale: float = 1.0, vocab: int | None = None,
               log=print) -> dict[str, Path]:
    import llama_cpp

    from qlab.engine.config import get_config
    from qlab.engine.gguf_io import write_synthetic_gguf

    d.mkdir(parents=True, exist_ok=True)
    cfg = get_config("qwen3.6-27b")
    if width_scale != 1.0 or vocab:
        cfg = cfg.width_scaled(width_scale, vocab)
    stem = "qwen3.6-27b-4L" + (f"-w{width_scale:g}-v{cfg.vocab}" if width_scale != 1.0 or vocab else "")
    f16 = d / f"{stem}-F16.gguf"
    if not f16.exists():
        t0 = time.time()
        write_synthetic_gguf(f16, cfg.sliced(4), "F16", seed=0)
        log(f"# wrote {f16} ({f16.stat().st_size / 1e9:.2f} GB) in {time.time() - t0:.0f} s")
    out = {}
    for q in quants:
        p = d / f"{stem}-{q}.gguf"
        if not p.exists():
            t0 = time.time()
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, FTYPES[q])
            params.nthread = threads
            tmp = p.with_suffix(".tmp")
            rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(tmp).encode(), ctypes.byref(params))
            if rc != 0:
                raise SystemExit(f"llama_model_quantize({q}) failed with {rc}")
            os.replace(tmp, p)
            log(f"# llama.cpp quantized {p.name} ({p.stat().st_size / 1e9:.2f} GB) in {time.time() - t0:.0f} s")
        out[q] = p
    return out


def child_llamacpp(path: str, threads: int, context: int, tokens: int) -> dict:
    import llama_cpp
    import numpy as np

    from qlab.engine.memory import peak_rss_bytes

    llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=context + tokens + 8,
                          n_batch=max(32, context), verbose=False)
    rng = np.random.default_rng(0)
    prompt = rng.integers(300, llm.n_vocab(), size=context).tolist()
    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()

    def last_logits():   # the output row of the last evaluated token (logits_all is off, as in normal use)
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    steps = []
    tok = int(np.argmax(last_logits()))
    for _ in range(tokens):
        t0 = time.perf_counter()
        llm.eval([tok])
        steps.append(time.perf_counter() - t0)
        tok = int(np.argmax(last_logits()))
    step = float(np.median(steps))
    return {"engine": "llama.cpp", "version": llama_cpp.__version__, "decode_tok_s": 1 / step,
            "decode_ms_per_token": 1e3 * step, "decode_ms_min": 1e3 * min(steps), "prefill_tok_s": context / prefill_s,
            "peak_rss_gb": peak_rss_bytes() / 1e9}


def child_qlab(path: str, threads: int, context: int, tokens: int) -> dict:
    import qlab.engine.bench as bench
    from qlab.gates.inject import slowed

    # the mutation test's switch (never set otherwise): every decoded token 1.5x slower
    bench.decode_one_token = slowed("decode_loop", bench.decode_one_token)
    r = bench.run_decode_bench(gguf=path, layers=4, context=context, tokens=tokens, threads=threads, fill="prefill",
                         prefill_tokens=context)
    r["engine"] = "qlab"
    r["decode_ms_min"] = min(r["decode_ms_samples"])
    return r


def run_child(engine: str, path: Path, a) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--gguf", str(path), "--threads", str(a.threads),
           "--context", str(a.context), "--tokens", str(a.tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{engine} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quants", default="Q8_0,Q4_K_M")
    ap.add_argument("--context", type=int, default=32, help="prompt tokens before decoding (both engines)")
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per engine; best is reported")
    ap.add_argument("--width-scale", type=float, default=1.0, help="every width divided by this (4: the gate's slice)")
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary of the slice (default: the model's)")
    ap.add_argument("--dir", default=os.path.expanduser("~/.cache/qlab/bench"))
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", choices=["llama", "qlab"], help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        fn = child_llamacpp if a.child == "llama" else child_qlab
        print(json.dumps(fn(a.gguf, a.threads, a.context, a.tokens)))
        return
    quants = [q.strip().upper() for q in a.quants.split(",") if q.strip()]
    files = make_files(Path(a.dir), quants, a.threads, a.width_scale, a.vocab, log=lambda m: print(m, flush=True))
    results = []
    print(f"# 4-layer full-width Qwen3.6-27B slice, {a.threads} threads, depth {a.context}, {a.tokens} tokens "
          f"(machine shared: timings noisy)")
    print(f"{'quant':8} {'llama.cpp tok/s':>16} {'qlab tok/s':>11} {'qlab/llama':>11}   qlab per token (ms)")
    for q in quants:
        runs = {"llama": [], "qlab": []}
        for _ in range(a.repeats):
            for eng in ("llama", "qlab"):
                runs[eng].append(run_child(eng, files[q], a))
        best = {e: min(r, key=lambda x: x["decode_ms_min"]) for e, r in runs.items()}
        ratio = best["llama"]["decode_ms_min"] / best["qlab"]["decode_ms_min"]   # qlab tok/s over llama.cpp's
        ops = best["qlab"]["ops_ms_per_token"]
        tok_s = {e: 1e3 / best[e]["decode_ms_min"] for e in best}
        print(f"{q:8} {tok_s['llama']:16.2f} {tok_s['qlab']:11.2f} {ratio:10.2f}x   "
              + ", ".join(f"{k} {v:.1f}" for k, v in ops.items())
              + f"; {best['qlab']['achieved_gb_s']:.1f} GB/s; peak RSS qlab {best['qlab']['peak_rss_gb']:.2f} GB,"
              f" llama.cpp {best['llama']['peak_rss_gb']:.2f} GB", flush=True)
        results.append({"quant": q, "file": str(files[q]), "ratio": ratio, "llama": runs["llama"],
                        "qlab": runs["qlab"]})
    if a.json:
        from qlab.io import write_json_atomic

        write_json_atomic(a.json, results)


if __name__ == "__main__":
    main()
