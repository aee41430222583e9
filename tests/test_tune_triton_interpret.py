"""The tuner drives the real Triton kernels through its adapters (config passing, the packages' valid(), the
reference check) under TRITON_INTERPRET=1 on CPU tensors. The interpreter's times mean nothing; what is
checked is that every candidate ran and matched its reference. In a subprocess: the env var must be set before
triton is imported. Slow (the interpreter is)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TRITON_INTERPRET"] = "1"
    from qlab.tune.ops import impl_ops
    from qlab.tune.tuner import tune_task
    CASES = [("deltanet", "triton_recurrent", {"T": 1, "H": 2, "HV": 4, "K": 32, "V": 32}),
             ("attention_decode", "triton_decode", {"HQ": 4, "HKV": 2, "D": 32, "S": 64}),
             ("dequant_matmul", "triton", {"M": 1, "N": 32, "K": 256})]
    out = []
    for op, impl, shape in CASES:
        tops = [t for t in impl_ops(op) if t.impl == impl]
        if not tops:
            continue
        r = tune_task(tops[0], tops[0].full_shape(shape), "cpu", 4.0, "budgeted", cache=None)
        out.append(r.to_dict(history=True))
    print(json.dumps(out))
""")


def test_triton_impls_tune_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    if not rows:
        pytest.skip("no Triton impl in this tree")
    for r in rows:
        assert r["failures"] == {}, (r["op"], r["impl"], [h for h in r["history"] if h["status"] != "ok"][:3])
        assert r["evaluations"] >= 2 and r["config"] is not None, r
