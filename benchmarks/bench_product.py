"""The product paths the CPU decode loop runs (qlab/engine/ops.py on a CPU backend), at Qwen3.6-27B shapes: what
`qlab bench gate` times against the baseline of this machine class.

    python -m pytest benchmarks/bench_product.py --benchmark-enable [-k matmul]

- matmul_int8[FMT]: `cpu_int8` at M=1 on ffn_up matrices (17408 x 5120): Q8_0 and Q5_K in the ggml layout, Q4_K
  and Q6_K from their x8 copies; matmul_many_ffn[Q4_K]: gate and up in one call (`Ops.linears`);
  matmul_torch_cpu[IQ4_XS]: the path of a format without an integer kernel.
- matmul_int8_1thread[FMT] / matmul_many_ffn_1thread[Q4_K]: the same paths on one thread (what `cpu_int8` runs
  for a small matrix, and for every matrix when the decode tuner picks one thread), compute-bound: they guard the
  kernels' per-core code where the all-thread ones, bound by a bandwidth that swings x1.6 with the host's
  neighbours (33 or 54 GB/s, in epochs of seconds to minutes), spread x1.17-1.35 over runs minutes apart and
  these x1.04-1.08 (8 runs each, alternating, same hour). They share their path's name (the slowdown switch).
- deltanet_step_48: `recurrent_cpu`, one token through 48 layers' states (each its own 3 MiB, as in the model), for
  two sequences; deltanet_layer_step_48: the fused C layer step (conv, gates, delta rule, gated norm), the same.
- rms_norm_residual / swiglu: the C element-wise ops, 256 calls per sample at hidden / ffn width.
- attention_decode_32k: `sdpa` decode over a 32K bf16 cache, two layers' caches; deltanet_prefill_512
  (`chunk_torch`) and attention_prefill_512 (`sdpa`): the prefill paths.
- deltanet_step_48_1thread, deltanet_layer_step_48_1thread, deltanet_prefill_512_1thread: one-thread twins of
  the DeltaNet paths, whose all-thread runs drifted x1.2 between the mutation test's runs (a fifth to two thirds
  of the read bandwidth is enough to feel its swings).
The memory-bound ones stream at least `STREAM_BYTES` per sample (several matrices, two sequences' states, two
layers' caches), as decode does, so that no part of a sample is served from a cache whose share depends on the
machine's neighbours.
Each sample is milliseconds of work, the gate reads the fastest sample (`min`: load only ever adds time) and
two yardsticks are sampled right before each of its rounds: the probe of `extra_info["bound"]` (qlab.gates.probes;
`probe_min_ms`) and llama.cpp doing the same work (llamacpp_peers.py; `peer_min_ms`); the baseline says which one
divides it (`yardstick`). The bound is what bounds the path on a CPU, judged by the bytes/s it reaches against the
read probe's: only the integer matmuls stream near the read bandwidth; the delta-rule steps, the torch dequant path
and 32K attention decode reach a fifth to two thirds of it and are compute-bound; the element-wise C ops run on one
thread. Five runs measured against every probe at once: the delta-rule steps, the dequant path and attention decode
spread x1.4-2.0 over their runs against the memory probes and x1.02-1.25 against the GEMM. The names are the
switches of qlab.gates.inject (`QLAB_GATE_SLOWDOWN=deltanet_layer_step_48:1.5`), which the mutation test uses.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import llamacpp_peers as peers
from qlab.gates import probes
from qlab.gates.inject import slowed
from qlab.measure import threads as torch_threads

N_FFN, K_HIDDEN = 17408, 5120
H, HV, KD, VD, LAYERS = 16, 48, 128, 128, 48
STREAM_BYTES = 256 << 20   # per sample of a memory-bound path: 8x the 32 MiB L3 of the CI machines
SEQS = 2                   # the delta-rule steps run two sequences' states (2 x 48 x 3 MiB = 302 MB) per sample


@functools.lru_cache(maxsize=2)
def weight(fmt: str, n: int = N_FFN, k: int = K_HIDDEN):
    """Valid blocks at full size, cheaply: quantize 64 random rows, then repeat them (time does not care)."""
    from qlab.kernels.dequant_matmul import QuantizedWeight, quantize

    small = quantize(torch.randn(64, k, generator=torch.Generator().manual_seed(42)), fmt)
    raw = np.ascontiguousarray(np.tile(small.raw, (n // 64, 1)))
    scale = None if small.scale is None else np.tile(small.scale, n // 64)
    return QuantizedWeight(fmt, (n, k), raw, scale)


@functools.lru_cache(maxsize=4)
def weights(fmt: str, n: int = N_FFN, k: int = K_HIDDEN) -> tuple:
    """Distinct copies of `weight(fmt, n, k)` (each its own memory, its own x8 copy) that together hold at least
    STREAM_BYTES: what one sample streams. The four integer formats stay cached (~2 GB with their x8 copies), so
    the one-thread benchmarks time the all-thread ones' very buffers."""
    from qlab.kernels.dequant_matmul import QuantizedWeight

    w = weight(fmt, n, k)
    copies = -(-STREAM_BYTES // w.raw.nbytes)
    return tuple(QuantizedWeight(fmt, w.shape, w.raw.copy(), None if w.scale is None else w.scale.copy())
                 for _ in range(copies))


def _x(k: int = K_HIDDEN, m: int = 1) -> torch.Tensor:
    return torch.randn(m, k, generator=torch.Generator().manual_seed(43))


@functools.lru_cache(maxsize=None)
def _probe(kind: str):
    return probes.make(kind)[0]


def _bench(benchmark, name: str, fn, *, bound: str, rounds: int, nbytes: int = 0, flops: int = 0, setup=None,
           peer=None):
    """Times `fn` (its fastest sample is the figure) and, right before each of its rounds, one sample of the probe
    of its kind (`probe_min_ms`) and one of llama.cpp doing the same work (`peer`, llamacpp_peers.py:
    `peer_min_ms`): the gate divides the one by whichever of the two the baseline chose, all taken at the same
    moments."""
    fn, probe, probe_s, peer_s = slowed(name, fn), _probe(bound), [], []

    def round_setup():   # the peers write only their own outputs, so qlab's inputs stay as `setup` leaves them
        probe_s.append(probes.timed(probe))
        if peer is not None:
            peer_s.append(probes.timed(peer))
        if setup is not None:
            setup()

    fn() if setup is None else (setup(), fn())   # build kernels, make x8 copies, warm caches
    if peer is not None:
        peer()
    benchmark.pedantic(fn, setup=round_setup, rounds=rounds, iterations=1, warmup_rounds=1)
    t = benchmark.stats.stats.min
    benchmark.extra_info.update(bound=bound, path=name, threads=torch.get_num_threads(), min_ms=t * 1e3,
                                probe_min_ms=min(probe_s) * 1e3)
    if peer_s:
        benchmark.extra_info.update(peer_min_ms=min(peer_s) * 1e3)
    if nbytes:
        benchmark.extra_info.update(bytes=nbytes, gbs=round(nbytes / t / 1e9, 2))
    if flops:
        benchmark.extra_info.update(flops=flops, gflops=round(flops / t / 1e9, 2))


def _matmul_int8(benchmark, fmt: str, bound: str, rounds: int):
    from qlab.kernels.dequant_matmul import matmul

    qws, x = weights(fmt), _x()

    def calls():
        for qw in qws:
            matmul(x, qw, impl="cpu_int8")

    _bench(benchmark, f"matmul_int8[{fmt}]", calls, bound=bound, rounds=rounds, nbytes=sum(q.raw.nbytes for q in qws),
           peer=peers.matmuls(qws, x, torch.get_num_threads()))


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_K", "Q6_K", "Q5_K"])
def test_matmul_int8(benchmark, fmt):
    _matmul_int8(benchmark, fmt, "memory", rounds=25)


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_K", "Q6_K", "Q5_K"])
def test_matmul_int8_1thread(benchmark, fmt):
    with torch_threads(1):
        _matmul_int8(benchmark, fmt, "compute_1thread", rounds=20)


def _ffn_pairs(fmt: str) -> list:
    """gate and up: two matrices of their own shapes per call, as many pairs as STREAM_BYTES takes."""
    return list(zip(weights(fmt), weights.__wrapped__(fmt, N_FFN + 256)))


def _matmul_many_ffn(benchmark, fmt: str, bound: str):
    from qlab.kernels.dequant_matmul import matmul_many

    pairs, x = _ffn_pairs(fmt), _x()

    def calls():
        for pair in pairs:
            matmul_many(x, list(pair), impl="cpu_int8")

    _bench(benchmark, f"matmul_many_ffn[{fmt}]", calls, bound=bound, rounds=20,
           nbytes=sum(q.raw.nbytes for pair in pairs for q in pair),
           peer=peers.matmuls([q for pair in pairs for q in pair], x, torch.get_num_threads()))


@pytest.mark.parametrize("fmt", ["Q4_K"])
def test_matmul_many_ffn(benchmark, fmt):
    _matmul_many_ffn(benchmark, fmt, "memory")


@pytest.mark.parametrize("fmt", ["Q4_K"])
def test_matmul_many_ffn_1thread(benchmark, fmt):
    with torch_threads(1):
        _matmul_many_ffn(benchmark, fmt, "compute_1thread")


@pytest.mark.parametrize("fmt", ["IQ4_XS"])
def test_matmul_torch_cpu(benchmark, fmt):
    from qlab.kernels.dequant_matmul import matmul

    qws, x = weights(fmt), _x()

    def calls():
        for qw in qws:
            matmul(x, qw, impl="torch_cpu")

    # compute-bound on CPUs: torch dequantizes to fp32 first (~7 GB/s here, against ~30 for the integer kernels)
    _bench(benchmark, f"matmul_torch_cpu[{fmt}]", calls, bound="compute", rounds=20,
           nbytes=sum(q.raw.nbytes for q in qws), peer=peers.matmuls(qws, x, torch.get_num_threads()))


def _gen(seed: int = 42) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _deltanet_step_48(benchmark, bound: str):
    """The decode loop's delta rule (recurrent_cpu, state updated in place), one token through 48 layers, for SEQS
    sequences, on torch's threads."""
    from qlab.kernels.deltanet import gated_delta_rule

    g = _gen()
    q, k = torch.randn(1, 1, H, KD, generator=g), torch.randn(1, 1, H, KD, generator=g)
    v = torch.randn(1, 1, HV, VD, generator=g)
    gate, beta = -torch.rand(1, 1, HV, generator=g) * 0.1, torch.rand(1, 1, HV, generator=g)
    states0 = torch.randn(SEQS * LAYERS, 1, HV, KD, VD, generator=g) * 0.1
    states = states0.clone()

    def step():
        for i in range(SEQS * LAYERS):
            gated_delta_rule(q, k, v, gate, beta, initial_state=states[i], output_final_state=False,
                             use_qk_l2norm=True, impl="recurrent_cpu", inplace_state=True)

    def reset():   # every round: thousands of steps on one token would decay the states into denormals
        states.copy_(states0)

    # compute-bound: it moves its states at ~13 GB/s where a plain copy moves ~30
    _bench(benchmark, "deltanet_step_48", step, setup=reset, bound=bound, rounds=25,
           nbytes=2 * states.numel() * 4,
           peer=peers.deltanet_steps(q, k, v, gate, beta, states, torch.get_num_threads()))


def _deltanet_layer_step_48(benchmark, bound: str):
    """The fused C layer step the decode loop calls (Ops.deltanet_decode_layer), 48 layers for SEQS sequences, on
    torch's threads."""
    from qlab.kernels.deltanet import layer_step_cpu

    g, D = _gen(), 2 * H * KD + HV * VD
    qkv, z = torch.randn(1, D, generator=g), torch.randn(1, HV * VD, generator=g)
    b, a = torch.randn(1, HV, generator=g), torch.randn(1, HV, generator=g)
    conv_w, ssm_a = torch.randn(D, 4, generator=g) * 0.5, -torch.rand(HV, generator=g)
    dt_bias, norm_w = torch.randn(HV, generator=g) * 0.1, torch.rand(VD, generator=g) + 0.5
    conv0 = torch.randn(SEQS * LAYERS, 1, D, 3, generator=g)
    states0 = torch.randn(SEQS * LAYERS, 1, HV, KD, VD, generator=g) * 0.1
    conv, states, out = conv0.clone(), states0.clone(), torch.empty(1, HV * VD)
    threads = torch.get_num_threads()

    def step():
        for i in range(SEQS * LAYERS):
            layer_step_cpu.gdn_decode_layer(qkv, z, b, a, conv[i], conv_w, ssm_a, dt_bias, norm_w, states[i], H,
                                            1e-6, threads=threads, out=out)

    def reset():
        conv.copy_(conv0)
        states.copy_(states0)

    _bench(benchmark, "deltanet_layer_step_48", step, setup=reset, bound=bound, rounds=25,   # ~20 GB/s
           nbytes=2 * states.numel() * 4, peer=peers.deltanet_layer_steps(qkv, z, b, a, norm_w, states, H, threads))


# The delta-rule steps on all threads reach a fifth to two thirds of the read bandwidth, enough to drift x1.2
# between runs with it; their one-thread twins hold still.
def test_deltanet_step_48(benchmark):
    _deltanet_step_48(benchmark, "compute")


def test_deltanet_step_48_1thread(benchmark):
    with torch_threads(1):
        _deltanet_step_48(benchmark, "compute_1thread")


def test_deltanet_layer_step_48(benchmark):
    _deltanet_layer_step_48(benchmark, "compute")


def test_deltanet_layer_step_48_1thread(benchmark):
    with torch_threads(1):
        _deltanet_layer_step_48(benchmark, "compute_1thread")


def test_rms_norm_residual(benchmark):
    from qlab.kernels import elementwise

    g = _gen()
    x, r, w = (torch.randn(1, K_HIDDEN, generator=g) for _ in range(3))

    def calls():
        for _ in range(256):
            elementwise.rms_norm(x, w, 1e-6, residual=r)

    _bench(benchmark, "rms_norm_residual", calls, bound="compute_1thread", rounds=20,   # C, one thread
           peer=peers.rms_norm_residual(x, r, w, 256))


def test_swiglu(benchmark):
    from qlab.kernels import elementwise

    g = _gen()
    gate, up = torch.randn(1, N_FFN, generator=g), torch.randn(1, N_FFN, generator=g)

    def calls():
        for _ in range(256):
            elementwise.swiglu(gate, up)

    _bench(benchmark, "swiglu", calls, bound="compute_1thread", rounds=20, peer=peers.swiglu(gate, up, 256))


def test_attention_decode_32k(benchmark):
    from qlab.kernels import attention

    g, S, HQ, HKV, D = _gen(), 32768, 24, 4, 256
    q = torch.randn(1, HQ, D, generator=g).bfloat16()
    caches = [tuple(torch.randn(1, HKV, S, D, generator=g).bfloat16() for _ in range(2)) for _ in range(2)]
    lengths = torch.tensor([S])

    def calls():
        for k, v in caches:
            attention.decode(q, k, v, lengths, scale=1 / 16, impl="sdpa")

    # compute-bound on CPUs: 6 query rows per KV head make bf16 GEMMs far below the read bandwidth (~7 GB/s)
    _bench(benchmark, "attention_decode_32k", calls, bound="compute", rounds=20,
           nbytes=sum(t.numel() * 2 for kv in caches for t in kv))


def _deltanet_prefill_512(benchmark, bound: str):
    from qlab.kernels.deltanet import gated_delta_rule
    from qlab.kernels.deltanet.inputs import make_inputs

    x = make_inputs(1, 512, H, HV, KD, VD, decay="weak")
    _bench(benchmark, "deltanet_prefill_512",
           lambda: gated_delta_rule(**x, use_qk_l2norm=True, impl="chunk_torch", output_final_state=True),
           bound=bound, rounds=10, peer=peers.deltanet_prefill(x, torch.get_num_threads()))


def test_deltanet_prefill_512(benchmark):
    _deltanet_prefill_512(benchmark, "compute")


def test_deltanet_prefill_512_1thread(benchmark):
    """chunk_torch's many small torch ops drift x1.1-1.2 between 2-thread runs; on one thread they hold still."""
    with torch_threads(1):
        _deltanet_prefill_512(benchmark, "compute_1thread")


def test_attention_prefill_512(benchmark):
    from qlab.kernels import attention

    g, T, HQ, HKV, D = _gen(), 512, 24, 4, 256
    q = torch.randn(1, T, HQ, D, generator=g).bfloat16()
    k, v = (torch.randn(1, T, HKV, D, generator=g).bfloat16() for _ in range(2))
    _bench(benchmark, "attention_prefill_512", lambda: attention.prefill(q, k, v, scale=1 / 16, impl="sdpa"),
           bound="compute", rounds=10)
