"""pytest-benchmark: the predictor's throughput (the CLI promise: 1,000 scenarios in under 2 s).

    python -m pytest benchmarks/bench_predict.py --benchmark-enable
"""

from __future__ import annotations

import itertools

from qlab.predict import predict_many

HWS = ["rtx-3090", "rtx-4090", "rtx-5090", "h100-sxm", "m4-max-40c", "m3-max-40c", "dgx-spark", "rx-7900-xtx"]
MODELS = ["qwen3.6-27b", "llama-3-8b", "qwen3.6-35b-a3b", "gpt-oss-20b", "gemma-3-27b"]
QUANTS = ["Q4_K_M", "Q8_0", "Q6_K", "IQ4_XS", "Q5_K_M"]
CONTEXTS = [0, 4096, 16384, 32768, 65536]
SCENARIOS = [{"hw": h, "model": m, "quant": q, "context": c}
             for h, m, q, c in itertools.product(HWS, MODELS, QUANTS, CONTEXTS)]


def test_predict_1000_scenarios(benchmark):
    assert len(SCENARIOS) == 1000
    out = benchmark(predict_many, SCENARIOS)
    assert len(out) == 1000
