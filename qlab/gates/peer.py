"""The peer-normalised decode gate: qlab's decode loop against llama.cpp's on the same GGUF slice, same machine,
same threads, alternating in separate processes (benchmarks/bench_decode.py), gated on the ratio.

A ratio measured side by side is stable across machines where absolute times are not; still, the two engines'
kernels differ by ISA, so the stored ratio is per machine class (qlab.gates.machine). The gate fails when the
ratio of a quant drops by more than 15 % below its stored value (the issue's rule, `MAX_DROP`). A class with no
stored ratio is said so and held to the fallback rule instead: at least `FALLBACK_SHARE` of the lowest ratio any
class has stored (a looser floor: the ISA difference between classes is not measured).

The slice: Qwen3.6-27B's 4 layers (3 DeltaNet + 1 attention) at 1/4 width with a 32K vocabulary, F16 written by
`write_synthetic_gguf`, quantized by llama.cpp to Q8_0 (182 MiB) and Q4_K_M (110 MiB): past every cache, so
decode streams its weights as the full model does. Made once per cache directory (~30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qlab.errors import EXIT_INTERNAL, QlabError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_decode.py"
QUANTS = ("Q8_0", "Q4_K_M")
WIDTH_SCALE, VOCAB, CONTEXT, TOKENS, THREADS = 4, 32768, 32, 16, 2
# Alternating process pairs per measurement, each engine's best kept. More did not steady it: single processes'
# decode times vary up to x2 here (each draws its own memory placement and moment), and with 3 or 5 pairs a
# quant's ratio still moved x1.1-x1.5 between measurements minutes apart.
PAIRS = 3
MAX_DROP = 0.15
FALLBACK_SHARE = 0.7


@dataclass(frozen=True)
class PeerResult:
    quant: str
    ratio: float           # qlab tok/s over llama.cpp's, each engine's best over the pairs
    stored: float | None   # this class's stored ratio (None: no stored ratio for the class)
    floor: float           # the ratio below which the gate fails
    rule: str              # "class" or "fallback"
    qlab_ms: float
    llama_ms: float

    @property
    def failed(self) -> bool:
        return self.ratio < self.floor


def cache_dir() -> Path:
    from qlab.paths import qlab_home

    return Path(os.environ.get("QLAB_GATE_SLICES") or qlab_home() / "gate-slices")


def measure(quants=QUANTS, pairs: int = PAIRS, directory: Path | None = None) -> dict[str, dict]:
    """Run bench_decode.py on the gate's slice: quant -> {"ratio", "qlab_ms", "llama_ms"}."""
    if not SCRIPT.exists():
        raise QlabError(f"{SCRIPT}: the decode harness is missing (the peer gate runs from a qlab checkout)")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise QlabError("the peer gate needs llama-cpp-python (pip install -e '.[dev]')") from None
    out = Path(tempfile.mkdtemp(prefix="qlab-peer-")) / "peer.json"
    cmd = [sys.executable, str(SCRIPT), "--width-scale", str(WIDTH_SCALE), "--vocab", str(VOCAB),
           "--context", str(CONTEXT), "--tokens", str(TOKENS), "--threads", str(THREADS), "--repeats", str(pairs),
           "--quants", ",".join(quants), "--dir", str(directory or cache_dir()), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    if proc.returncode or not out.exists():
        tail = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                         if not line.startswith(("llama_model_loader", "[", "print_info", "load")))[-2000:]
        raise QlabError(f"peer decode run failed (exit {proc.returncode}):\n{tail}", exit_code=EXIT_INTERNAL)
    rows = json.loads(out.read_text())
    return {r["quant"]: {"ratio": r["ratio"], "qlab_ms": min(x["decode_ms_min"] for x in r["qlab"]),
                         "llama_ms": min(x["decode_ms_min"] for x in r["llama"])} for r in rows}


def judge(measured: dict[str, dict], stored: dict[str, float] | None,
          all_stored: list[dict[str, float]]) -> list[PeerResult]:
    """Each quant against this class's stored ratio (fail below (1 - MAX_DROP) x it) or, where the class has
    none, the fallback floor FALLBACK_SHARE x the lowest ratio stored for that quant by any class."""
    out = []
    for q, m in measured.items():
        if stored and q in stored:
            ref, floor, rule = stored[q], (1 - MAX_DROP) * stored[q], "class"
        else:
            others = [s[q] for s in all_stored if q in s]
            if not others:
                raise QlabError(f"peer gate: no stored qlab/llama.cpp ratio for {q} in any machine class; "
                                "record one with `python benchmarks/rebuild_baseline.py`")
            ref, floor, rule = None, FALLBACK_SHARE * min(others), "fallback"
        out.append(PeerResult(q, m["ratio"], ref, floor, rule, m["qlab_ms"], m["llama_ms"]))
    return out
