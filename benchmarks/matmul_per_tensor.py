"""Each weight matrix of a GGUF through one matmul impl at M = 1, alone: where a decode token's matmul time goes.

    python benchmarks/matmul_per_tensor.py FILE.gguf [--impl cpu_int8] [--threads 2] [--repeats 3]

Prints ms and GB/s per tensor (best of --repeats) and the total. A tensor timed alone may sit partly in cache
from its previous repeat (the small ones: L3 is 32 MB here), so the total is a lower bound on the matmul time of
a token; the head (1 GB at full vocab) is always streamed from memory.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--impl", default="cpu_int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import torch

    from qlab.engine.gguf_io import read_gguf
    from qlab.kernels.dequant_matmul import matmul
    from qlab.kernels.dequant_matmul.weight import QuantizedWeight

    torch.set_num_threads(a.threads)
    w = read_gguf(a.gguf)
    total_s = total_b = 0.0
    for name, t in w.tensors.items():
        if not isinstance(t, QuantizedWeight) or name == "token_embd.weight":   # the embedding is read by row
            continue
        x = torch.randn(1, t.shape[1])
        matmul(x, t, impl=a.impl)   # warm-up: builds any packed layout
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            matmul(x, t, impl=a.impl)
            best = min(best, time.perf_counter() - t0)
        total_s += best
        total_b += t.nbytes
        print(f"{name:28s} {t.fmt:6s} {t.shape[1]:6d}->{t.shape[0]:6d} {t.nbytes / 1e6:8.1f} MB "
              f"{best * 1e3:7.2f} ms {t.nbytes / best / 1e9:6.1f} GB/s")
    print(f"total {total_b / 1e9:.3f} GB in {total_s * 1e3:.1f} ms: {total_b / total_s / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
