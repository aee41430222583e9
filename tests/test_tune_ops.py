"""The op registry and adapters: every present kernel op exposes a sane space at the Qwen3.6-27B shapes, its
CPU impls pass the reference check through the tuner's adapters at small shapes, shapes bucket and parse, and
the cost model ranks the obvious cases the obvious way."""

import pytest
import torch

from qlab.errors import QlabError
from qlab.tune import OPS
from qlab.tune.ops import all_names, impl_ops
from qlab.tune.shapes import parse_spec, preset_shapes
from qlab.tune.tuner import _clone, check

SMALL = {"deltanet": {"T": 9, "H": 2, "HV": 6, "K": 16, "V": 16},
         "attention_decode": {"HQ": 4, "HKV": 2, "D": 32, "S": 70},
         "attention_prefill": {"T": 17, "HQ": 4, "HKV": 2, "D": 32},
         "dequant_matmul": {"M": 3, "N": 64, "K": 512},
         "blocked_matmul": {"M": 2, "N": 96, "K": 32}}


def test_ops_lists_only_present_kernel_ops():
    assert set(OPS) <= set(all_names()) and "blocked_matmul" not in OPS
    for op in OPS:
        for top in impl_ops(op):
            assert top.impl != "naive"
            assert top.device_kind == ("cuda" if top.impl.startswith(("triton", "cupy")) else "cpu")
            assert ("threads" in top.params) == (top.device_kind == "cpu")


@pytest.mark.parametrize("op", [o for o in all_names()])
def test_default_is_valid_and_space_nonempty_at_qwen_shapes(op):
    tops = impl_ops(op)
    if not tops:
        pytest.skip(f"{op}: package not in this tree")
    for top in tops:
        for preset in preset_shapes(op):
            for device in (top.device_kind,):   # cpu: fp32 inputs; cuda: bf16
                shape = top.full_shape(preset, device)
                assert top.space(shape).valid(), (top.name, shape)
                assert top.is_valid(top.defaults, shape), (top.name, shape, top.defaults)


@pytest.mark.parametrize("op", [o for o in all_names()])
def test_cpu_impls_pass_the_reference_check_at_small_shapes(op):
    tops = [t for t in impl_ops(op) if t.device_kind == "cpu"]
    if not tops:
        pytest.skip(f"{op}: no CPU impl in this tree")
    for top in tops:
        shape = top.full_shape(SMALL[op])
        inputs = top.make_inputs(shape)
        again = top.make_inputs(shape)
        for a, b in zip(_tensors(inputs), _tensors(again)):   # seed 42: the same inputs every time, not zeros
            if a.is_floating_point() and a.isnan().all():
                continue  # an output buffer, NaN-poisoned by the conftest
            assert torch.equal(a, b) and a.abs().sum() > 0
        ref = top.reference(_clone(inputs))
        for config in top.space(shape).valid()[:6] + [top.defaults]:
            check(top, inputs, ref, config, top.tolerance(shape))   # raises CandidateFailed on a mismatch


def _tensors(x):
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return [x] if isinstance(x, torch.Tensor) else []


def test_buckets_are_powers_of_two_of_the_sequence_dims():
    (top,) = impl_ops("blocked_matmul")
    assert top.bucket({"M": 300, "N": 100, "K": 7})["M"] == 512
    assert top.bucket({"M": 512, "N": 100, "K": 7}) == {"K": 7, "M": 512, "N": 100}
    assert top.bucket({"M": 513, "N": 100, "K": 7})["M"] == 1024
    assert top.bucket({"M": 1, "N": 100, "K": 7})["M"] == 1


def test_spec_parsing():
    assert parse_spec("blocked_matmul", "M=4,N=64;M=8,dtype=bf16") == [{"M": 4, "N": 64}, {"M": 8, "dtype": "bf16"}]
    assert parse_spec("blocked_matmul", "qwen3.6-27b") == preset_shapes("blocked_matmul")
    for bad in ("M", "M=", "=4", "Q=1", "M=x", ""):
        with pytest.raises(QlabError):
            parse_spec("blocked_matmul", bad)


def test_cost_model_ranks_the_obvious_cases():
    (top,) = impl_ops("blocked_matmul")
    shape = top.full_shape({"M": 64, "N": 4096, "K": 4096})         # compute-bound
    one, two = ({"block_n": 1024, "threads": t} for t in (1, 2))
    if top.params["threads"][-1] >= 2:
        assert top.cost_model(two, shape) < top.cost_model(one, shape)
    padded = top.full_shape({"M": 64, "N": 1100, "K": 4096})        # 1100 columns: a 2048-wide tile wastes 86%
    assert top.cost_model({"block_n": 2048, "threads": 1}, padded) > top.cost_model({"block_n": 512, "threads": 1},
                                                                                       padded)
    tiny = top.full_shape({"M": 1, "N": 4096, "K": 64})             # per-tile overhead dominates
    assert top.cost_model({"block_n": 16, "threads": 1}, tiny) > top.cost_model({"block_n": 512, "threads": 1}, tiny)


def test_gpu_cost_model_wants_enough_programs():
    tops = [t for t in impl_ops("attention_decode") if t.impl == "triton_decode"]
    if not tops:
        pytest.skip("attention triton_decode not in this tree")
    top = tops[0]
    shape = top.full_shape({"S": 131072}, "cuda")                 # B=1, 4 KV heads: 4 programs without splits
    base = dict(top.defaults)
    assert top.cost_model(dict(base, num_splits=32), shape, "cuda") < top.cost_model(dict(base, num_splits=1),
                                                                                      shape, "cuda")
