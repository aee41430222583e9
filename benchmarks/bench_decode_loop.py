"""pytest-benchmark of the Qwen3.6-27B decode loop: a 4-layer full-width slice (3 DeltaNet + 1 attention,
real embedding and head) with synthetic weights, one token decoded at depth 4096 per round, on this CPU.
Reports tok/s of the slice and the achieved GB/s of the bytes a step streams. The llama.cpp side-by-side
comparison is `benchmarks/bench_decode.py` (a script: it needs llama-cpp-python and a few GB of files)."""

import pytest
import torch

from qlab.engine.bench import fill_synthetic, load_weights, streamed_bytes_per_token
from qlab.engine.model import Qwen35, decode_one_token, prefill
from qlab.engine.ops import default_backend

DEPTH = 4096


@pytest.fixture(scope="module", params=["Q4_K_M", "Q8_0"])
def slice_state(request):
    w = load_weights("qwen3.6-27b", 4, request.param, None)
    m = Qwen35(w, default_backend("cpu"))
    warm = m.new_state(16)
    prefill(m, torch.randint(0, w.cfg.vocab, (1, 8)), warm)  # lets the matmul impls pack their layouts
    st = m.new_state(DEPTH + 64)
    fill_synthetic(st, DEPTH)
    cache_bpv = torch.tensor([], dtype=m.backend.cache_dtype).element_size()
    yield request.param, m, st, streamed_bytes_per_token(w, DEPTH, cache_bpv)["total"]


def test_decode_slice_4_layers(benchmark, slice_state):
    quant, m, st, nbytes = slice_state
    token = torch.tensor([1])
    benchmark.extra_info.update(bound="memory", quant=quant, layers=4, context=DEPTH, bytes=nbytes)
    benchmark.pedantic(decode_one_token, args=(m, token, st), rounds=6, warmup_rounds=1)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update(tok_s=1.0 / t, gbs=nbytes / t / 1e9)
